"""Pictures in the window (offscreen): a PNG dropped on the window lands in the composer as a thumbnail,
pasted pictures too, each removable; the answer names the picture's colour; the message keeps it (stored,
shown, exported); a model that cannot see is told before sending. SmolLM2 with a real projector built by the
test (tests/mmproj_files.py), beside it as LM Studio lays models out."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDropEvent, QImage
from pytestqt.qtbot import QtBot

from app import paths
from app.engine.types import LoadSettings
from tests.hubserver import HubServer
from tests.mmproj_files import model_with_projector, solid_png, write_colour_projector
from tests.ui.windows import WAIT_MS, make_window

QUESTION = "What colour is the square? Answer in one word."


def _drop(widget: object, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    widget.dropEvent(event)  # type: ignore[attr-defined]


def test_a_dropped_picture_is_answered_stored_and_exported(qtbot: QtBot, tmp_path: Path,
                                                           instruct_model: Path) -> None:
    model = model_with_projector(instruct_model, tmp_path / "models" / "SmolLM2")
    w = make_window(qtbot, model, LoadSettings(n_ctx=1024), max_tokens=8)
    try:
        page = w.chat_page
        page.new_chat()
        assert any("sees images" in page.model_combo.itemText(i) for i in range(page.model_combo.count()))
        red = solid_png(tmp_path / "red.png", (255, 0, 0))
        _drop(w, [red])
        assert [i.name for i in page.image_strip.images()] == ["red.png"]
        # a pasted screenshot joins it, and can be removed again
        mime = QMimeData()
        pasted = QImage(30, 30, QImage.Format.Format_RGB888)
        pasted.fill(QColor(0, 255, 0))
        mime.setImageData(pasted)
        page.composer.insertFromMimeData(mime)
        assert len(page.image_strip.images()) == 2
        assert page.composer.toPlainText() == ""
        page.image_strip.remove(page.image_strip._items[1][1])
        assert [i.name for i in page.image_strip.images()] == ["red.png"]
        with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as blocker:
            page.composer.setPlainText(QUESTION)
            page.send_button.click()
        _conv, message_id, status, error, stats = blocker.args or [None] * 5
        assert status == "complete", error
        assert stats["images"] == 1
        answer = w.store.message(message_id)  # type: ignore[arg-type]
        assert "red" in answer.content.lower()
        assert page.image_strip.images() == []
        question = w.store.message(answer.parent_id)  # type: ignore[arg-type]
        assert [i.data for i in question.images] == [red.read_bytes()]
        widget = page.chat_view.widgets[-2]
        qtbot.waitUntil(lambda: len(widget.images.thumbs) == 1, timeout=5000)
        viewer = widget.images.thumbs[0].open_full()
        assert viewer.isVisible()
        viewer.close()
        exported = w.store.export_json(answer.conversation_id)
        assert exported["messages"][0]["images"][0]["name"] == "red.png"
        json.dumps(exported)
        assert "data:image/png;base64," in w.store.export_markdown(answer.conversation_id)
        copy = w.store.import_json(exported)
        assert w.store.messages(copy.id)[0].images[0].data == red.read_bytes()
    finally:
        w.close()  # as the user quits: saves the chat's settings while the store is open
        w.controller.shutdown()
        w.store.close()


def test_a_picture_for_a_model_that_cannot_see_is_told_before_sending(qtbot: QtBot, tmp_path: Path,
                                                                      instruct_model: Path) -> None:
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=512), max_tokens=4)
    try:
        page = w.chat_page
        page.new_chat()
        errors: list[str] = []
        # errors become a modal box, which nobody can click offscreen: the test reads what was posted instead
        w.bridge.posted.disconnect(w.present)
        w.bridge.posted.connect(lambda message: errors.append(message.text))
        fake = tmp_path / "notes.png"
        fake.write_text("I am text, not a picture\n")
        _drop(w, [fake])
        assert page.image_strip.images() == []
        assert any("not an image" in e for e in errors)
        _drop(w, [solid_png(tmp_path / "blue.png", (0, 0, 255))])
        assert any("cannot see images" in e for e in errors)  # told when the picture is added
        conv = page.current_conv
        page.composer.setPlainText(QUESTION)
        page.send_button.click()
        assert w.store.messages(conv) == []  # nothing sent, nothing lost:
        assert page.composer.toPlainText() == QUESTION
        assert len(page.image_strip.images()) == 1
        assert not w.controller.busy
    finally:
        w.close()  # as the user quits: saves the chat's settings while the store is open
        w.controller.shutdown()
        w.store.close()


def test_discover_marks_models_that_see_and_refuses_llama_3_2_vision(qtbot: QtBot, hub: HubServer,
                                                                      instruct_model: Path, tmp_path: Path) -> None:
    from app.engine.client import Engine
    from app.models.auth import TokenStore
    from app.store.chats import ChatStore
    from app.ui.chat.controller import ChatController
    from app.ui.models.manager import ModelManager
    from app.ui.window import MainWindow
    from tests.hubserver import HubFile, HubRepo, gguf_header_bytes, llama_header

    mmproj = write_colour_projector(instruct_model, tmp_path / "mmproj-SmolLM2-F16.gguf")
    hub.add(HubRepo("paddock-test/SmolLM2-Vision-GGUF", {
        "README.md": HubFile("README.md", data=b"---\nlicense: apache-2.0\n---\n", lfs=False),
        instruct_model.name: HubFile(instruct_model.name, path=instruct_model),
        mmproj.name: HubFile(mmproj.name, path=mmproj),
    }, card={"license": "apache-2.0"}))
    header = llama_header("Llama 3.2 11B Vision", n_layers=40, n_embd=4096, n_head=32, n_head_kv=8, ctx=131072)
    hub.add(HubRepo("paddock-test/Llama-3.2-11B-Vision-Instruct-GGUF", {
        "README.md": HubFile("README.md", data=b"---\nlicense: apache-2.0\n---\n", lfs=False),
        "Llama-3.2-11B-Vision-Instruct-Q4_K_M.gguf": HubFile("Llama-3.2-11B-Vision-Instruct-Q4_K_M.gguf",
                                                             prefix=header, size=6 << 30),
        "mmproj-f16.gguf": HubFile("mmproj-f16.gguf", size=1 << 30, prefix=gguf_header_bytes(
            {"general.architecture": "clip", "clip.projector_type": "mllama"})),
    }, card={"license": "apache-2.0"}))
    store = ChatStore(paths.database_path())
    w = MainWindow(ChatController(store, Engine(), LoadSettings(n_ctx=512)),
                   manager=ModelManager(endpoint=hub.url, tokens=TokenStore()))
    qtbot.addWidget(w)
    try:
        w.show()
        w.show_models()
        tab = w.models_page.discover_tab
        for repo in ("paddock-test/SmolLM2-Vision-GGUF", "paddock-test/Llama-3.2-11B-Vision-Instruct-GGUF"):
            with qtbot.waitSignal(w.manager.repoLoaded, timeout=WAIT_MS):
                tab.open_repo(repo)
            tab.accept_box.setChecked(True)
            if "SmolLM2" in repo:
                assert "sees images" in tab.variants.item(0, 3).text()
                assert "see images" in tab.fit_note.text()
                assert tab.download_button.isEnabled()
            else:
                assert "not support" in tab.fit_note.text()
                assert not tab.download_button.isEnabled()
                assert "mllama" in tab.download_button.toolTip()
    finally:
        w.close()
        store.close()
