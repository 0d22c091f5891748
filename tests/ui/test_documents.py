"""Document chat in the real window (offscreen): drop, index in the background, ask, click a citation."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from pytestqt.qtbot import QtBot

from app.engine.types import ChatMessage
from app.ui.window import MainWindow
from tests.docfiles import write_docx, write_pdf
from tests.ui.windows import WAIT_MS, make_window, send_and_wait


@pytest.fixture
def window(qtbot: QtBot, test_model: Path) -> Iterator[MainWindow]:
    w = make_window(qtbot, test_model)
    yield w
    w.close()
    w.store.close()


def drop(w: MainWindow, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(300, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    w.dropEvent(event)


def state_texts(w: MainWindow) -> dict[str, str]:
    tree = w.chat_page.docs_panel.tree
    return {tree.topLevelItem(i).text(0): tree.topLevelItem(i).text(1) for i in range(tree.topLevelItemCount())}


def test_drop_index_ask_and_open_a_citation(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    w = window
    folder = tmp_path / "drop"
    folder.mkdir()
    write_docx(folder / "bakery.docx", [("Rye", ["Rye bread bakes at 230 degrees for 50 minutes."])])
    write_pdf(folder / "lighthouse.pdf", ["The lamp is lit at dusk.", "The lamp uses a Fresnel lens."])
    (folder / "broken.txt").write_bytes(b"\x00\x01\x02" * 100)
    conv = w.current_conv
    drop(w, [folder])
    assert w.current_conv == conv
    # indexing runs on the documents thread: the window keeps handling events meanwhile
    qtbot.waitUntil(lambda: w.chat_page.docs_panel.isVisible() and "ready" in state_texts(w).get("lighthouse.pdf", ""),
                    timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "ready" in state_texts(w).get("bakery.docx", ""), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "failed" in state_texts(w).get("broken.txt", ""), timeout=WAIT_MS)
    states = state_texts(w)
    assert states["lighthouse.pdf"] == "ready · 2 passages · 2 pages"
    assert "not a text file" in states["broken.txt"]
    assert "2 ready" in w.chat_page.docs_panel.summary.text()
    assert "1 could not be read" in w.chat_page.docs_panel.summary.text()

    args = send_and_wait(qtbot, w, "What temperature does rye bread bake at?")
    assert args[2] == "complete"
    answer = w.store.message(int(args[1]))
    assert {s["source"] for s in answer.sources} == {"bakery.docx", "lighthouse.pdf"}  # small: given whole
    user_turn = w.store.messages(w.current_conv)[-2]
    assert user_turn.content == "What temperature does rye bread bake at?"  # stored as typed
    widget = w.chat_page.chat_view.widgets[-1]
    html = widget.body.toHtml()
    assert "paddock-cite:0" in html  # "N passages given to the model"
    rye = next(i for i, s in enumerate(answer.sources, start=1) if "Rye" in s["location"])
    widget.body.anchorClicked.emit(QUrl(f"paddock-cite:{rye}"))
    dialog = w.chat_page.passage_dialog
    qtbot.waitUntil(dialog.isVisible)
    assert dialog.current() == answer.sources[rye - 1]  # the passage clicked (listed by relevance)
    assert dialog.list.count() == len(answer.sources)
    source = answer.sources[rye - 1]
    shown = dialog.viewer.toPlainText()
    assert shown[source["start"] : source["end"]] == source["text"]
    assert "230 degrees" in source["text"]
    assert dialog.highlighted() == (source["start"], source["end"])  # the passage is highlighted
    dialog.close()


def test_asking_before_indexing_finished_says_so(window: MainWindow, tmp_path: Path) -> None:
    w = window
    assert w.current_conv is not None
    doc = tmp_path / "later.md"
    doc.write_text("# Later\n\nNot indexed yet.\n")
    ready = tmp_path / "ready.md"
    ready.write_text("# Ready\n\nThe password hint is blue whale.\n")
    hub = w.docs
    collection = hub.docs.index.chat_collection(w.current_conv)
    first, _ = hub.docs.index.add_document(collection.id, ready)
    hub.docs.indexer.index_document(first)
    hub.docs.index.add_document(collection.id, doc)  # queued; the worker has not been woken
    messages = [ChatMessage("user", "What is the password hint?")]
    turn = hub.with_documents(w.current_conv, messages, 2048)
    assert any("still being indexed" in n for n in turn.notices)
    assert [s["source"] for s in turn.sources] == ["ready.md"]
    assert "blue whale" in turn.messages[-1].content
    assert turn.messages[-1].content.endswith("Question: What is the password hint?")
    assert turn.sent == turn.messages[-1].content


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        _Counter.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_injected_image_in_an_answer_is_never_loaded(qtbot: QtBot, window: MainWindow) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/leak?q=secret"
        w = window
        assert w.current_conv is not None
        # What a hostile document asks for, as if the model obeyed and wrote it into its answer.
        w.store.add_message(w.current_conv, "user", "Summarise the document")
        answer = w.store.add_message(w.current_conv, "assistant", f"Done [1]. ![logo]({url}) <img src=\"{url}\">")
        w.store.update_message(answer.id, sources=[{"source": "evil.md", "location": "top", "text": "x",
                                                    "path": "/nonexistent/evil.md", "start": 0, "end": 1}])
        w.select_conversation(w.current_conv)
        widget = w.chat_page.chat_view.widgets[-1]
        html = widget.body.toHtml()
        qtbot.wait(300)
        assert "<img" not in html
        assert "paddock-cite:1" in html
        assert _Counter.hits == []
    finally:
        server.shutdown()


TOPICS = ("bakery", "lighthouse", "orchard", "harbour", "observatory", "library", "vineyard")


def test_follow_up_questions_evaluate_only_their_own_tokens(
    qtbot: QtBot, instruct_model: Path, tmp_path: Path
) -> None:
    """Seven small documents, given whole, with the real instruct model: the documents are
    sent once, stay where they were in the history, and each follow-up costs only itself."""
    from app.engine.types import LoadSettings

    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=8192), max_tokens=24)
    try:
        folder = tmp_path / "notes"
        folder.mkdir()
        for i, topic in enumerate(TOPICS):
            lines = [f"The {topic} opened in {1900 + i * 7} and has {12 + i} rooms."]
            lines += [f"Note {n} about the {topic}: visitors come on day {n + i} of each month." for n in range(6)]
            (folder / f"{topic}.md").write_text(f"# The {topic}\n\n" + "\n\n".join(lines) + "\n")
        drop(w, [folder])
        qtbot.waitUntil(lambda: sum("ready" in s for s in state_texts(w).values()) == len(TOPICS), timeout=WAIT_MS)
        _c, first_id, status, error, first = send_and_wait(qtbot, w, "When did the orchard open?")
        assert status == "complete", error
        assert first["prompt_tokens"] > 900  # every document, given whole
        first_sources = w.store.message(first_id).sources  # type: ignore[arg-type]
        assert len(first_sources) >= len(TOPICS)
        for question in ("How many rooms has the harbour?", "When do visitors come to the library?"):
            _c, answer_id, status, error, stats = send_and_wait(qtbot, w, question)
            assert status == "complete", error
            # only the question (in the template's turn markers) and nothing of the documents again
            assert stats["prompt_evaluated"] < 60, stats
            assert stats["prompt_reused"] > first["prompt_tokens"]
            assert w.store.message(answer_id).sources == first_sources  # type: ignore[arg-type]
        messages = w.store.messages(w.current_conv)  # type: ignore[arg-type]
        users = [m for m in messages if m.role == "user"]
        assert "<sources>" in (users[0].sent or "")
        assert all("<sources>" not in (m.sent or "") for m in users[1:])
        assert [m.content for m in users] == ["When did the orchard open?", "How many rooms has the harbour?",
                                              "When do visitors come to the library?"]  # shown as typed
    finally:
        w.close()
        w.store.close()
