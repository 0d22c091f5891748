"""What a new user tripped over (issue 30), each driven in the real window offscreen.

Sizes, the Sources window's highlight, a broken tool server, a missing keyring, the way back
from Models, and notices that must follow the chat and the real state.
"""

from __future__ import annotations

import shlex
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest
from PySide6.QtCore import QPoint, Qt, QTimer, QUrl
from PySide6.QtWidgets import QApplication, QMessageBox, QPlainTextEdit, QWidget
from pytestqt.qtbot import QtBot

from app.tools.config import ToolServer
from app.ui.common.secrets import keep_for_session
from app.ui.tools.widgets import ToolsDialog
from app.ui.window import MainWindow
from tests.ui.windows import WAIT_MS, make_window, send_and_wait

HIGHLIGHT = "#fff3a3"
NOT_MCP = f"{shlex.quote(sys.executable)} -c 'print(1)'"  # a program that runs, prints, and is no MCP server


@pytest.fixture
def window(qtbot: QtBot, test_model: Path) -> Iterator[MainWindow]:
    w = make_window(qtbot, test_model)
    yield w
    w.close()  # every tool server, the API and the engine end with the window
    w.store.close()


def _inside(widget: QWidget, window: QWidget) -> bool:
    """Whether the widget is shown whole inside the window (not cut off at its right or bottom)."""
    top_left = widget.mapTo(window, QPoint(0, 0))
    return (widget.isVisible() and top_left.x() >= 0 and top_left.y() >= 0
            and top_left.x() + widget.width() <= window.width() and top_left.y() + widget.height() <= window.height())


def _resized(window: QWidget, width: int, height: int) -> bool:
    window.resize(width, height)
    return window.width() <= width and window.height() <= height


