"""Documents in a chat: the indexing service, the panel above the composer, and the passage viewer.

:class:`DocsHub` owns :class:`app.docs.service.Documents` and one worker thread.
Adding files, extracting, chunking and embedding all run there, so a dropped
folder of hundreds of files never blocks the window; the panel learns about
progress through the ``changed`` signal (coalesced to a few per second).
Indexing resumes at the next start for anything left queued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.docs.index import Collection, Document
from app.docs.prompt import DocumentsTurn, documents_turn
from app.docs.service import Documents
from app.engine.types import ChatMessage
from app.errors import PaddockError
from app.ui.common.textbrowser import SafeTextBrowser

log = logging.getLogger(__name__)



class DocsHub(QObject):
    """The documents service for the GUI.  Signals are delivered on the GUI thread.

    Signals:
        changed(): documents, their states or collections changed.
        skipped(list): reasons files of a drop were not added.
    """

    changed = Signal()
    skipped = Signal(list)
    _dirty = Signal()  # from the worker thread; coalesced into ``changed``

    def __init__(self, documents: Documents | None = None) -> None:
        super().__init__()
        self.docs = documents or Documents(embed_model=None)
        self._find_embedder = documents is None  # look for one in the library, off the GUI thread
        self._adds: list[tuple[int, list[Path]]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._emit_timer = QTimer(self)
        self._emit_timer.setSingleShot(True)
        self._emit_timer.setInterval(150)
        self._emit_timer.timeout.connect(self.changed.emit)
        self._dirty.connect(self._schedule_emit)
        self._thread = threading.Thread(target=self._run, name="documents", daemon=True)
        self._thread.start()
        self._wake.set()  # resume anything left queued by the last run

    def _schedule_emit(self) -> None:
        if not self._emit_timer.isActive():
            self._emit_timer.start()

    # -- worker ----------------------------------------------------------------

    def _run(self) -> None:
        if self._find_embedder:
            from app.docs.service import find_embedding_model

            self.docs.set_default_embed_model(find_embedding_model())
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._drain_adds()
                self.docs.indexer.run_pending(lambda _doc: self._dirty.emit(), self._stop.is_set)
            except PaddockError as exc:
                log.warning("indexing stopped: %s", exc)
            except Exception:
                log.exception("indexing failed")
            self._dirty.emit()

    def _drain_adds(self) -> None:
        while True:
            with self._lock:
                if not self._adds:
                    return
                conv_id, items = self._adds.pop(0)
            collection = self.docs.index.chat_collection(conv_id)
            try:
                _queued, skipped = self.docs.add(collection, items)
            except PaddockError as exc:
                skipped = [(Path(), str(exc))]
            self._dirty.emit()
            if skipped:
                self.skipped.emit([reason for _p, reason in skipped])

    # -- requests (GUI thread) -------------------------------------------------

    def add_to_chat(self, conv_id: int, items: Sequence[Path]) -> None:
        """Add files and folders to the chat's documents; they are indexed in the background."""
        with self._lock:
            self._adds.append((conv_id, [Path(p) for p in items]))
        self._wake.set()

    def documents(self, conv_id: int) -> list[tuple[Document, Collection]]:
        collections = self.docs.index.attached(conv_id)
        by_id = {c.id: c for c in collections}
        return [(d, by_id[d.collection_id]) for d in self.docs.index.documents(by_id)]

    def collections(self) -> list[Collection]:
        return self.docs.index.collections()

    def attached(self, conv_id: int) -> list[Collection]:
        return self.docs.index.attached(conv_id)

    def remove(self, doc_id: int) -> None:
        self.docs.index.remove_document(doc_id)
        self.changed.emit()

    def attach(self, conv_id: int, collection_id: int) -> None:
        self.docs.index.attach(conv_id, collection_id)
        self.changed.emit()

    def detach(self, conv_id: int, collection_id: int) -> None:
        self.docs.index.detach(conv_id, collection_id)
        self.changed.emit()

    def save_as_collection(self, conv_id: int, name: str) -> Collection:
        """Name the chat's own documents so that other chats can use them."""
        own = self.docs.index.chat_collection(conv_id)
        collection = self.docs.index.rename_collection(own.id, name)
        self.changed.emit()
        return collection

    def forget_conversation(self, conv_id: int) -> None:
        self.docs.index.forget_conversation(conv_id)

    def document_text(self, doc_id: int) -> str:
        return self.docs.index.document_text(doc_id)

    # -- for the chat controller (worker thread) --------------------------------

    def with_documents(
        self, conv_id: int, messages: list[ChatMessage], n_ctx: int, earlier_sources: Sequence[dict[str, Any]] = ()
    ) -> DocumentsTurn:
        """The conversation with the passages for its last user message (``app.docs.prompt.documents_turn``)."""
        return documents_turn(self.docs.retriever, self.docs.index.attached(conv_id), messages, n_ctx,
                              earlier_sources)

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        self.docs.close()


