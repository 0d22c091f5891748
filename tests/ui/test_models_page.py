"""The Models area, driven offscreen against the local test hub (real huggingface_hub, real downloads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app import paths
from app.engine.client import Engine
from app.engine.types import LoadSettings
from app.models.auth import TokenStore
from app.store.chats import ChatStore
from app.ui.chat.controller import ChatController
from app.ui.models.manager import ModelManager
from app.ui.window import MainWindow
from tests.hubserver import GEMMA, LLAMA, HubServer
from tests.hubserver import GEMMA_FILE as FILE

WAIT_MS = 60_000


@pytest.fixture
def window(qtbot: QtBot, hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    store = ChatStore(paths.database_path())
    controller = ChatController(store, Engine(), LoadSettings(n_ctx=2048))
    w = MainWindow(controller, manager=ModelManager(endpoint=hub.url, tokens=TokenStore()))
    errors: list[str] = []  # errors reported to the message bridge, instead of a modal dialog
    w.bridge.posted.disconnect(w.present)
    w.bridge.posted.connect(lambda m: errors.append(m.text) if m.level == "error" else w.present(m))
    w.errors = errors  # type: ignore[attr-defined]
    qtbot.addWidget(w)
    w.show()
    w.show_models()
    yield w
    w.close()
    store.close()


def open_repo(qtbot: QtBot, w: MainWindow, repo_id: str) -> None:
    tab = w.models_page.discover_tab
    with qtbot.waitSignal(w.manager.repoLoaded, timeout=WAIT_MS):
        tab.open_repo(repo_id)


def test_first_visit_shows_the_starter_list_then_search(qtbot: QtBot, window: MainWindow) -> None:
    page = window.models_page
    assert page.tabs.currentWidget() is page.discover_tab  # no models yet
    tab = page.discover_tab
    assert tab.results.count() >= 4
    assert "Llama 3.2 1B" in tab.results.item(0).text()
    tab.query.setText("llama")
    with qtbot.waitSignal(window.manager.searchDone, timeout=WAIT_MS):
        tab.search()
    texts = [tab.results.item(i).text() for i in range(tab.results.count())]
    assert texts[0].startswith(LLAMA)
    assert "gated" in texts[0]
    assert len(texts) == 3


def test_pick_a_variant_accept_the_license_and_download(qtbot: QtBot, window: MainWindow,
                                                         test_model: Path) -> None:
    page = window.models_page
    tab = page.discover_tab
    open_repo(qtbot, window, GEMMA)
    assert tab.variants.rowCount() == 1
    assert tab.variants.item(0, 0).text() == "★ Q4_K_M"
    assert tab.variants.item(0, 2).text() == "fits in RAM"
    assert "Gemma Terms of Use" in tab.license_title.text()
    assert "Prohibited Use" in tab.conditions.text()
    assert not tab.download_button.isEnabled()  # the license comes first
    tab.accept_box.setChecked(True)
    assert tab.download_button.isEnabled()
    assert window.manager.library.registry.acceptance(GEMMA) is not None
    with qtbot.waitSignal(window.manager.libraryChanged, timeout=WAIT_MS):
        tab.download_button.click()
        assert page.tabs.currentWidget() is page.downloads_tab
    qtbot.waitUntil(lambda: not window.manager.is_active(1), timeout=WAIT_MS)
    page.downloads_tab.refresh()
    row = page.downloads_tab.rows[1]
    assert "Done" in row.status.text()
    page.library_tab.refresh()
    assert page.library_tab.table.rowCount() == 1
    assert page.library_tab.table.item(0, 1).text() == "Q4_K_M"
    assert "downloaded from" in page.library_tab.table.item(0, 8).text()
    # The downloaded model is offered for chats.
    assert any(path.endswith(FILE) for path, _info in window.choices.known())
    assert window.errors == []  # type: ignore[attr-defined]


def test_pause_and_resume_from_the_downloads_tab(qtbot: QtBot, window: MainWindow, hub: HubServer) -> None:
    hub.faults[FILE] = {"delay": 0.003}
    tab = window.models_page.discover_tab
    open_repo(qtbot, window, GEMMA)
    tab.accept_box.setChecked(True)
    tab.download_button.click()
    downloads = window.models_page.downloads_tab
    qtbot.waitUntil(lambda: 1 in downloads.rows and downloads.rows[1].bar.value() > 50, timeout=WAIT_MS)
    row = downloads.rows[1]
    assert row.pause_button.text() == "Pause"
    with qtbot.waitSignal(window.manager.downloadFinished, timeout=WAIT_MS):
        row.pause_button.click()
    assert window.manager.library.registry.download(1).status == "paused"
    assert row.pause_button.text() == "Resume"
    assert "Paused" in row.status.text()
    hub.faults.pop(FILE)
    with qtbot.waitSignal(window.manager.libraryChanged, timeout=WAIT_MS):
        row.pause_button.click()
    qtbot.waitUntil(lambda: window.manager.library.registry.download(1).status == "done", timeout=WAIT_MS)
    assert hub.ranges_for(FILE)[-1].startswith("bytes=")


def test_gated_repo_without_a_token_explains_what_to_do(qtbot: QtBot, window: MainWindow) -> None:
    tab = window.models_page.discover_tab
    open_repo(qtbot, window, LLAMA)
    assert "Llama 3.2 Community License" in tab.license_title.text()
    assert "Built with Llama" in tab.conditions.text()
    assert "signing in" in tab.conditions.text()  # the full license file is gated
    assert "unknown" in tab.fit_note.text()
    tab.accept_box.setChecked(True)
    with qtbot.waitSignal(window.manager.downloadFinished, timeout=WAIT_MS) as blocker:
        tab.download_button.click()
    assert "sign in with your Hugging Face token" in blocker.args[1]  # type: ignore[index]
    assert "sign in" in window.errors[0]  # type: ignore[attr-defined]


def test_import_and_quantize_from_my_models(qtbot: QtBot, window: MainWindow, test_model: Path) -> None:
    lib = window.models_page.library_tab
    with qtbot.waitSignal(window.manager.jobFinished, timeout=WAIT_MS) as blocker:
        lib.start_import(test_model, link=True)
    assert blocker.args == ["import", ""]
    lib.refresh()
    assert lib.table.rowCount() == 1
    assert lib.table.item(0, 8).text() == "linked in place"
    with qtbot.waitSignal(window.manager.jobFinished, timeout=WAIT_MS) as blocker:
        lib.start_quantize(test_model, "Q4_0")
    assert blocker.args == ["quantize", ""]
    lib.refresh()
    quants = sorted(lib.table.item(r, 1).text() for r in range(lib.table.rowCount()))
    assert quants == ["Q4_0", "Q4_K_M"]


def test_a_third_download_waits_for_a_free_slot(qtbot: QtBot, window: MainWindow, hub: HubServer) -> None:
    from app.models.registry import RemoteFile
    from app.ui.models.manager import MAX_PARALLEL_DOWNLOADS

    hub.faults[FILE] = {"delay": 0.003}
    manager = window.manager
    registry = manager.library.registry
    details = manager.client().details(GEMMA)
    listed = details.file(FILE)
    assert listed is not None
    acceptance = registry.accept(GEMMA, "gemma", "Gemma Terms of Use", "0" * 64)
    ids = []
    for i in range(MAX_PARALLEL_DOWNLOADS + 1):
        record = registry.add_download(GEMMA, details.commit, f"copy {i}",
                                       files=[RemoteFile(FILE, listed.size, listed.sha256)],
                                       dest_dir=paths.models_dir() / f"copy{i}", acceptance_id=acceptance.id)
        manager.resume(record.id)  # the Downloads tab refreshes on each change, from this thread
        ids.append(record.id)
    assert registry.download(ids[-1]).status == "queued"
    assert "Waiting" in window.models_page.downloads_tab.rows[ids[-1]].status.text()
    hub.faults[FILE]["delay"] = 0.0
    qtbot.waitUntil(lambda: [registry.download(i).status for i in ids] == ["done"] * len(ids), timeout=WAIT_MS)
