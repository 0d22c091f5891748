"""Settings → Devices: the workers (``paddock worker`` on other computers) a model's layers are spread
over, each with whether it answers, its device and its free memory; add and remove them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine import rpc
from app.errors import WorkerError

COLUMNS = ("Worker", "Status", "Device", "Free memory")


class _Prober(QObject):
    """Asks workers in background threads; ``probed`` comes back on the GUI thread (queued).

    Signals:
        probed(object): a :class:`app.engine.rpc.WorkerStatus`.
    """

    probed = Signal(object)

    def __init__(self, probe: Callable[[str], rpc.WorkerStatus]) -> None:
        super().__init__()
        self._probe = probe
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="worker-probe")

    def ask(self, addr: str) -> None:
        self._pool.submit(lambda: self.probed.emit(self._probe(addr)))

    def close(self) -> None:
        # Probes still running end within their timeout; each holds this object until then.
        self._pool.shutdown(wait=False, cancel_futures=True)


def describe(status: rpc.WorkerStatus) -> tuple[str, str, str]:
    """(status, device, free memory) as the table shows them."""
    if not status.reachable:
        return f"not reachable: {status.error}", "", ""
    memory = (f"{status.memory_free / 1024**3:.1f} of {status.memory_total / 1024**3:.1f} GB"
              if status.memory_total else "")
    if status.error and not status.busy:
        return f"not usable: {status.error}", status.device, memory
    return ("in use by a client" if status.busy else "ready"), status.device or "(not told)", memory


class DevicesDialog(QDialog):
    """The workers list; :meth:`workers` is what the user kept."""

    def __init__(self, parent: QWidget | None, workers: Sequence[str],
                 probe: Callable[[str], rpc.WorkerStatus] = rpc.probe) -> None:
        super().__init__(parent)
        self.setWindowTitle("Devices")
        layout = QVBoxLayout(self)
        intro = QLabel(
            "This computer's own device is always used. Workers lend theirs: start <code>paddock worker</code> on "
            "another computer and add its address here; the model's layers are spread over all of them by "
            "free memory the next time a model loads. Workers have no password: use them on a trusted "
            "network only (or through an SSH tunnel).")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        self.address = QLineEdit()
        self.address.setPlaceholderText(f"HOST:PORT, e.g. 192.168.1.20:{rpc.DEFAULT_PORT}")
        self.address.returnPressed.connect(self.add)
        row.addWidget(self.address, 1)
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(self.add)
        row.addWidget(self.add_button)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        row.addWidget(self.remove_button)
        self.refresh_button = QPushButton("Check again")
        self.refresh_button.clicked.connect(self.refresh)
        row.addWidget(self.refresh_button)
        layout.addLayout(row)
        self.error = QLabel()
        self.error.setObjectName("hint")
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._prober = _Prober(probe)
        self._prober.probed.connect(self._show)
        self.finished.connect(lambda _code: self._prober.close())
        for addr in workers:
            self._append(addr)
        self.resize(720, 320)

    def workers(self) -> tuple[str, ...]:
        return tuple(self._address(r) for r in range(self.table.rowCount()))

    def _address(self, r: int) -> str:
        item = self.table.item(r, 0)
        return item.text() if item is not None else ""

    def add(self) -> None:
        addr = self.address.text().strip()
        try:
            rpc.parse_endpoint(addr)
        except WorkerError as exc:
            self.error.setText(str(exc))
            return
        self.error.setText("")
        if addr not in self.workers():
            self._append(addr)
        self.address.clear()

    def remove_selected(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(r)

    def refresh(self) -> None:
        for r in range(self.table.rowCount()):
            self._set(r, ("checking…", "", ""))
            self._prober.ask(self._address(r))

    def _append(self, addr: str) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.table.setItem(r, 0, QTableWidgetItem(addr))
        self._set(r, ("checking…", "", ""))
        self._prober.ask(addr)

    def _set(self, r: int, cells: tuple[str, str, str]) -> None:
        for c, text in enumerate(cells, start=1):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.table.setItem(r, c, item)

    def _show(self, status: rpc.WorkerStatus) -> None:
        for r in range(self.table.rowCount()):
            if self._address(r) == status.endpoint:
                self._set(r, describe(status))