# -- the panel --------------------------------------------------------------------------------


def _state_text(doc: Document) -> str:
    if doc.state == "ready":
        text = f"ready · {doc.n_chunks} passage{'s' if doc.n_chunks != 1 else ''}"
        if doc.pages > 1:
            text += f" · {doc.pages} pages"
        return text + (f" · {doc.error}" if doc.error else "")
    if doc.state == "indexing":
        return f"indexing {doc.progress:.0%}"
    if doc.state == "queued":
        return "waiting to be indexed"
    return f"failed: {doc.error}"


class DocumentsPanel(QFrame):
    """The chat's documents: list with state and progress, attach, remove, collections."""

    def __init__(self, hub: DocsHub, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hub = hub
        self.conv_id: int | None = None
        self.setObjectName("documentsPanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 6, 16, 4)
        layout.setSpacing(4)
        head = QHBoxLayout()
        self.title = QLabel("<b>Documents</b>")
        head.addWidget(self.title)
        self.summary = QLabel()
        self.summary.setObjectName("documentsSummary")
        head.addWidget(self.summary, 1)
        self.progress = QProgressBar()
        self.progress.setObjectName("indexProgress")
        self.progress.setFixedWidth(140)
        self.progress.setRange(0, 100)
        self.progress.setFormat("indexing %p%")
        self.progress.hide()
        head.addWidget(self.progress)
        self.collections_button = QToolButton()
        self.collections_button.setText("Collections")
        self.collections_button.setToolTip("Use a saved collection in this chat, or save these documents as one")
        self.collections_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.collections_menu = QMenu(self)
        self.collections_menu.aboutToShow.connect(self._fill_collections_menu)
        self.collections_button.setMenu(self.collections_menu)
        head.addWidget(self.collections_button)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected documents from this chat")
        self.remove_button.clicked.connect(self.remove_selected)
        head.addWidget(self.remove_button)
        self.toggle = QToolButton()
        self.toggle.setText("Hide")
        self.toggle.setCheckable(True)
        self.toggle.toggled.connect(self._collapse)
        head.addWidget(self.toggle)
        layout.addLayout(head)
        self.tree = QTreeWidget()
        self.tree.setObjectName("documentsList")
        self.tree.setHeaderLabels(["Document", "State", "Collection"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setMaximumHeight(150)
        layout.addWidget(self.tree)
        hub.changed.connect(self.refresh)
        self.hide()

    def set_conversation(self, conv_id: int | None) -> None:
        self.conv_id = conv_id
        self.refresh()

    def _collapse(self, hidden: bool) -> None:
        self.tree.setVisible(not hidden)
        self.toggle.setText("Show" if hidden else "Hide")

    def refresh(self) -> None:
        if self.conv_id is None:
            self.hide()
            return
        try:
            rows = self.hub.documents(self.conv_id)
            attached = self.hub.attached(self.conv_id)
        except PaddockError as exc:
            self.summary.setText(str(exc))
            return
        selected = {item.data(0, Qt.ItemDataRole.UserRole) for item in self.tree.selectedItems()}
        self.tree.clear()
        for doc, collection in rows:
            item = QTreeWidgetItem([doc.name, _state_text(doc), "this chat" if collection.private_to else
                                    collection.name])
            item.setData(0, Qt.ItemDataRole.UserRole, doc.id)
            item.setToolTip(0, doc.path)
            item.setToolTip(1, _state_text(doc))
            if doc.state == "failed":
                item.setForeground(1, QColor("#c0392b"))
            self.tree.addTopLevelItem(item)
            item.setSelected(doc.id in selected)
        docs = [d for d, _c in rows]
        busy = [d for d in docs if d.state in ("queued", "indexing")]
        ready = sum(d.state == "ready" for d in docs)
        failed = sum(d.state == "failed" for d in docs)
        parts = [f"{ready} ready"]
        if busy:
            parts.append(f"{len(busy)} indexing")
        if failed:
            parts.append(f"{failed} could not be read")
        named = [c.name for c in attached if c.private_to is None]
        if named:
            parts.append("collections: " + ", ".join(named))
        self.summary.setText(" · ".join(parts))
        if busy:
            total = sum(1.0 if d.state == "ready" else d.progress for d in docs if d.state != "failed")
            count = max(sum(d.state != "failed" for d in docs), 1)
            self.progress.setValue(int(100 * total / count))
            self.progress.show()
        else:
            self.progress.hide()
        self.setVisible(bool(docs) or bool(attached and any(c.private_to is None for c in attached)))

    def remove_selected(self) -> None:
        for item in self.tree.selectedItems():
            self.hub.remove(int(item.data(0, Qt.ItemDataRole.UserRole)))

    def _fill_collections_menu(self) -> None:
        menu = self.collections_menu
        menu.clear()
        if self.conv_id is None:
            return
        conv_id = self.conv_id
        attached = {c.id for c in self.hub.attached(conv_id)}
        for collection in self.hub.collections():
            action = menu.addAction(collection.name)
            action.setCheckable(True)
            action.setChecked(collection.id in attached)
            action.toggled.connect(
                lambda on, cid=collection.id: self.hub.attach(conv_id, cid) if on else self.hub.detach(conv_id, cid)
            )
        if not menu.isEmpty():
            menu.addSeparator()
        menu.addAction("Save this chat's documents as a collection…", self.save_as_collection)

    def save_as_collection(self) -> None:
        if self.conv_id is None:
            return
        name, ok = QInputDialog.getText(self, "Save as collection",
                                        "Name (other chats can then use these documents):")
        if ok and name.strip():
            try:
                self.hub.save_as_collection(self.conv_id, name)
            except PaddockError as exc:
                QMessageBox.warning(self, "Save as collection", str(exc))


def choose_files(parent: QWidget) -> list[Path]:
    files, _ = QFileDialog.getOpenFileNames(
        parent, "Attach documents", "",
        "Documents (*.pdf *.docx *.md *.markdown *.txt *.html *.htm *.csv *.tsv *.py *.js *.ts *.java *.c *.cpp "
        "*.h *.go *.rs *.rb *.json *.yaml *.yml *.toml);;All files (*)",
    )
    return [Path(f) for f in files]


def choose_folder(parent: QWidget) -> list[Path]:
    folder = QFileDialog.getExistingDirectory(parent, "Attach a folder of documents")
    return [Path(folder)] if folder else []


# -- citations ------------------------------------------------------------------------------


class PassageDialog(QDialog):
    """The passages an answer was given, each shown in its document with the passage highlighted."""

    def __init__(self, sources: list[dict[str, Any]], number: int, hub: DocsHub | None,
                 cited: Sequence[int] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sources = sources
        self.hub = hub
        self.setWindowTitle("Sources of this answer")
        self.resize(900, 560)
        layout = QVBoxLayout(self)
        split = QSplitter()
        self.list = QListWidget()
        self.list.setObjectName("sourcesList")
        for i, source in enumerate(sources, start=1):
            mark = " ✓" if i in cited else ""
            item = QListWidgetItem(f"[{i}] {source.get('source', '')} · {source.get('location', '')}{mark}")
            item.setToolTip(str(source.get("path", "")))
            self.list.addItem(item)
        split.addWidget(self.list)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        self.heading = QLabel()
        self.heading.setObjectName("passageHeading")
        self.heading.setWordWrap(True)
        self.heading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rl.addWidget(self.heading)
        self.viewer = SafeTextBrowser()
        self.viewer.setObjectName("passageViewer")
        self.viewer.setOpenLinks(False)
        rl.addWidget(self.viewer, 1)
        split.addWidget(right)
        split.setSizes([280, 620])
        layout.addWidget(split, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.open_button = buttons.addButton("Open file", QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button.clicked.connect(self.open_file)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.list.currentRowChanged.connect(self.show_source)
        self.list.setCurrentRow(max(0, min(number - 1, len(sources) - 1)))

    def current(self) -> dict[str, Any]:
        row = self.list.currentRow()
        return self.sources[row] if 0 <= row < len(self.sources) else {}

    def show_source(self, row: int) -> None:
        if not 0 <= row < len(self.sources):
            return
        source = self.sources[row]
        self.heading.setText(f"<b>[{row + 1}] {_esc(source.get('source', ''))}</b> · "
                             f"{_esc(source.get('location', ''))}<br><span style='color:gray'>"
                             f"{_esc(source.get('path', ''))}</span>")
        text = ""
        if self.hub is not None and source.get("document_id") is not None:
            try:
                text = self.hub.document_text(int(source["document_id"]))
            except PaddockError:
                text = ""
        start, end = int(source.get("start", 0)), int(source.get("end", 0))
        passage = str(source.get("text", ""))
        if not text or text[start:end] != passage:
            # the document was removed or changed since: show the passage as the answer saw it
            text, start, end = passage, 0, len(passage)
        self.viewer.setPlainText(text)
        cursor = QTextCursor(self.viewer.document())
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        fmt = QTextCharFormat()
        fmt.setBackground(QColor("#fff3a3"))
        fmt.setForeground(QColor("#1b1b1b"))
        cursor.mergeCharFormat(fmt)
        cursor.setPosition(start)
        self.viewer.setTextCursor(cursor)
        self.viewer.ensureCursorVisible()
        self.open_button.setEnabled(bool(source.get("path")) and Path(str(source.get("path"))).exists())

    def open_file(self) -> None:
        path = self.current().get("path")
        if path:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def _esc(value: object) -> str:
    import html

    return html.escape(str(value))