def test_the_window_fits_800_by_600_with_a_long_title_and_every_panel_open(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    w = window
    conv = w.current_conv
    assert conv is not None
    w.controller.rename(conv, "A very long chat title that goes on " * 6)  # about 200 characters
    w.refresh_conversations()
    w.tools.servers.add(ToolServer("", "A tool server with a rather long name indeed", "stdio", command="true"))
    w.chat_page.show_conversation(conv)
    w.chat_page.settings_button.setChecked(True)  # the chat settings panel, with the tool switches
    notes = tmp_path / "notes with a long file name that fills the documents list.md"
    notes.write_text("# Notes\n\nThe lamp is lit at dusk.\n")
    w.chat_page.attach_paths([notes])
    qtbot.waitUntil(lambda: "1 ready" in w.chat_page.docs_panel.summary.text(), timeout=WAIT_MS)
    w.chat_page.show_notice("A notice that is rather long as well, to see that it wraps instead of widening. " * 3)
    w.chat_page.approval.ask({"name": "read_file", "server": "A tool server", "arguments": {"path": "x" * 300}})
    w.status.model.setText("Some model with a very long name · Q4_K_M · CPU · 8192 tokens context · loaded in 1.0s")
    assert len(w.chat_page.title_label.text()) >= 200

    qtbot.waitUntil(lambda: _resized(w, 800, 600), timeout=5000)  # as a user drags it, layouts settled
    hint = w.minimumSizeHint()
    assert max(hint.width() - 800, hint.height() - 600) <= 0, hint
    page = w.chat_page
    for widget in (page.send_button, page.attach_button, page.settings_button, page.model_combo,
                   page.composer, page.settings_panel, w.status.ctx_meter):
        assert _inside(widget, w), widget.objectName() or type(widget).__name__
    assert page.title_label.elided().endswith("…")  # cut with an ellipsis, the whole title in the tooltip
    assert page.title_label.toolTip() == page.title_label.text()

    w.show_models()  # the Models page fits too
    qtbot.waitUntil(lambda: _resized(w, 800, 600), timeout=5000)
    hint = w.minimumSizeHint()
    assert max(hint.width() - 800, hint.height() - 600) <= 0, hint


def _highlighted(viewer: QPlainTextEdit | QWidget) -> set[int]:
    """Positions (Qt's) drawn with the highlight: by the document's formats or by extra selections."""
    doc = viewer.document()  # type: ignore[attr-defined]
    marked: set[int] = set()
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().background().color().name() == HIGHLIGHT:
                marked.update(range(fragment.position(), fragment.position() + fragment.length()))
            it += 1
        block = block.next()
    for selection in viewer.extraSelections():  # type: ignore[attr-defined]
        if selection.format.background().color().name() == HIGHLIGHT:
            marked.update(range(selection.cursor.selectionStart(), selection.cursor.selectionEnd()))
    return marked


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_each_passage_in_the_sources_window_highlights_exactly_its_stored_range(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    w = window
    conv = w.current_conv
    assert conv is not None
    rules = tmp_path / "library rules.md"
    rules.write_text(  # an emoji first: Qt counts it as two positions, Python as one character
        "# Library rules 📚\n\nBe quiet in the reading room.\n\n"
        "## Regular hours\n\nThe library opens at nine and closes at six on weekdays.\n\n"
        "## Holidays\n\nThe library is closed on public holidays.\n\n"
        "## Appointments\n\nBook an appointment with a librarian at the desk.\n", encoding="utf-8")
    index = w.docs.docs.index
    doc, _ = index.add_document(index.chat_collection(conv).id, rules)
    w.docs.docs.indexer.index_document(doc)
    ranked = w.docs.docs.retriever.search(index.attached(conv), "When does the library open on weekdays?", k=4)
    assert len(ranked) >= 3
    sources = [p.to_dict() for p in sorted(ranked, key=lambda p: p.start)]  # numbered in file order
    answer = w.store.add_message(conv, "assistant", "It opens at nine [2].")
    w.store.update_message(answer.id, sources=sources)
    w.chat_page.open_citation(answer.id, 1)
    dialog = w.chat_page.passage_dialog
    assert dialog is not None
    qtbot.waitUntil(dialog.isVisible)

    shown_numbers = [int(dialog.list.item(row).text().split("]")[0].strip("[")) for row in range(dialog.list.count())]
    scores = [float(sources[n - 1]["score"]) for n in shown_numbers]
    assert scores == sorted(scores, reverse=True)  # most relevant first, numbered as the answer cites them
    assert dialog.current() == sources[0]  # the passage clicked is the one shown
    assert dialog.list.horizontalScrollBar().maximum() == 0  # labels are not hidden behind a scrollbar

    for row in [*range(dialog.list.count()), 0]:  # every passage chosen after the first, and back
        dialog.list.setCurrentRow(row)
        source = dialog.current()
        text = dialog.viewer.toPlainText()
        assert text[source["start"]:source["end"]] == source["text"]
        first, last = _utf16(text[:source["start"]]), _utf16(text[:source["end"]])
        assert _highlighted(dialog.viewer) == set(range(first, last)), source["location"]

    # "Open file" where no program opens the file type: said in the window, not silently ignored.
    # (The desktop's file associations are outside this machine's offscreen session: that boundary is faked.)
    dialog.open_url = lambda _url: False
    dialog.open_button.click()
    assert dialog.open_error.isVisible()
    assert "No program on this computer opens .md files" in dialog.open_error.text()
    assert str(rules) in dialog.open_error.text()
    opened: list[QUrl] = []
    dialog.open_url = lambda url: opened.append(url) or True
    dialog.list.setCurrentRow(1)
    dialog.open_button.click()
    assert opened == [QUrl.fromLocalFile(str(rules))]
    assert not dialog.open_error.isVisible()
    dialog.close()


def test_a_program_that_is_no_mcp_server_is_explained_where_the_user_acted(
        qtbot: QtBot, window: MainWindow) -> None:
    w = window
    dialog = ToolsDialog(w, w.tools)
    dialog.name.setText("Fake tool")
    dialog.command.setText(NOT_MCP)
    dialog.test_button.click()  # Test in the Tools dialog, before switching it on anywhere
    qtbot.waitUntil(lambda: bool(dialog.error.text()), timeout=WAIT_MS)
    said = dialog.error.text()
    assert "not an MCP tool server" in said, said
    assert "Connection closed" not in said
    dialog.add_button.click()
    assert dialog.list.count() == 1

    dialog.list.setCurrentRow(0)  # editable: selecting fills the fields, Save changes keeps the entry
    assert dialog.name.text() == "Fake tool"
    assert dialog.command.text() == NOT_MCP
    dialog.name.setText("Fake tool, renamed")
    dialog.add_button.click()
    assert [s.name for s in w.tools.servers.all()] == ["Fake tool, renamed"]
    dialog.accept()

    w.chat_page.show_conversation(w.current_conv)
    w.chat_page.settings_button.setChecked(True)
    panel = w.chat_page.tools_panel
    assert panel is not None
    (box,) = panel.boxes.values()
    box.setChecked(True)  # the user switches it on in the chat
    qtbot.waitUntil(lambda: box.isEnabled(), timeout=WAIT_MS)
    assert not box.isChecked()
    assert panel.error.isVisible()  # beside the switch, and it stays
    assert "not an MCP tool server" in panel.error.text()
    assert "Fake tool, renamed" in panel.error.text()


def _answer_box(qtbot: QtBot, button: str, seen: list[str]) -> Callable[[], None]:
    """Click ``button`` in the next modal message box, noting its text."""

    def poll() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text() + " " + box.informativeText())
            next(b for b in box.buttons() if b.text() == button).click()
        else:
            QTimer.singleShot(20, poll)

    return poll


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())  # keyring's own "no backend here"
    yield
    keyring.set_keyring(previous)


