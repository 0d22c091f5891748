"""Models → *From other apps…*: LM Studio's, Ollama's and the HF cache's models offered and added by reference."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app import paths
from app.ui.window import MainWindow
from tests.other_app_files import apps_home
from tests.ui.windows import WAIT_MS, make_window


@pytest.fixture
def found_window(qtbot: QtBot, tmp_path: Path, instruct_model: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    apps_home(tmp_path, instruct_model, monkeypatch)
    w = make_window(qtbot, None)
    yield w
    w.controller.shutdown()
    w.store.close()


def test_from_other_apps_offers_and_adds_them_in_place(qtbot: QtBot, found_window: MainWindow) -> None:
    w = found_window
    lib = w.models_page.library_tab
    with qtbot.waitSignal(w.manager.othersFound, timeout=WAIT_MS):
        w.manager.scan_other_apps()
    dialog = lib.found_dialog
    assert dialog is not None
    texts = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert len(texts) == 3
    assert any(t.startswith("Ollama · smollm2:135m") for t in texts)
    assert dialog.add_button.isEnabled()
    with qtbot.waitSignal(w.manager.libraryChanged, timeout=WAIT_MS):
        dialog.accept()
    lib.refresh()
    sources = sorted(lib.table.item(r, 8).text().split(":")[0] for r in range(lib.table.rowCount()))
    assert sources == ["in Hugging Face cache", "in LM Studio", "in Ollama"]
    assert not list(paths.models_dir().rglob("*.gguf"))  # nothing copied
    # offered again: all are in the library now
    with qtbot.waitSignal(w.manager.othersFound, timeout=WAIT_MS):
        w.manager.scan_other_apps()
    assert lib.found_dialog is not None
    assert not lib.found_dialog.add_button.isEnabled()
    assert lib.found_dialog.chosen() == []
    # a file the other app deleted is shown as such
    next(m for m in lib.models if m.meta.get("app") == "Ollama").path.unlink()
    lib.refresh()
    assert any("(missing or changed)" in lib.table.item(r, 0).text() for r in range(lib.table.rowCount()))
