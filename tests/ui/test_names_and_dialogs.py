"""Issue 30, items 9 and 10: one name per model everywhere, the chat search's matches highlighted, file
dialogs that start in the last folder used, and an import that can be cancelled."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFileDialog, QPushButton, QStyleOptionViewItem, QWidget
from pytestqt.qtbot import QtBot

from app import paths
from app.cli import main as cli
from app.models.library import ImportCancelledError, Library
from app.models.names import library_display_name
from app.ui.chat.itemmodels import ConvRole
from app.ui.chat.sidebar import MATCH_COLOUR
from app.ui.documents.panel import choose_files
from app.ui.tools.widgets import ToolsDialog
from app.ui.window import MainWindow
from tests.ui.windows import WAIT_MS, make_window


@pytest.fixture
def window(qtbot: QtBot, test_model: Path) -> Iterator[MainWindow]:
    w = make_window(qtbot, test_model)
    yield w
    w.close()
    w.store.close()


def test_a_model_has_one_name_in_the_menu_status_bar_my_models_cli_and_exports(
        qtbot: QtBot, window: MainWindow, test_model: Path, instruct_model: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    w, page, status = window, window.chat_page, window.status
    smol = w.manager.library.import_file(instruct_model, link=True)  # in My models, by the library's name
    smol_name = library_display_name(smol)
    gemma_name = w.choices.name(str(test_model))
    assert smol_name != gemma_name
    first = w.current_conv
    assert first is not None
    with qtbot.waitSignal(w.controller.modelLoaded, timeout=WAIT_MS):
        page.preload(str(test_model))
    assert page.model_combo.currentText().startswith(gemma_name)
    assert status.model.text().startswith(f"Loaded: {gemma_name} · ")

    w.store.add_message(first, "user", "Hello")  # so that the next chat is a new one
    w.new_chat(str(smol.path))  # another chat, another model, not loaded: the status bar names this one
    second = w.current_conv
    assert second != first
    assert page.model_combo.currentText().startswith(smol_name)
    assert status.model.text().startswith(smol_name)
    assert gemma_name not in status.model.text()  # never the other chat's model beside this chat's menu

    w.select_conversation(first)
    assert page.model_combo.currentText().startswith(gemma_name)
    assert status.model.text().startswith(f"Loaded: {gemma_name} · ")

    w.show_models()
    table = w.models_page.library_tab.table
    names = [table.item(row, 0).text() for row in range(table.rowCount())]
    assert smol_name in names  # My models: the very name the model menu shows

    assert cli(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert smol_name in listed
    assert cli(["models", "list", "--json"]) == 0
    assert [m["display_name"] for m in json.loads(capsys.readouterr().out)] == [smol_name]
    assert cli(["chat", "--list"]) == 0
    chats = capsys.readouterr().out
    assert f"({smol_name})" in chats
    assert f"({gemma_name})" in chats

    assert second is not None
    w.transfer.write_export(second, "md", tmp_path / "chat.md")
    assert f"*Model: {smol_name}*" in (tmp_path / "chat.md").read_text(encoding="utf-8")
    w.transfer.write_export(second, "json", tmp_path / "chat.json")
    exported = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert exported["model"] == str(smol.path)  # the path stays (an import finds the file again)
    assert exported["model_name"] == smol_name


def _has_colour(widget: QWidget, colour: str) -> bool:
    image = widget.grab().toImage()
    wanted = QColor(colour).rgb()
    return any(image.pixel(x, y) == wanted for y in range(0, image.height(), 2) for x in range(0, image.width(), 2))


def test_chat_search_shows_and_highlights_what_matched(qtbot: QtBot, window: MainWindow) -> None:
    w, side = window, window.sidebar
    first = w.current_conv
    assert first is not None
    w.store.add_message(first, "user", "Which way to the zebra crossing near the station, please?")
    w.refresh_conversations()
    viewport = side.conv_list.viewport()
    assert not _has_colour(viewport, MATCH_COLOUR)

    side.search.setText("zebra")
    row = side.conversations.row_of(first)
    assert row >= 0
    index = side.conversations.index(row)
    assert "zebra crossing" in index.data(ConvRole.Snippet)  # the message that matched, under the title
    option = QStyleOptionViewItem()
    option.initFrom(side.conv_list)
    assert f'background:{MATCH_COLOUR}; color:#1f2328">zebra</span>' in side.marks.row_html(index, 400, option)
    qtbot.waitUntil(lambda: _has_colour(viewport, MATCH_COLOUR), timeout=5000)  # painted, not only said

    side.search.clear()
    qtbot.waitUntil(lambda: not _has_colour(viewport, MATCH_COLOUR), timeout=5000)


def test_file_dialogs_open_in_the_last_folder_used(
        window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Qt's file dialog is modal and drawn by the platform: what it is asked (its starting folder) is
    # recorded at that boundary, and the file a user would pick is returned.
    config = tmp_path / "configs" / "claude_desktop_config.json"
    config.parent.mkdir()
    config.write_text('{"mcpServers": {}}', encoding="utf-8")
    asked: list[str] = []

    def pick_one(_parent: object, _title: str, folder: str, _filters: str) -> tuple[str, str]:
        asked.append(folder)
        return str(config), ""

    def pick_none(_parent: object, _title: str, folder: str, _filters: str) -> tuple[list[str], str]:
        asked.append(folder)
        return [], ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", pick_one)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", pick_none)
    ToolsDialog(window, window.tools).import_file()  # File → Tools → Import…: the home folder the first time
    assert asked == [str(Path.home())]
    window.chat_page.choose_images()  # Attach → Images…: where the last file was picked
    choose_files(window.chat_page)  # Attach → Files…: there too
    assert asked[1:] == [str(config.parent)] * 2
    fresh = QSettings(str(paths.config_dir() / "ui.ini"), QSettings.Format.IniFormat)
    assert fresh.value("last_folder") == str(config.parent)  # kept for the next start


def test_an_import_can_be_cancelled_and_leaves_nothing(
        qtbot: QtBot, window: MainWindow, test_model: Path, tmp_path: Path) -> None:
    library = Library()
    try:
        cancel = threading.Event()
        with pytest.raises(ImportCancelledError, match="cancelled: nothing was added"):
            library.import_file(test_model, on_progress=lambda _done, _total: cancel.set(), cancel=cancel)
        assert library.registry.models() == []
        assert not list((paths.models_dir() / "local").glob("*"))  # the partial copy is gone
    finally:
        library.close()

    large = tmp_path / "large-model.gguf"  # a real model followed by sparse padding: a copy that takes a while
    large.write_bytes(test_model.read_bytes())
    with large.open("r+b") as fh:
        fh.truncate(900 << 20)
    tab = window.models_page.library_tab
    with qtbot.waitSignal(window.manager.jobFinished, timeout=WAIT_MS) as finished:
        tab.start_import(large, link=False)
        assert tab.progress is not None
        (cancel_button,) = [b for b in tab.progress.findChildren(QPushButton) if b.text() == "Cancel"]
        cancel_button.click()  # the user's Cancel, while the file is copied
    assert finished.args == ["import-cancelled", ""]
    assert not list((paths.models_dir() / "local").glob("*"))
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.manager.library.registry.models() == []
