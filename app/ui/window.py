"""The main window: conversations on the left, the chat (or welcome / models page) on the right.

Business logic lives in :class:`ChatController` and the store; this module
only arranges widgets and turns user actions into controller calls.  Errors
become messages through :meth:`MainWindow.show_error`, in one place.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QCoreApplication, QEvent, QMimeData, QModelIndex, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app import __version__, paths
from app.engine.gguf_file import GGUFInfo, read_gguf
from app.engine.remote import parse_ref
from app.engine.types import LoadedModel, LoadSettings, SamplingParams
from app.errors import PaddockError
from app.ui.chatview import ChatView
from app.ui.controller import ChatController
from app.ui.docs_panel import DocsHub, DocumentsPanel, PassageDialog, choose_files, choose_folder
from app.ui.itemmodels import ConversationListModel, ConvRole, MessageListModel
from app.ui.model_manager import ModelManager
from app.ui.models_page import ModelsPage
from app.ui.servers import API_PORT, ServerHub, ServersDialog

log = logging.getLogger(__name__)
OPEN_FILE = "__open__"
ADD_SERVER = "__server__"


class Composer(QPlainTextEdit):
    """Message box: Enter sends, Shift+Enter starts a new line."""

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send
        self.setPlaceholderText("Message Paddock…  (Enter to send, Shift+Enter for a new line)")
        self.setObjectName("composer")
        self.setFixedHeight(84)

    def keyPressEvent(self, event: Any) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self._send()
            return
        super().keyPressEvent(event)

    def dragEnterEvent(self, event: Any) -> None:
        if local_files(event.mimeData()):
            event.ignore()  # files go to the window, which attaches them to the chat
            return
        super().dragEnterEvent(event)


def local_files(mime: QMimeData) -> list[Path]:
    """The local files and folders in a drag, if it carries any."""
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


class SettingsPanel(QFrame):
    """Per-chat system prompt and sampling settings."""

    def __init__(self, on_change: Any) -> None:
        super().__init__()
        self.setObjectName("settingsPanel")
        self.setFixedWidth(280)
        self._on_change = on_change
        self._loading = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 12, 12, 12)
        form = QFormLayout()
        outer.addLayout(form)
        outer.addStretch(1)
        title = QLabel("<b>Chat settings</b>")
        form.addRow(title)
        self.system = QPlainTextEdit()
        self.system.setPlaceholderText("e.g. You are a concise assistant.")
        self.system.setFixedHeight(110)
        form.addRow(QLabel("System prompt"))
        form.addRow(self.system)
        self.temperature = _spin(0.0, 2.0, 0.05, 2)
        self.top_p = _spin(0.0, 1.0, 0.01, 2)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 32768)
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Seed", self.seed)
        hint = QLabel("Changes apply to the next answer.")
        hint.setObjectName("hint")
        form.addRow(hint)
        self.system.textChanged.connect(self._changed)
        for w in (self.temperature, self.top_p):
            w.valueChanged.connect(self._changed)
        self.max_tokens.valueChanged.connect(self._changed)
        self.seed.valueChanged.connect(self._changed)

    def show_settings(self, system_prompt: str, sampling: SamplingParams) -> None:
        self._loading = True
        self.system.setPlainText(system_prompt)
        self.temperature.setValue(sampling.temperature)
        self.top_p.setValue(sampling.top_p)
        self.max_tokens.setValue(sampling.max_tokens)
        self.seed.setValue(-1 if sampling.seed is None else sampling.seed)
        self._loading = False

    def sampling(self, base: SamplingParams) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=base.top_k,
            min_p=base.min_p,
            repeat_penalty=base.repeat_penalty,
            max_tokens=self.max_tokens.value(),
            seed=None if self.seed.value() < 0 else self.seed.value(),
        )

    def _changed(self) -> None:
        if not self._loading:
            self._on_change()


def _spin(lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


GPU_CHOICES = (("Automatic (from the model and this machine)", None), ("CPU only", 0), ("All layers on the GPU", -1))


class SettingsDialog(QDialog):
    """App-wide settings: defaults for new chats and how models are loaded."""

    def __init__(self, parent: QWidget, system_prompt: str, load: LoadSettings) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        form = QFormLayout(self)
        self.system = QPlainTextEdit(system_prompt)
        self.system.setPlaceholderText("Used for new chats; each chat can change it.")
        self.system.setFixedHeight(90)
        form.addRow("Default system prompt", self.system)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(0, 1_048_576)
        self.n_ctx.setSingleStep(1024)
        self.n_ctx.setSpecialValueText("automatic")
        self.n_ctx.setValue(load.n_ctx or 0)
        self.n_ctx.setToolTip("Tokens the model can see at once. Automatic: up to 8192, less if memory is short.")
        form.addRow("Context length", self.n_ctx)
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("automatic (physical cores)")
        self.threads.setValue(load.n_threads or 0)
        form.addRow("CPU threads", self.threads)
        self.gpu = QComboBox()
        for label, value in GPU_CHOICES:
            self.gpu.addItem(label, value)
        self.gpu.setCurrentIndex(max(0, self.gpu.findData(load.n_gpu_layers)))
        form.addRow("GPU offload", self.gpu)
        note = QLabel("Model settings apply the next time a model is loaded.")
        note.setObjectName("hint")
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(520, 300)

    def load_settings(self, base: LoadSettings) -> LoadSettings:
        return LoadSettings(
            n_ctx=self.n_ctx.value() or None,
            n_threads=self.threads.value() or None,
            n_gpu_layers=self.gpu.currentData(),
            flash_attn=base.flash_attn,
            kv_cache_type=base.kv_cache_type,
            n_batch=base.n_batch,
        )


class MainWindow(QMainWindow):
    def __init__(self, controller: ChatController, dark: bool = False, manager: ModelManager | None = None,
                 docs: DocsHub | None = None) -> None:
        super().__init__()
        self.controller = controller
        self.manager = manager or ModelManager()
        controller.before_load = self.manager.library.check_loadable
        self.docs = docs or DocsHub()
        controller.with_documents = self.docs.with_documents
        controller.on_delete = self.docs.forget_conversation
        self.docs.skipped.connect(lambda reasons: self.show_notice(
            "Not added: " + "; ".join(reasons[:5]) + (f" (and {len(reasons) - 5} more)" if len(reasons) > 5 else "")
        ))
        self.setAcceptDrops(True)
        self.servers = ServerHub(controller)
        self.store = controller.store
        self.dark = dark
        self.settings = QSettings(str(paths.config_dir() / "ui.ini"), QSettings.Format.IniFormat)
        self.current_conv: int | None = None
        self._closed = False
        self._info_cache: dict[str, GGUFInfo | None] = {}
        self.setWindowTitle("Paddock")
        self.resize(1180, 760)

        self.conversations = ConversationListModel(self.store, self)
        self.messages = MessageListModel(self.store, self)

        # -- sidebar --
        sidebar = QFrame()
        sidebar.setObjectName("sidebar")
        side = QVBoxLayout(sidebar)
        side.setContentsMargins(10, 12, 10, 10)
        brand = QLabel("<span style='font-size:17px; font-weight:600'>Paddock</span>")
        side.addWidget(brand)
        self.new_button = QPushButton("+  New chat")
        self.new_button.setObjectName("primaryButton")
        self.new_button.clicked.connect(lambda: self.new_chat())
        side.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._on_search)
        side.addWidget(self.search)
        self.conv_list = QListView()
        self.conv_list.setObjectName("conversationList")
        self.conv_list.setModel(self.conversations)
        self.conv_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.conv_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conv_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conv_list.customContextMenuRequested.connect(self._conv_menu)
        self.conv_list.selectionModel().currentChanged.connect(self._on_conv_selected)
        side.addWidget(self.conv_list, 1)
        self.models_button = QPushButton("Models")
        self.models_button.clicked.connect(self.show_models)
        side.addWidget(self.models_button)
        settings_button = QPushButton("Settings")
        settings_button.clicked.connect(self.show_settings)
        side.addWidget(settings_button)
        about_button = QPushButton("About Paddock")
        about_button.clicked.connect(self.show_about)
        side.addWidget(about_button)

        # -- pages --
        self.pages = QStackedWidget()
        self.welcome = self._build_welcome()
        self.chat_page = self._build_chat_page()
        self.models_page = ModelsPage(self, self.manager)
        for page in (self.welcome, self.chat_page, self.models_page):
            self.pages.addWidget(page)

        self.splitter = QSplitter()
        self.splitter.addWidget(sidebar)
        self.splitter.addWidget(self.pages)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([250, 930])
        self.setCentralWidget(self.splitter)

        # -- status bar --
        self.model_status = QLabel("No model loaded")
        self.speed_status = QLabel("")
        self.ctx_meter = QProgressBar()
        self.ctx_meter.setObjectName("contextMeter")
        self.ctx_meter.setFixedWidth(160)
        self.ctx_meter.setFormat("context %p%")
        self.ctx_meter.setValue(0)
        self.ctx_meter.setToolTip("How much of the model's context this chat uses")
        self.statusBar().addWidget(self.model_status, 1)
        self.api_status = QLabel("")
        self.statusBar().addPermanentWidget(self.api_status)
        self.statusBar().addPermanentWidget(self.speed_status)
        self.statusBar().addPermanentWidget(self.ctx_meter)

        saved_load = self.store.get_setting("load_settings")
        if isinstance(saved_load, dict):
            self.controller.load_settings = LoadSettings(**{
                k: v for k, v in saved_load.items() if k in ("n_ctx", "n_threads", "n_gpu_layers")
            })
        self._build_menu()
        self._connect_controller()
        self._restore_state()
        self.refresh_conversations()
        self._show_start_page()
        notice = self.store.recovery_notice
        if notice:
            QTimer.singleShot(0, lambda: self.show_error(notice, title="Chat database recovered"))

    # -- construction ----------------------------------------------------------

    def _build_welcome(self) -> QWidget:
        page = QWidget()
        page.setObjectName("welcome")
        outer = QVBoxLayout(page)
        outer.addStretch(1)
        box = QVBoxLayout()
        box.setSpacing(14)
        title = QLabel("<h1>Welcome to Paddock</h1>")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text = QLabel(
            "Chat with open-weight language models privately: everything runs on this computer and "
            "nothing you type leaves it.<br><br>"
            "To start, you need a model file in <b>GGUF</b> format (for example "
            "<i>Llama-3.2-3B-Instruct-Q4_K_M.gguf</i>, about 2 GB, fine on most laptops).<br>"
            "Open one you already have, or put GGUF files in the models folder:<br>"
            f"<code>{paths.models_dir()}</code>"
        )
        text.setWordWrap(True)
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setMinimumWidth(560)
        text.setMaximumWidth(640)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        open_button = QPushButton("Open a GGUF file…")
        open_button.setObjectName("primaryButton")
        open_button.clicked.connect(self.open_model_file)
        models_button = QPushButton("Browse models")
        models_button.clicked.connect(self.show_models)
        buttons.addWidget(open_button)
        buttons.addWidget(models_button)
        buttons.addStretch(1)
        box.addWidget(title)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(text)
        row.addStretch(1)
        box.addLayout(row)
        box.addLayout(buttons)
        outer.addLayout(box)
        outer.addStretch(2)
        self.welcome_text = text
        return page

    def _build_chat_page(self) -> QWidget:
        page = QWidget()
        outer = QHBoxLayout(page)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        main = QVBoxLayout()
        main.setContentsMargins(0, 0, 0, 0)
        main.setSpacing(0)
        header = QFrame()
        header.setObjectName("chatHeader")
        head = QHBoxLayout(header)
        head.setContentsMargins(16, 8, 12, 8)
        self.title_label = QLabel()
        self.title_label.setObjectName("chatTitle")
        head.addWidget(self.title_label, 1)
        head.addWidget(QLabel("Model"))
        self.model_combo = QComboBox()
        self.model_combo.setMinimumWidth(260)
        self.model_combo.activated.connect(self._on_model_chosen)
        head.addWidget(self.model_combo)
        self.settings_button = QPushButton("Settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setToolTip("System prompt and sampling for this chat")
        head.addWidget(self.settings_button)
        main.addWidget(header)
        self.notice_bar = QLabel()
        self.notice_bar.setObjectName("noticeBar")
        self.notice_bar.setWordWrap(True)
        self.notice_bar.hide()
        main.addWidget(self.notice_bar)
        self.chat_view = ChatView(self.messages, dark=self.dark)
        self.chat_view.editRequested.connect(self.edit_message)
        self.chat_view.regenerateRequested.connect(self.regenerate)
        self.chat_view.citationRequested.connect(self.open_citation)
        main.addWidget(self.chat_view, 1)
        self.docs_panel = DocumentsPanel(self.docs)
        main.addWidget(self.docs_panel)
        composer_box = QFrame()
        composer_box.setObjectName("composerBox")
        comp = QHBoxLayout(composer_box)
        comp.setContentsMargins(16, 8, 16, 12)
        self.composer = Composer(self.send)
        comp.addWidget(self.composer, 1)
        buttons = QVBoxLayout()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("primaryButton")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.clicked.connect(self.controller.stop)
        self.stop_button.hide()
        self.attach_button = QPushButton("Attach")
        self.attach_button.setObjectName("attachButton")
        self.attach_button.setToolTip("Add documents to this chat (or drop files and folders on the window)")
        attach_menu = QMenu(self.attach_button)
        attach_menu.addAction("Files…", lambda: self.attach_paths(choose_files(self)))
        attach_menu.addAction("Folder…", lambda: self.attach_paths(choose_folder(self)))
        self.attach_button.setMenu(attach_menu)
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.attach_button)
        buttons.addStretch(1)
        comp.addLayout(buttons)
        main.addWidget(composer_box)
        outer.addLayout(main, 1)
        self.settings_panel = SettingsPanel(self._save_chat_settings)
        self.settings_panel.hide()
        self.settings_button.toggled.connect(self.settings_panel.setVisible)
        outer.addWidget(self.settings_panel)
        return page

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "New chat", QKeySequence.StandardKey.New, lambda: self.new_chat())
        self._action(file_menu, "Open GGUF model…", QKeySequence.StandardKey.Open, self.open_model_file)
        file_menu.addSeparator()
        self._action(file_menu, "Export chat as Markdown…", None, lambda: self.export_chat("md"))
        self._action(file_menu, "Export chat as JSON…", None, lambda: self.export_chat("json"))
        self._action(file_menu, "Import chat from JSON…", None, self.import_chat)
        file_menu.addSeparator()
        self._action(file_menu, "Settings…", QKeySequence.StandardKey.Preferences, self.show_settings)
        self._action(file_menu, "Servers…", None, self.show_servers)
        self.serve_action = self._action(file_menu, f"Serve the loaded model (OpenAI API on port {API_PORT})", None,
                                         self.toggle_api)
        self.serve_action.setCheckable(True)
        file_menu.addSeparator()
        self.quit_action = self._action(file_menu, "Quit", QKeySequence.StandardKey.Quit, self.close)
        chat_menu = self.menuBar().addMenu("&Chat")
        self._action(chat_menu, "Stop answer", QKeySequence("Esc"), self.controller.stop)
        self._action(chat_menu, "Regenerate answer", QKeySequence("Ctrl+R"), self.regenerate)
        self._action(chat_menu, "Search chats", QKeySequence.StandardKey.Find, self._focus_search)
        self._action(chat_menu, "Rename chat…", QKeySequence("F2"), self._rename_current)
        self._action(chat_menu, "Delete chat…", None, self._delete_current)
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "About Paddock", None, self.show_about)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.send)

    def _action(self, menu: QMenu, text: str, shortcut: Any, slot: Any) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _controller_signals(self) -> list[tuple[Any, Any]]:
        c = self.controller
        return [
            (c.conversationsChanged, self.refresh_conversations),
            (c.messagesChanged, self._on_messages_changed),
            (c.streamText, self._on_stream_text),
            (c.streamFinished, self._on_stream_finished),
            (c.modelLoading, self._on_model_loading),
            (c.modelLoaded, self._on_model_loaded),
            (c.modelFailed, self._on_model_failed),
            (c.notice, self.show_notice),
            (c.busyChanged, self._on_busy),
            (c.sourcesReady, self._on_sources_ready),
        ]

    def _connect_controller(self) -> None:
        for signal, slot in self._controller_signals():
            signal.connect(slot)

    def _disconnect_controller(self) -> None:
        """After shutdown: no late, queued signal from a worker may touch the (soon closed) store."""
        if self._closed:
            return
        for signal, slot in self._controller_signals():
            signal.disconnect(slot)
        QCoreApplication.removePostedEvents(self, QEvent.Type.MetaCall)
        self._closed = True

    def _on_model_failed(self, message: str) -> None:
        self.show_error(message, title="The model could not be loaded")

    # -- pages -----------------------------------------------------------------

    def _show_start_page(self) -> None:
        if self.conversations.rowCount() > 0:
            self.select_conversation(self.conversations.conversation_at(0).id)  # type: ignore[union-attr]
        elif self.known_models():
            self.new_chat()
        else:
            self.pages.setCurrentWidget(self.welcome)

    def show_models(self) -> None:
        self.models_page.refresh()
        self.pages.setCurrentWidget(self.models_page)

    # -- conversations ---------------------------------------------------------

    def refresh_conversations(self) -> None:
        if self._closed:
            return
        current = self.current_conv
        self.conversations.refresh()
        if current is not None:
            row = self.conversations.row_of(current)
            if row >= 0:
                self.conv_list.selectionModel().blockSignals(True)
                self.conv_list.setCurrentIndex(self.conversations.index(row))
                self.conv_list.selectionModel().blockSignals(False)
                conv = self.conversations.conversation_at(row)
                if conv is not None:
                    self.title_label.setText(conv.title)

    def _on_search(self, text: str) -> None:
        self.conversations.set_search(text)
        self.refresh_conversations()

    def _on_conv_selected(self, index: QModelIndex, _prev: QModelIndex) -> None:
        if index.isValid():
            self.select_conversation(int(index.data(ConvRole.Id)))

    def select_conversation(self, conv_id: int) -> None:
        self.current_conv = conv_id
        conv = self.store.conversation(conv_id)
        self.messages.load(conv_id, self.controller.live_texts())
        self.title_label.setText(conv.title)
        self.settings_panel.show_settings(conv.system_prompt, conv.sampling)
        self._fill_model_combo(conv.model)
        self.notice_bar.hide()
        self.docs_panel.set_conversation(conv_id)
        self.pages.setCurrentWidget(self.chat_page)
        self.refresh_conversations()
        self._update_context_meter()
        self.composer.setFocus()

    def new_chat(self, model: str | None = None) -> None:
        if model is None and self.current_conv is not None:
            model = self.store.conversation(self.current_conv).model
        if model is None:
            known = self.known_models()
            model = known[0][0] if known else None
        conv = self.controller.new_conversation(model=model)
        self.search.clear()
        self.select_conversation(conv.id)

    def _conv_menu(self, pos: Any) -> None:
        index = self.conv_list.indexAt(pos)
        if not index.isValid():
            return
        conv_id = int(index.data(ConvRole.Id))
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self._rename(conv_id))
        menu.addAction("Export as Markdown…", lambda: self.export_chat("md", conv_id))
        menu.addAction("Export as JSON…", lambda: self.export_chat("json", conv_id))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self._delete(conv_id))
        menu.exec(self.conv_list.viewport().mapToGlobal(pos))

    def _rename_current(self) -> None:
        if self.current_conv is not None:
            self._rename(self.current_conv)

    def _rename(self, conv_id: int) -> None:
        conv = self.store.conversation(conv_id)
        title, ok = QInputDialog.getText(self, "Rename chat", "Title:", text=conv.title)
        if ok:
            self.controller.rename(conv_id, title)

    def _delete_current(self) -> None:
        if self.current_conv is not None:
            self._delete(self.current_conv)

    def _delete(self, conv_id: int, confirm: bool = True) -> None:
        conv = self.store.conversation(conv_id)
        if confirm:
            answer = QMessageBox.question(
                self, "Delete chat?", f"Delete “{conv.title}” and all its messages? This cannot be undone."
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.controller.delete(conv_id)
        if self.current_conv == conv_id:
            self.current_conv = None
            self.messages.load(None)
            self.docs_panel.set_conversation(None)
            self._show_start_page()

    # -- models ----------------------------------------------------------------

    def info(self, path: str) -> GGUFInfo | None:
        if path not in self._info_cache:
            try:
                self._info_cache[path] = read_gguf(path)
            except PaddockError:
                self._info_cache[path] = None
        return self._info_cache[path]

    def known_models(self) -> list[tuple[str, GGUFInfo | None]]:
        recent = [p for p in self.store.get_setting("recent_models", []) if Path(p).exists()]
        library = [str(m.path) for m in self.manager.library.models() if m.path.exists()]
        seen: dict[str, None] = dict.fromkeys(recent + library)
        return [(p, self.info(p)) for p in seen]

    def _fill_model_combo(self, selected: str | None) -> None:
        combo = self.model_combo
        combo.blockSignals(True)
        combo.clear()
        if selected is None:
            combo.addItem("Choose a model…", None)
        for path, info in self.known_models():
            label = f"{info.name} · {info.quantization}" if info else Path(path).name
            combo.addItem(label, path)
            combo.setItemData(combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        if selected is not None and combo.findData(selected) < 0:
            combo.addItem(Path(selected).name + " (missing)", selected)
        for label, ref in self.servers.cached_models():
            combo.addItem(label, ref)
        combo.addItem("Open GGUF file…", OPEN_FILE)
        combo.addItem("Add a server…", ADD_SERVER)
        combo.setCurrentIndex(max(0, combo.findData(selected)) if selected else 0)
        combo.blockSignals(False)

    def _on_model_chosen(self, index: int) -> None:
        data = self.model_combo.itemData(index)
        if data == OPEN_FILE:
            self.open_model_file()
            return
        if data == ADD_SERVER:
            self.show_servers()
            if self.current_conv is not None:
                self._fill_model_combo(self.store.conversation(self.current_conv).model)
            return
        if data and self.current_conv is not None:
            self.store.update_conversation(self.current_conv, model=str(data))
            self._preload(str(data))

    def open_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if path:
            self.use_model_file(path)

    def use_model_file(self, path: str) -> None:
        """Check a GGUF file, remember it, and use it for the current (or a new) chat."""
        try:
            read_gguf(path)
        except PaddockError as exc:
            self.show_error(str(exc), title="This file cannot be used")
            if self.current_conv is not None:
                self._fill_model_combo(self.store.conversation(self.current_conv).model)
            return
        recent = [p for p in self.store.get_setting("recent_models", []) if p != path]
        self.store.set_setting("recent_models", [path, *recent][:20])
        if self.current_conv is None:
            self.new_chat(model=path)
        else:
            self.store.update_conversation(self.current_conv, model=path)
            self.select_conversation(self.current_conv)
        self._preload(path)

    def _preload(self, path: str) -> None:
        if parse_ref(path) is not None:
            self.model_status.setText(f"{self.servers.remotes.label(path)} · remote server")
            return
        loaded = self.controller.loaded
        if self.controller.busy or (loaded is not None and Path(loaded.path) == Path(path)):
            return
        try:
            self.controller.load_model(path)
        except PaddockError as exc:
            self.show_error(str(exc))

    def _on_model_loading(self, path: str) -> None:
        info = self.info(path)
        self.model_status.setText(f"Loading {info.name if info else Path(path).name}…")
        self.ctx_meter.setRange(0, 0)  # busy indicator

    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        self.ctx_meter.setRange(0, 100)
        where = "CPU" if loaded.n_gpu_layers == 0 else f"{loaded.backend.upper()} ({loaded.n_gpu_layers} layers)"
        self.model_status.setText(
            f"{loaded.name} · {where} · {loaded.n_ctx} tokens context · loaded in {loaded.load_s:.1f}s"
        )
        self._update_context_meter()

    # -- turns -----------------------------------------------------------------

    def send(self) -> None:
        text = self.composer.toPlainText().strip()
        if not text or self.current_conv is None:
            return
        try:
            self._save_chat_settings()
            self.controller.send(self.current_conv, text)
        except PaddockError as exc:
            self.show_error(str(exc))
            return
        self.composer.clear()

    def regenerate(self) -> None:
        if self.current_conv is None:
            return
        try:
            self._save_chat_settings()
            self.controller.regenerate(self.current_conv)
        except PaddockError as exc:
            self.show_error(str(exc))

    def edit_message(self, message_id: int) -> None:
        msg = self.store.message(message_id)
        dialog = QDialog(self)
        dialog.setWindowTitle("Edit message")
        layout = QVBoxLayout(dialog)
        layout.addWidget(QLabel("The answers after this message will be replaced."))
        editor = QPlainTextEdit(msg.content)
        layout.addWidget(editor)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Send")
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        dialog.resize(560, 300)
        if dialog.exec() == QDialog.DialogCode.Accepted and editor.toPlainText().strip():
            try:
                self.controller.edit_and_resend(message_id, editor.toPlainText())
            except PaddockError as exc:
                self.show_error(str(exc))

    def _save_chat_settings(self) -> None:
        if self.current_conv is None:
            return
        conv = self.store.conversation(self.current_conv)
        self.store.update_conversation(
            self.current_conv,
            system_prompt=self.settings_panel.system.toPlainText(),
            sampling=self.settings_panel.sampling(conv.sampling),
        )

    def _on_messages_changed(self, conv_id: int) -> None:
        if conv_id == self.current_conv and not self._closed:
            self.messages.reload(self.controller.live_texts())

    def _on_stream_text(self, conv_id: int, message_id: int, text: str) -> None:
        if conv_id == self.current_conv:
            self.messages.append_text(message_id, text)

    def _on_stream_finished(self, conv_id: int, message_id: int, status: str, error: str, stats: dict) -> None:
        if conv_id == self.current_conv:
            self.messages.finish(message_id)
        if stats.get("completion_tokens"):
            self.speed_status.setText(
                f"{stats.get('tokens_per_s', 0):.1f} tok/s · first token {stats.get('ttft_s', 0):.2f}s · "
                f"{stats.get('prompt_reused', 0)} of {stats.get('prompt_tokens', 0)} prompt tokens from cache"
            )
        if stats.get("n_ctx"):
            self._show_context(stats)
        if status == "error" and "crashed" in error:
            self.model_status.setText("The engine stopped; the model will be loaded again on the next message")

    def _on_sources_ready(self, conv_id: int, message_id: int) -> None:
        if conv_id == self.current_conv and not self._closed:
            self.messages.refresh_message(message_id)

    # -- documents -------------------------------------------------------------

    def attach_paths(self, items: list[Path]) -> None:
        """Add files and folders to the current chat (a new chat if there is none)."""
        if not items:
            return
        if self.current_conv is None:
            self.new_chat()
        if self.current_conv is None:
            return
        self.docs.add_to_chat(self.current_conv, items)
        self.docs_panel.show()
        names = ", ".join(p.name for p in items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
        self.statusBar().showMessage(f"Indexing {names} in the background; you can keep chatting.", 6000)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:
        if local_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = local_files(event.mimeData())
        if files:
            event.acceptProposedAction()
            self.attach_paths(files)

    def open_citation(self, message_id: int, number: int) -> PassageDialog | None:
        try:
            msg = self.store.message(message_id)
        except PaddockError:
            return None
        if not msg.sources:
            return None
        from app.docs.prompt import cited_numbers

        dialog = PassageDialog(msg.sources, number or 1, self.docs, cited_numbers(msg.content, len(msg.sources)),
                               self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.passage_dialog = dialog
        return dialog

    def _on_busy(self, busy: bool) -> None:
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.model_combo.setEnabled(not busy)

    def _update_context_meter(self) -> None:
        if self.current_conv is None:
            return
        last = [m for m in self.store.messages(self.current_conv) if m.role == "assistant" and m.stats]
        self._show_context(last[-1].stats if last else {})

    def _show_context(self, stats: dict[str, Any]) -> None:
        """Context meter from the figures of the chat's latest answer."""
        n_ctx = stats.get("n_ctx") or 0
        used = stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0)
        self.ctx_meter.setRange(0, 100)
        self.ctx_meter.setValue(min(100, round(100 * used / n_ctx)) if n_ctx else 0)
        self.ctx_meter.setToolTip(
            f"{used} of {n_ctx} context tokens used by this chat" if n_ctx else "No answer in this chat yet"
        )

    def show_notice(self, text: str) -> None:
        self.notice_bar.setText(text)
        self.notice_bar.show()

    # -- export / import -------------------------------------------------------

    def export_chat(self, kind: str, conv_id: int | None = None) -> None:
        conv_id = conv_id if conv_id is not None else self.current_conv
        if conv_id is None:
            return
        conv = self.store.conversation(conv_id)
        safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in conv.title).strip() or "chat"
        suffix = ".md" if kind == "md" else ".json"
        path, _ = QFileDialog.getSaveFileName(
            self, "Export chat", str(Path.home() / f"{safe}{suffix}"),
            "Markdown (*.md)" if kind == "md" else "JSON (*.json)",
        )
        if path:
            self.write_export(conv_id, kind, Path(path))

    def write_export(self, conv_id: int, kind: str, path: Path) -> None:
        try:
            if kind == "md":
                path.write_text(self.store.export_markdown(conv_id), encoding="utf-8")
            else:
                data = self.store.export_json(conv_id)
                path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        except OSError as exc:
            self.show_error(f"Could not write {path}: {exc.strerror or exc}")

    def import_chat(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import chat", str(Path.home()), "JSON (*.json)")
        if path:
            self.read_import(Path(path))

    def read_import(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            conv = self.store.import_json(data)
        except (OSError, ValueError) as exc:
            self.show_error(f"Could not read {path.name}: {exc}")
            return
        except PaddockError as exc:
            self.show_error(str(exc))
            return
        self.refresh_conversations()
        self.select_conversation(conv.id)

    # -- about / errors --------------------------------------------------------

    def show_about(self) -> None:
        models = []
        llama = False
        for _path, info in self.known_models():
            if info is None:
                continue
            models.append(f"<li>{info.name} ({info.quantization}) — license: {info.license or 'not stated'}</li>")
            if "llama" in (info.license or "").lower() or "llama" in info.name.lower():
                llama = True
        box = QDialog(self)
        box.setWindowTitle("About Paddock")
        layout = QVBoxLayout(box)
        view = QTextBrowser()
        view.setOpenExternalLinks(False)
        view.setHtml(
            f"<h2>Paddock {__version__}</h2>"
            "<p>Private chat with open-weight language models. Paddock is free software under the "
            "Apache License 2.0. It runs models with llama.cpp (MIT) through llama-cpp-python (MIT) "
            "and uses Qt for Python (LGPLv3).</p>"
            "<h3>Models</h3>"
            + (f"<ul>{''.join(models)}</ul>" if models else "<p>No models yet.</p>")
            + ("<p><b>Built with Llama</b></p>" if llama else "")
            + "<p>Each model has its own license; you are responsible for following it.</p>"
        )
        layout.addWidget(view)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(box.reject)
        layout.addWidget(buttons)
        box.resize(520, 420)
        box.exec()

    def show_settings(self) -> None:
        dialog = SettingsDialog(self, self.store.get_setting("default_system_prompt", ""),
                                self.controller.load_settings)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.apply_settings(dialog.system.toPlainText(), dialog.load_settings(self.controller.load_settings))

    def show_servers(self) -> None:
        ServersDialog(self, self.servers).exec()
        if self.current_conv is not None:
            self._fill_model_combo(self.store.conversation(self.current_conv).model)

    def toggle_api(self, on: bool) -> None:
        try:
            url = self.servers.serve(on)
        except PaddockError as exc:
            self.serve_action.setChecked(False)
            self.show_error(str(exc), title="Cannot serve the model")
            return
        self.api_status.setText(f"API: {url}" if url else "")
        if url:
            self.show_notice(f"The loaded model answers OpenAI-compatible requests at {url} (this computer only).")

    def apply_settings(self, system_prompt: str, load: LoadSettings) -> None:
        self.store.set_setting("default_system_prompt", system_prompt)
        changed = load != self.controller.load_settings
        self.controller.load_settings = load
        self.store.set_setting(
            "load_settings", {"n_ctx": load.n_ctx, "n_threads": load.n_threads, "n_gpu_layers": load.n_gpu_layers}
        )
        loaded = self.controller.loaded
        if changed and loaded is not None and not self.controller.busy:
            self.controller.load_model(loaded.path, force=True)  # reload with the new settings

    def show_error(self, message: str, title: str = "Paddock") -> None:
        """The one place where errors become dialogs."""
        log.warning("%s: %s", title, message)
        QMessageBox.warning(self, title, message)

    def _focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    # -- window state ----------------------------------------------------------

    def _restore_state(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        splitter = self.settings.value("splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closed:
            event.accept()
            return
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.settings.sync()
        if self.current_conv is not None:
            self._save_chat_settings()
        self.controller.shutdown()
        self._disconnect_controller()
        self.docs.shutdown()
        self.manager.close()
        self.servers.close()
        super().closeEvent(event)