@pytest.mark.usefixtures("no_keyring")
def test_without_a_keyring_the_user_is_told_and_chooses(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    dialog = ToolsDialog(w, w.tools)
    dialog.show()
    intro = dialog.intro.text()
    assert "no system keyring" in intro
    assert "kept in your system keyring" not in intro
    dialog.name.setText("Search")
    dialog.command.setText("search-server --fast")
    dialog.secrets.setPlainText("API_KEY=s3cret")
    dialog.add_button.click()
    assert dialog.keyring_bar.isVisible()  # told where it was added, with the choice
    assert "cannot save the secrets of “Search”" in dialog.keyring_note.text()
    dialog.keep_button.click()
    assert not dialog.keyring_bar.isVisible()
    (server,) = w.tools.servers.all()
    assert w.tools.servers.secrets(server).env == {"API_KEY": "s3cret"}  # kept, for this session, as chosen

    dialog.name.setText("Other")
    dialog.command.setText("other-server")
    dialog.secrets.setPlainText("TOKEN=abc")
    dialog.add_button.click()
    assert dialog.keyring_bar.isVisible()
    dialog.drop_button.click()
    assert [s.name for s in w.tools.servers.all()] == ["Search"]  # not kept without its secret
    assert "was removed" in dialog.outcome.text()
    dialog.accept()

    # The same choice for a server's API key (Servers dialog) and the Hugging Face token: a question box.
    seen: list[str] = []
    QTimer.singleShot(0, _answer_box(qtbot, "Don't keep it", seen))
    assert not keep_for_session(w, "your Hugging Face token", "it is forgotten now")
    assert "no system keyring is available" in seen[0]


def test_models_page_returns_to_the_chat(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    conv = w.current_conv
    side = w.sidebar
    for leave in ("esc", "back", "models button", "the open chat"):
        side.models_button.click()
        assert w.pages.currentWidget() is w.models_page
        assert side.models_button.isChecked()
        if leave == "esc":
            w.activateWindow()
            qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
            qtbot.keyClick(w.models_page.tabs, Qt.Key.Key_Escape)
        elif leave == "back":
            w.models_page.back_button.click()
        elif leave == "models button":
            side.models_button.click()  # toggles back
        else:
            index = side.conversations.index(side.conversations.row_of(conv))  # type: ignore[arg-type]
            qtbot.mouseClick(side.conv_list.viewport(), Qt.MouseButton.LeftButton,
                             pos=side.conv_list.visualRect(index).center())
        assert w.pages.currentWidget() is w.chat_page, leave
        assert w.current_conv == conv
        assert not side.models_button.isChecked()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_notices_and_the_status_bar_follow_the_chat_and_the_real_state(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    w = window
    page, status = w.chat_page, w.status
    first = w.current_conv
    args = send_and_wait(qtbot, w, "What is the capital of France?")
    assert args[2] == "complete"
    qtbot.waitUntil(lambda: page.notice_bar.isVisible(), timeout=5000)
    template_notice = page.notice_bar.text()
    assert "template" in template_notice  # the test model is a base model without a chat template
    assert "tok/s" in status.speed.text()

    w.new_chat()  # Ctrl+N: the new chat has no answer yet, so no figures of the other chat
    assert status.speed.text() == ""
    assert not status.speed.isVisible()
    assert status.ctx_meter.value() == 0
    w.select_conversation(first)  # type: ignore[arg-type]
    assert page.notice_bar.isVisible()
    assert template_notice in page.notice_bar.text()
    assert "tok/s" in status.speed.text()

    w.servers.port = _free_port()
    w.serve_action.trigger()  # File → Serve the loaded model
    url = w.servers.api.url if w.servers.api else ""
    assert url
    assert url in page.notice_bar.text()
    assert status.api.isVisible()
    assert url in status.api.text()
    assert status.api is not status.speed  # apart, each its own figure in the bar
    w.serve_action.trigger()  # off: no banner may still say it answers
    assert w.servers.api is None
    assert url not in page.notice_bar.text()
    assert not status.api.isVisible()
    assert template_notice in page.notice_bar.text()

    doc = tmp_path / "hours.md"
    doc.write_text("# Hours\n\nOpen at nine.\n")
    page.attach_paths([doc])
    assert "adding hours.md" in page.docs_panel.summary.text()
    qtbot.waitUntil(lambda: "1 ready" in page.docs_panel.summary.text(), timeout=WAIT_MS)
    assert "adding" not in page.docs_panel.summary.text()  # no "indexing…" left once it is ready
    assert "Indexing" not in w.statusBar().currentMessage()



def test_discover_offline_keeps_the_starters_offers_retry_and_marks_what_cannot_fit(qtbot: QtBot) -> None:
    from app import paths
    from app.engine.client import Engine
    from app.engine.types import LoadSettings
    from app.models.auth import TokenStore
    from app.store.chats import ChatStore
    from app.ui.chat.controller import ChatController
    from app.ui.models.manager import ModelManager

    store = ChatStore(paths.database_path())
    offline = f"http://127.0.0.1:{_free_port()}"  # nothing listens there: as offline as a search can be
    w = MainWindow(ChatController(store, Engine(), LoadSettings(n_ctx=2048)),
                   manager=ModelManager(endpoint=offline, tokens=TokenStore()))
    qtbot.addWidget(w)
    w.show()
    try:
        w.show_models()
        tab = w.models_page.discover_tab
        tab.set_memory(24 * 1024**3)  # a 24 GB machine
        texts = [tab.results.item(i).text() for i in range(tab.results.count())]
        marked = {t.split("  ·  ")[0] for t in texts if "Won't fit this machine" in t}
        assert "Llama 3.3 70B Instruct" in marked
        assert not any(t.startswith("Llama 3.2 1B") for t in marked)
        starters = tab.results.count()
        tab.query.setText("llama")
        with qtbot.waitSignal(w.manager.searchDone, timeout=WAIT_MS):
            tab.search()
        assert tab.results.count() == starters  # the starters stay
        assert tab.retry_button.isVisible()
        assert tab.results.currentItem() is None  # nothing picked for the user
        assert "Pick a model" in tab.repo_title.text()
    finally:
        w.close()
        store.close()


def test_quotes_are_marked_and_code_keeps_its_copy(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    conv = w.current_conv
    assert conv is not None
    line = "result = compute(" + ", ".join(f"argument_{i}" for i in range(40)) + ")"
    w.store.add_message(conv, "assistant", f"Code:\n\n```python\n{line}\n```\n\n> A quoted line.\n")
    w.chat_page.show_conversation(conv)
    widget = w.chat_page.chat_view.widgets[-1]
    qtbot.waitUntil(lambda: "argument_39" in widget.body.toPlainText(), timeout=5000)
    assert widget.code_blocks == (line,)  # Copy gives the line as it is, unwrapped
    html = widget.body.toHtml()
    assert "A quoted line." in html
    assert "#c7ccd4" in html  # the quote's bar at its left
    widget.copy_button.click()
    assert QApplication.clipboard().text() == widget.text
    assert widget.copy_button.text().startswith("Copied")  # a copy says it happened


def test_smaller_things_new_chat_right_click_search_edit_and_library_buttons(
        qtbot: QtBot, window: MainWindow) -> None:
    from PySide6.QtCore import QEvent, QPointF
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QDialog

    from app.ui.chat.edit_dialog import EditMessageDialog

    w = window
    first = w.current_conv
    assert first is not None
    w.store.add_message(first, "user", "Hello there")
    w.new_chat()
    w.new_chat()  # Ctrl+N twice: one empty new chat, not a pile of them
    assert len([c for c in w.store.conversations() if not w.store.messages(c.id)]) == 1
    opened = w.current_conv
    assert opened != first

    side = w.sidebar
    row = side.conversations.row_of(first)
    center = QPointF(side.conv_list.visualRect(side.conversations.index(row)).center())
    press = QMouseEvent(QEvent.Type.MouseButtonPress, center, center, Qt.MouseButton.RightButton,
                        Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(side.conv_list.viewport(), press)  # the press a right-click starts with
    assert w.current_conv == opened  # the menu acts on that chat; the open chat stays on screen

    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    side.search.setFocus()
    qtbot.keyClicks(side.search, "zebra crossing")
    assert side.no_results.isVisible()
    qtbot.keyClick(side.search, Qt.Key.Key_Escape)
    assert side.search.text() == ""
    assert not side.no_results.isVisible()

    dialog = EditMessageDialog(w, "Hello there")
    dialog.show()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog, timeout=5000)
    qtbot.keyClick(dialog.editor, Qt.Key.Key_Return)  # Enter: a new line
    assert dialog.isVisible()
    qtbot.keyClick(dialog.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Enter: send
    assert dialog.result() == QDialog.DialogCode.Accepted

    w.show_models()
    library = w.models_page.library_tab
    library.table.clearSelection()
    assert library.row_buttons
    assert not any(b.isEnabled() for b in library.row_buttons)  # "Chat with it", "Delete…": select a model first


def test_about_links_each_known_model_license(window: MainWindow) -> None:
    from PySide6.QtWidgets import QTextBrowser

    from app.ui.settings.dialogs import AboutDialog

    w = window
    dialog = AboutDialog(w, [info for _path, info in w.choices.known() if info is not None])
    view = dialog.findChild(QTextBrowser)
    assert view is not None
    assert view.openExternalLinks()
    assert "https://ai.google.dev/gemma/terms" in view.toHtml()  # the test model's "gemma", as a link
    assert "Gemma Terms of Use" in view.toPlainText()
    dialog.close()
