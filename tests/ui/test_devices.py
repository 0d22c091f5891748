"""Settings → Devices: workers with reachability, device and memory, from a real worker on 127.0.0.1
behind its real gate (the status line a Paddock worker answers)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from pytestqt.qtbot import QtBot

from app.engine import rpc
from app.engine.worker_gate import WorkerGate
from app.ui.settings.devices import DevicesDialog


@pytest.fixture(scope="module")
def gated_worker() -> Iterator[WorkerGate]:
    with rpc.WorkerProcess("127.0.0.1", threads=1) as worker:
        gate = WorkerGate(worker, "127.0.0.1", 0)
        gate.bind()
        thread = threading.Thread(target=gate.serve_forever, daemon=True)
        thread.start()
        yield gate
        gate.stop()
        thread.join(5)


def _cell(dialog: DevicesDialog, row: int, col: int) -> str:
    item = dialog.table.item(row, col)
    return item.text() if item is not None else ""


def test_devices_lists_workers_with_status_device_and_memory(qtbot: QtBot, gated_worker: WorkerGate) -> None:
    dead = f"127.0.0.1:{rpc.free_port()}"
    dialog = DevicesDialog(None, (gated_worker.endpoint, dead))
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: "checking" not in _cell(dialog, 0, 1) and "checking" not in _cell(dialog, 1, 1),
                    timeout=15000)
    assert _cell(dialog, 0, 1) == "ready"
    assert _cell(dialog, 0, 2).startswith("CPU (")  # the worker tells its device
    assert " GB" in _cell(dialog, 0, 3)
    assert _cell(dialog, 1, 1).startswith("not reachable")
    # add (checked as HOST:PORT), refuse a bad address, remove
    dialog.address.setText("not an address")
    dialog.add_button.click()
    assert "HOST:PORT" in dialog.error.text()
    dialog.address.setText("127.0.0.1:9")
    dialog.add_button.click()
    assert dialog.workers() == (gated_worker.endpoint, dead, "127.0.0.1:9")
    dialog.table.selectRow(1)
    dialog.remove_button.click()
    assert dialog.workers() == (gated_worker.endpoint, "127.0.0.1:9")


def test_settings_keep_the_workers_chosen(qtbot: QtBot) -> None:
    from app.engine.types import LoadSettings
    from app.ui.settings.dialogs import SettingsDialog

    dialog = SettingsDialog(None, "", LoadSettings(workers=("10.0.0.5:50052",)))  # type: ignore[arg-type]
    qtbot.addWidget(dialog)
    assert "10.0.0.5:50052" in dialog.workers_label.text()
    dialog.workers = ("10.0.0.5:50052", "10.0.0.6:50052")  # what Devices… leaves on OK
    assert dialog.load_settings(LoadSettings()).workers == ("10.0.0.5:50052", "10.0.0.6:50052")
