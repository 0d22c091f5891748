"""The Models area: Discover (search, variants, license), Downloads, and My models."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QProgressDialog,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.engine import hardware
from app.errors import PaddockError
from app.models.catalog import STARTERS
from app.models.download import Progress, human_size
from app.models.hub import RepoSummary
from app.models.quantize import TARGETS, advise
from app.models.registry import DownloadRecord, LibraryModel
from app.models.variants import Variant
from app.ui.common.messages import MessageBridge
from app.ui.models.manager import ModelManager, RepoView

REPO_ROLE = Qt.ItemDataRole.UserRole
FIT_COLORS = {"gpu": "#2e7d32", "partial": "#8d6e00", "ram": "#2e7d32", "too_large": "#c62828"}


def _label(text: str = "", wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
    label.setOpenExternalLinks(True)
    return label


class DiscoverTab(QWidget):
    def __init__(self, page: ModelsPage) -> None:
        super().__init__()
        self.page = page
        self.manager = page.manager
        self.view: RepoView | None = None
        self._pending: str | None = None
        split = QSplitter()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.addWidget(split)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 8, 0)
        row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search Hugging Face for GGUF models (e.g. llama 3.2)")
        self.query.returnPressed.connect(self.search)
        row.addWidget(self.query, 1)
        self.sort = QComboBox()
        for label, key in (("Most downloaded", "downloads"), ("Most liked", "likes"), ("Recently updated", "recent")):
            self.sort.addItem(label, key)
        row.addWidget(self.sort)
        search_button = QPushButton("Search")
        search_button.clicked.connect(self.search)
        row.addWidget(search_button)
        lv.addLayout(row)
        self.status = _label()
        lv.addWidget(self.status)
        self.results = QListWidget()
        self.results.setWordWrap(True)
        self.results.setSpacing(3)
        self.results.currentItemChanged.connect(self._on_pick)
        lv.addWidget(self.results, 1)
        split.addWidget(left)

        right = QScrollArea()
        right.setWidgetResizable(True)
        right.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        self.detail = QVBoxLayout(body)
        self.detail.setContentsMargins(8, 0, 0, 0)
        self.repo_title = _label("<h3>Pick a model</h3>")
        self.detail.addWidget(self.repo_title)
        self.repo_error = _label()
        self.repo_error.setStyleSheet("color: #c62828")
        self.detail.addWidget(self.repo_error)
        self.variants = QTableWidget(0, 4)
        self.variants.setHorizontalHeaderLabels(["Quantization", "Size", "On this machine", "File"])
        self.variants.verticalHeader().hide()
        self.variants.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.variants.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.variants.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.variants.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.variants.setMinimumHeight(180)
        self.detail.addWidget(self.variants)
        self.fit_note = _label()
        self.detail.addWidget(self.fit_note)
        self.license_title = _label("<b>License</b>")
        self.detail.addWidget(self.license_title)
        self.license_text = QTextBrowser()
        self.license_text.setOpenExternalLinks(True)
        self.license_text.setMinimumHeight(160)
        self.detail.addWidget(self.license_text)
        self.conditions = _label()
        self.detail.addWidget(self.conditions)
        accept_row = QHBoxLayout()
        self.accept_box = QCheckBox("I have read and accept this license")
        self.accept_box.toggled.connect(self._accept_toggled)
        accept_row.addWidget(self.accept_box, 1)
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("primaryButton")
        self.download_button.clicked.connect(self.download)
        accept_row.addWidget(self.download_button)
        self.detail.addLayout(accept_row)
        self.detail.addStretch(1)
        right.setWidget(body)
        split.addWidget(right)
        split.setSizes([380, 620])
        self._set_repo_widgets_visible(False)

        self.manager.searchDone.connect(self._on_results)
        self.manager.repoLoaded.connect(self._on_repo)
        self.show_starters()

    def _set_repo_widgets_visible(self, visible: bool) -> None:
        for w in (self.variants, self.fit_note, self.license_title, self.license_text, self.conditions,
                  self.accept_box, self.download_button):
            w.setVisible(visible)

    def show_starters(self) -> None:
        self.results.clear()
        self.status.setText("Starter models — or search all of Hugging Face above.")
        for s in STARTERS:
            item = QListWidgetItem(f"{s.title}  ·  {s.summary()}\n{s.suits}")
            item.setData(REPO_ROLE, s.repo_id)
            item.setToolTip(s.repo_id)
            self.results.addItem(item)

    def search(self) -> None:
        query = self.query.text().strip()
        if not query:
            self.show_starters()
            return
        self.status.setText("Searching…")
        self.manager.search(query, str(self.sort.currentData()))

    def _on_results(self, results: list[RepoSummary], error: str) -> None:
        self.results.clear()
        if error:
            self.status.setText(f"<span style='color:#c62828'>{html.escape(error)}</span>")
            return
        self.status.setText(f"{len(results)} GGUF repos" if results else "No GGUF models match.")
        for r in results:
            gated = "  ·  gated" if r.gated else ""
            item = QListWidgetItem(f"{r.repo_id}\n{r.downloads:,} downloads · {r.likes:,} likes · "
                                   f"{r.license or 'license not stated'}{gated}")
            item.setData(REPO_ROLE, r.repo_id)
            self.results.addItem(item)

    def _on_pick(self, current: QListWidgetItem | None, _previous: Any) -> None:
        if current is None:
            return
        repo_id = str(current.data(REPO_ROLE))
        self.open_repo(repo_id)

    def open_repo(self, repo_id: str) -> None:
        self.view = None
        self._pending = repo_id
        self.repo_title.setText(f"<h3>{html.escape(repo_id)}</h3>Loading files and license…")
        self.repo_error.clear()
        self._set_repo_widgets_visible(False)
        self.manager.open_repo(repo_id)  # fits are computed on the worker, with the memory free then

    def _on_repo(self, repo_id: str, view: RepoView | None, error: str) -> None:
        if repo_id != self._pending:
            return  # an answer for a repo the user has since left
        url = f"{self.manager.endpoint}/{repo_id}"
        self.repo_title.setText(f"<h3>{html.escape(repo_id)}</h3><a href='{url}'>{url}</a>")
        if view is None:
            self.repo_error.setText(html.escape(error))
            return
        self.view = view
        self.repo_error.clear()
        self._set_repo_widgets_visible(True)
        self._fill_variants(view)
        lic = view.license
        head = f"<b>License: {html.escape(lic.name)}</b>"
        if lic.url:
            head += f" — <a href='{lic.url}'>{lic.url}</a>"
        self.license_title.setText(head)
        text = lic.text
        if lic.gated_prompt and lic.gated_prompt not in text:
            text = lic.gated_prompt + "\n\n" + text
        self.license_text.setPlainText(text)
        items = "".join(f"<li>{html.escape(c)}</li>" for c in lic.conditions)
        note = f"<p><i>{html.escape(lic.note)}</i></p>" if lic.note else ""
        self.conditions.setText((f"<b>Conditions you must honour</b><ul>{items}</ul>" if items else "") + note)
        self.accept_box.blockSignals(True)
        self.accept_box.setChecked(view.accepted_at is not None)
        self.accept_box.setEnabled(view.accepted_at is None)
        if view.accepted_at is not None:
            self.accept_box.setText(f"Accepted on {time.strftime('%Y-%m-%d %H:%M', time.localtime(view.accepted_at))}")
        else:
            self.accept_box.setText("I have read and accept this license")
        self.accept_box.blockSignals(False)
        self._update_download_button()

    def _fill_variants(self, view: RepoView) -> None:
        variants = view.variants.variants
        self.variants.setRowCount(len(variants))
        select = 0
        for row, v in enumerate(variants):
            star = "★ " if v.recommended else ""
            cells = [f"{star}{v.quant}", human_size(v.size), v.fit_label,
                     v.name + (f"  ({len(v.files)} parts)" if v.split else "")]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(REPO_ROLE, row)
                if col == 2 and v.fit:
                    item.setForeground(Qt.GlobalColor.darkGreen if v.fit in ("gpu", "ram") else
                                       Qt.GlobalColor.darkYellow if v.fit == "partial" else Qt.GlobalColor.red)
                if v.recommended:
                    item.setToolTip("Recommended for this machine")
                self.variants.setItem(row, col, item)
            if v.recommended:
                select = row
        self.variants.resizeColumnsToContents()
        if variants:
            self.variants.selectRow(select)
        shape = view.variants.shape
        if not variants:
            self.fit_note.setText("This repo has no GGUF files Paddock can use.")
        elif shape is None:
            self.fit_note.setText("The fit on this machine is unknown: the file header could not be read "
                                  "(a gated repo shows it after you sign in with your token).")
        else:
            ctx = variants[0].n_ctx
            rec = view.variants.recommended
            moe = hardware.moe_note(shape)
            self.fit_note.setText(
                f"Estimated for a {ctx:,}-token context on this machine (weights + context memory)."
                + (f" {html.escape(moe)}" if moe else "")
                + ("" if rec else " <b>No variant fits this machine's memory.</b>"))

    def selected_variant(self) -> Variant | None:
        if self.view is None:
            return None
        rows = self.variants.selectionModel().selectedRows()
        if not rows:
            return None
        return self.view.variants.variants[rows[0].row()]

    def _accept_toggled(self, checked: bool) -> None:
        if checked and self.view is not None and self.view.accepted_at is None:
            self.view = self.manager.accept_license(self.view)
            self._on_repo(self.view.details.repo_id, self.view, "")
        self._update_download_button()

    def _update_download_button(self) -> None:
        accepted = self.view is not None and self.view.accepted_at is not None
        self.download_button.setEnabled(accepted and bool(self.view and self.view.variants.variants))
        self.download_button.setToolTip("" if accepted else "Accept the license first")

    def download(self) -> None:
        variant = self.selected_variant()
        if self.view is None or variant is None:
            return
        if variant.fit == "too_large":
            answer = QMessageBox.question(
                self, "Too large for this machine",
                f"{variant.name} needs about {human_size(variant.total_bytes or variant.size)} of memory, more "
                "than this machine has. Download it anyway?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        try:
            self.manager.download(self.view, variant)
        except PaddockError as exc:
            self.page.bridge.error(str(exc), title="Cannot download")
            return
        self.page.tabs.setCurrentWidget(self.page.downloads_tab)


class DownloadRow(QFrame):
    def __init__(self, tab: DownloadsTab, record: DownloadRecord) -> None:
        super().__init__()
        self.tab = tab
        self.download_id = record.id
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.title = QLabel(f"<b>{html.escape(record.name)}</b> — {html.escape(record.repo_id)}")
        top.addWidget(self.title, 1)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self._pause_or_resume)
        top.addWidget(self.pause_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: tab.manager.cancel(self.download_id))
        top.addWidget(self.cancel_button)
        layout.addLayout(top)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        layout.addWidget(self.bar)
        self.status = _label()
        layout.addWidget(self.status)
        self.update_record(record)

    def update_record(self, record: DownloadRecord) -> None:
        active = self.tab.manager.is_active(record.id)
        self.bar.setValue(int(1000 * record.done / record.total) if record.total else 0)
        state = "downloading" if active and record.status != "queued" else record.status
        words = {"queued": "Waiting for another download to finish", "paused": "Paused",
                 "failed": "Failed", "done": "Done — in My models", "downloading": "Downloading…",
                 "running": "Interrupted"}
        text = f"{words.get(state, state)} · {human_size(record.done)} of {human_size(record.total)}"
        if record.error and not active:
            text += f"<br><span style='color:#c62828'>{html.escape(record.error)}</span>"
        self.status.setText(text)
        self.pause_button.setText("Pause" if active else "Resume")
        self.pause_button.setVisible(record.status not in ("done",))
        self.cancel_button.setVisible(record.status not in ("done",))

    def show_progress(self, p: Progress) -> None:
        self.bar.setValue(int(1000 * p.fraction))
        speed = f" · {human_size(p.speed)}/s" if p.speed and p.state == "downloading" else ""
        eta = f" · {_duration(p.eta)} left" if p.eta is not None and p.state == "downloading" else ""
        word = {"connecting": "Connecting…", "checking": "Checking the partial file…", "verifying": "Verifying sha256…",
                "retrying": "Retrying…", "downloading": "Downloading"}.get(p.state, p.state.capitalize())
        message = f" — {html.escape(p.message)}" if p.message else ""
        self.status.setText(f"{word} · {human_size(p.done)} of {human_size(p.total)}{speed}{eta}{message}")

    def _pause_or_resume(self) -> None:
        if self.tab.manager.is_active(self.download_id):
            self.tab.manager.pause(self.download_id)
        else:
            self.tab.manager.resume(self.download_id)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class DownloadsTab(QWidget):
    def __init__(self, page: ModelsPage) -> None:
        super().__init__()
        self.manager = page.manager
        self.page = page
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        self.empty = _label("No downloads yet. Pick a model in Discover.")
        layout.addWidget(self.empty)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        holder = QWidget()
        self.rows_layout = QVBoxLayout(holder)
        self.rows_layout.addStretch(1)
        scroll.setWidget(holder)
        layout.addWidget(scroll, 1)
        self.rows: dict[int, DownloadRow] = {}
        self.manager.downloadsChanged.connect(self.refresh)
        self.manager.downloadProgress.connect(self._on_progress)
        self.manager.downloadFinished.connect(self._on_finished)
        self.refresh()

    def refresh(self) -> None:
        records = self.manager.downloads()
        seen = set()
        for record in records:
            seen.add(record.id)
            row = self.rows.get(record.id)
            if row is None:
                row = DownloadRow(self, record)
                self.rows[record.id] = row
                self.rows_layout.insertWidget(0, row)
            else:
                row.update_record(record)
        for gone in set(self.rows) - seen:
            self.rows.pop(gone).deleteLater()
        self.empty.setVisible(not records)

    def _on_progress(self, p: Progress) -> None:
        row = self.rows.get(p.download_id)
        if row is not None:
            row.show_progress(p)

    def _on_finished(self, download_id: int, error: str) -> None:
        self.refresh()
        if error:
            self.page.bridge.error(error, title="Download failed")


class LibraryTab(QWidget):
    COLUMNS = ("Model", "Quant", "Size", "Architecture", "Parameters", "Context", "License", "Template", "Source")

    def __init__(self, page: ModelsPage) -> None:
        super().__init__()
        self.page = page
        self.manager = page.manager
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        buttons = QHBoxLayout()
        for text, slot in (("Chat with it", self.chat), ("Import GGUF…", self.import_file),
                           ("Quantize…", self.quantize), ("Show in folder", self.reveal), ("Delete…", self.delete)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(lambda r, c: self.chat())
        layout.addWidget(self.table, 1)
        self.hint = _label()
        layout.addWidget(self.hint)
        self.models: list[LibraryModel] = []
        self.progress: QProgressDialog | None = None
        self.manager.libraryChanged.connect(self.refresh)
        self.manager.jobProgress.connect(self._on_job_progress)
        self.manager.jobFinished.connect(self._on_job_finished)

    def refresh(self) -> None:
        self.models = self.manager.library.models()
        self.table.setRowCount(len(self.models))
        for row, m in enumerate(self.models):
            meta = m.meta
            params = meta.get("n_params") or 0
            source = {"download": f"downloaded from {m.repo_id}", "import": "imported (copy)",
                      "link": "linked in place", "found": "found in the models folder",
                      "quantize": f"quantized from {Path(str(meta.get('quantized_from', '?'))).name}"}[m.source]
            cells = [
                m.name + ("" if m.path.exists() else "  (file missing)"), m.quant or "?", human_size(m.size),
                str(meta.get("architecture", "?")), f"{params / 1e9:.2f} B" if params else "?",
                f"{meta.get('context_length', 0):,}", m.license_id or "not stated",
                "yes" if meta.get("has_template") else "none (plain prompt)", source,
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(str(m.path))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.hint.setText("" if self.models else
                          "No models yet: download one from Discover, or import a GGUF file you already have.")

    def selected(self) -> LibraryModel | None:
        rows = self.table.selectionModel().selectedRows()
        return self.models[rows[0].row()] if rows else None

    def chat(self) -> None:
        m = self.selected()
        if m is not None:
            self.page.chatRequested.emit(str(m.path))

    def import_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if not path:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Import", "Copy the file into Paddock's models folder, "
                          "or use it where it is?", parent=self)
        copy = box.addButton("Copy", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Use in place", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is None or box.buttonRole(box.clickedButton()) == QMessageBox.ButtonRole.RejectRole:
            return
        self.start_import(Path(path), link=box.clickedButton() is not copy)

    def start_import(self, path: Path, link: bool) -> None:
        self._progress_dialog("Importing…", cancellable=False)
        self.manager.import_file(path, link)

    def quantize(self) -> None:
        m = self.selected()
        if m is None:
            return
        target, ok = QInputDialog.getItem(self, "Quantize", f"Quantize {m.name} ({m.quant}) to:",
                                          [t for t in TARGETS if t != m.quant], 3, False)
        if not ok:
            return
        advice = advise(m.quant or "?", target, int(m.meta.get("n_params") or 0))
        text = f"The new file will take about {human_size(advice.estimated_bytes)}."
        if advice.warnings:
            text += "\n\n" + "\n\n".join(advice.warnings)
        if QMessageBox.question(self, "Quantize", text + "\n\nGo on?") != QMessageBox.StandardButton.Yes:
            return
        self.start_quantize(m.path, target)

    def start_quantize(self, path: Path, target: str) -> None:
        self._progress_dialog(f"Quantizing to {target}…", cancellable=True)
        self.manager.quantize(path, target)

    def _progress_dialog(self, text: str, cancellable: bool) -> None:
        dialog = QProgressDialog(text, "Cancel" if cancellable else "", 0, 0, self)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(0)
        if cancellable:
            dialog.canceled.connect(self.manager.cancel_job)
        else:
            dialog.setCancelButton(None)
        self.progress = dialog
        dialog.show()

    def _on_job_progress(self, what: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.setMaximum(total)
            self.progress.setValue(done)

    def _on_job_finished(self, what: str, error: str) -> None:
        if self.progress is not None:
            self.progress.reset()
            self.progress.deleteLater()
            self.progress = None
        self.refresh()
        if error:
            self.page.bridge.error(error, title="Import failed" if what == "import" else "Quantization failed")

    def reveal(self) -> None:
        m = self.selected()
        if m is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(m.path.parent)))

    def delete(self, confirm: bool = True) -> None:
        m = self.selected()
        if m is None:
            return
        where = "its file will be deleted" if m.source != "link" else "the file itself stays where it is"
        if confirm and QMessageBox.question(self, "Delete model?", f"Remove {m.name} from the library? "
                                            f"{where.capitalize()}.") != QMessageBox.StandardButton.Yes:
            return
        try:
            message = self.manager.library.delete(m.id)
        except (PaddockError, OSError) as exc:
            self.page.bridge.error(str(exc), title="Cannot delete")
            return
        self.page.bridge.notice(message)
        self.refresh()


class ModelsPage(QWidget):
    """Models: My models, Discover, Downloads.  Errors and notices go to the message bridge.

    Signals:
        chatRequested(str): *Chat with it* on a model (its path): open it in a new chat.
    """

    chatRequested = Signal(str)

    def __init__(self, manager: ModelManager, bridge: MessageBridge) -> None:
        super().__init__()
        self.bridge = bridge
        self.manager = manager
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 20)
        head = QHBoxLayout()
        head.addWidget(QLabel("<h2>Models</h2>"))
        self.machine = _label(wrap=False)  # filled when the page is first shown, not at app start
        head.addWidget(self.machine)
        head.addStretch(1)
        self.token_button = QPushButton("Hugging Face token…")
        self.token_button.clicked.connect(self.edit_token)
        head.addWidget(self.token_button)
        layout.addLayout(head)
        self.tabs = QTabWidget()
        self.discover_tab = DiscoverTab(self)
        self.downloads_tab = DownloadsTab(self)
        self.library_tab = LibraryTab(self)
        self.tabs.addTab(self.library_tab, "My models")
        self.tabs.addTab(self.discover_tab, "Discover")
        self.tabs.addTab(self.downloads_tab, "Downloads")
        layout.addWidget(self.tabs, 1)

    def refresh(self) -> None:
        if not self.machine.text():
            from app.engine import hardware

            hw = hardware.detect()
            self.machine.setText(
                f"<span style='color:gray'>This machine: {hw.backend.upper()}, {hw.ram_total / 1024**3:.0f} GB RAM"
                + (f", {hw.vram_total / 1024**3:.0f} GB VRAM" if hw.vram_total else "") + "</span>")
        self.library_tab.refresh()
        self.downloads_tab.refresh()
        if not self.library_tab.models:
            self.tabs.setCurrentWidget(self.discover_tab)

    def edit_token(self) -> None:
        source = self.manager.tokens.source()
        current = {"environment": "A token is set in the HF_TOKEN environment variable.",
                   "keyring": "A token is saved in your system keyring.",
                   "session": "A token is kept for this session only.",
                   "none": "No token yet."}[source]
        token, ok = QInputDialog.getText(
            self, "Hugging Face token",
            f"{current}\nGated models (Llama) need a token with read access.\n"
            "Create one at https://huggingface.co/settings/tokens, and accept the model's license on its page.\n\n"
            "Token (leave empty to remove the saved one):",
            QLineEdit.EchoMode.Password)
        if not ok:
            return
        if not token.strip():
            self.manager.tokens.clear()
            self.bridge.notice("Hugging Face token removed.")
            return
        result, who = self.manager.save_token(token)
        if result.persistent:
            self.bridge.notice(f"{result.message} {who}")
        else:
            QMessageBox.warning(self, "Token kept for this session only", f"{result.message}\n\n{who}")
