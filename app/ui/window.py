"""The main window: it assembles the pages, menus, status bar and shortcuts, and keeps its state.

Each page owns its behaviour: the sidebar (:mod:`app.ui.chat.sidebar`), the chat
(:mod:`app.ui.chat.page`), the models area (:mod:`app.ui.models.page`) and the
first-run page (:mod:`app.ui.models.welcome`).  They talk to the window only through
signals, and report errors and notices to the :class:`MessageBridge`, which
this window alone turns into dialogs, the notice bar or the status bar.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QCoreApplication, QEvent, QObject, QSettings, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QInputDialog,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QStackedWidget,
)

from app import paths
from app.engine.types import LoadSettings
from app.errors import PaddockError
from app.ui.chat.composer import local_files
from app.ui.chat.controller import ChatController
from app.ui.chat.model_picker import ModelChoices
from app.ui.chat.page import NO_CONVERSATION, ChatPage
from app.ui.chat.sidebar import Sidebar
from app.ui.common.messages import Message, MessageBridge
from app.ui.documents.panel import DocsHub
from app.ui.models.manager import ModelManager
from app.ui.models.page import ModelsPage
from app.ui.models.welcome import WelcomePage
from app.ui.settings.dialogs import AboutDialog, SettingsDialog
from app.ui.settings.servers import API_PORT, ServerHub, ServersDialog
from app.ui.status import StatusPanel
from app.ui.tools.widgets import ToolsDialog, tool_hub

log = logging.getLogger(__name__)
# The load settings the Settings dialog changes, kept across sessions.
SAVED_LOAD_KEYS = ("n_ctx", "n_threads", "n_gpu_layers", "kept_states_ram_mb", "kept_states_disk_mb",
                   "prompt_lookup", "draft_model")


class MainWindow(QMainWindow):
    def __init__(self, controller: ChatController, dark: bool = False, manager: ModelManager | None = None,
                 docs: DocsHub | None = None) -> None:
        super().__init__()
        self.controller = controller
        self.store = controller.store
        self.bridge = MessageBridge(self)
        self.bridge.posted.connect(self.present)
        self.manager = manager or ModelManager()
        controller.before_load = self.manager.library.check_loadable
        self.docs = docs or DocsHub()
        controller.with_documents = self.docs.with_documents
        self.tools = controller.tools = controller.tools or tool_hub(self.store)
        controller.on_delete = self.docs.forget_conversation
        self.docs.skipped.connect(lambda reasons: self.bridge.notice("Not added: " + "; ".join(reasons[:5]) + (
            f" (and {len(reasons) - 5} more)" if len(reasons) > 5 else "")))
        self.servers = ServerHub(controller)
        self.choices = ModelChoices(self.store, self.manager.library, self.servers)
        self.settings = QSettings(str(paths.config_dir() / "ui.ini"), QSettings.Format.IniFormat)
        self._closed = False
        self.setAcceptDrops(True)
        self.setWindowTitle("Paddock")
        self.resize(1180, 760)

        self.sidebar = Sidebar(self.store)
        self.welcome = WelcomePage()
        self.chat_page = ChatPage(controller, self.docs, self.choices, self.servers, bridge=self.bridge, dark=dark,
                                  tools=self.tools)
        self.models_page = ModelsPage(self.manager, self.bridge)
        self.pages = QStackedWidget()
        for page in (self.welcome, self.chat_page, self.models_page):
            self.pages.addWidget(page)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(self.pages)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([250, 930])
        self.setCentralWidget(self.splitter)
        self.status = StatusPanel(self.statusBar(), self.store, self.choices.name)

        self._connect_pages()
        saved_load = self.store.get_setting("load_settings")
        if isinstance(saved_load, dict):
            self.controller.load_settings = dataclasses.replace(self.controller.load_settings, **{
                k: v for k, v in saved_load.items() if k in SAVED_LOAD_KEYS
            })
        self._build_menu()
        self._connections = self._controller_slots()
        for signal, slot in self._connections:
            signal.connect(slot)
        self._restore_state()
        self.refresh_conversations()
        self._show_start_page()
        notice = self.store.recovery_notice
        if notice:
            QTimer.singleShot(0, lambda: self.bridge.error(notice, title="Chat database recovered"))

    # -- assembly --------------------------------------------------------------

    def _connect_pages(self) -> None:
        side = self.sidebar
        side.conversationSelected.connect(self.select_conversation)
        side.newChatRequested.connect(lambda: self.new_chat())
        side.modelsRequested.connect(self.show_models)
        side.settingsRequested.connect(self.show_settings)
        side.aboutRequested.connect(self.show_about)
        side.renameRequested.connect(self._rename)
        side.deleteRequested.connect(self._delete)
        side.exportRequested.connect(lambda conv_id, kind: self.export_chat(kind, conv_id))
        self.welcome.openFileRequested.connect(self.chat_page.open_model_file)
        self.welcome.modelsRequested.connect(self.show_models)
        self.chat_page.conversationShown.connect(self._on_conversation_shown)
        self.chat_page.addServerRequested.connect(self.show_servers)
        self.chat_page.remoteModelChosen.connect(self.status.model.setText)
        self.models_page.chatRequested.connect(self.new_chat)

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "New chat", QKeySequence.StandardKey.New, lambda: self.new_chat())
        self._action(file_menu, "Open GGUF model…", QKeySequence.StandardKey.Open, self.chat_page.open_model_file)
        file_menu.addSeparator()
        self._action(file_menu, "Export chat as Markdown…", None, lambda: self.export_chat("md"))
        self._action(file_menu, "Export chat as JSON…", None, lambda: self.export_chat("json"))
        self._action(file_menu, "Import chat from JSON…", None, self.import_chat)
        file_menu.addSeparator()
        self._action(file_menu, "Settings…", QKeySequence.StandardKey.Preferences, self.show_settings)
        self._action(file_menu, "Servers…", None, self.show_servers)
        self._action(file_menu, "Tools (MCP servers)…", None, self.show_tools)
        self.serve_action = self._action(file_menu, f"Serve the loaded model (OpenAI API on port {API_PORT})", None,
                                         self.toggle_api)
        self.serve_action.setCheckable(True)
        file_menu.addSeparator()
        self.quit_action = self._action(file_menu, "Quit", QKeySequence.StandardKey.Quit, self.close)
        chat_menu = self.menuBar().addMenu("&Chat")
        self._action(chat_menu, "Stop answer", QKeySequence("Esc"), self.controller.stop)
        self._action(chat_menu, "Regenerate answer", QKeySequence("Ctrl+R"), self.chat_page.regenerate)
        self._action(chat_menu, "Search chats", QKeySequence.StandardKey.Find, self.sidebar.focus_search)
        self._action(chat_menu, "Rename chat…", QKeySequence("F2"), lambda: self._on_current(self._rename))
        self._action(chat_menu, "Delete chat…", None, lambda: self._on_current(self._delete))
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "About Paddock", None, self.show_about)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.chat_page.send)

    def _action(self, menu: QMenu, text: str, shortcut: Any, slot: Callable[..., Any]) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _controller_slots(self) -> list[tuple[Any, Any]]:
        c, s = self.controller, self.status
        return [
            (c.conversationsChanged, self.refresh_conversations),
            (c.notice, self.bridge.notice),
            (c.modelLoading, s.on_model_loading),
            (c.modelLoaded, s.on_model_loaded),
            (c.modelFailed, s.on_model_failed),
            (c.streamFinished, s.on_stream_finished),
            *self.chat_page.controller_slots(),
        ]

    def _disconnect_controller(self) -> None:
        """After shutdown: no late, queued signal from a worker may touch the (soon closed) store."""
        if self._closed:
            return
        for signal, slot in self._connections:
            signal.disconnect(slot)
        receivers: tuple[QObject, ...] = (self, self.chat_page, self.bridge)
        for receiver in receivers:
            QCoreApplication.removePostedEvents(receiver, QEvent.Type.MetaCall)
        self._closed = self.chat_page.closed = True

    # -- messages --------------------------------------------------------------

    def present(self, message: Message) -> None:
        """The one place where errors, warnings and notices become something on screen."""
        if message.level in ("error", "warning"):
            QMessageBox.warning(self, message.title, message.text)
        elif message.level == "notice":
            self.chat_page.show_notice(message.text)
            if self.pages.currentWidget() is not self.chat_page:
                self.status.flash(message.text)
        else:
            self.status.flash(message.text)

    # -- navigation ------------------------------------------------------------

    @property
    def current_conv(self) -> int | None:
        return self.chat_page.current_conv

    def _show_start_page(self) -> None:
        first = self.sidebar.first_conversation()
        if first is not None:
            self.select_conversation(first)
        elif self.choices.known():
            self.new_chat()
        else:
            self.pages.setCurrentWidget(self.welcome)

    def show_models(self) -> None:
        self.models_page.refresh()
        self.pages.setCurrentWidget(self.models_page)

    def select_conversation(self, conv_id: int) -> None:
        self.chat_page.show_conversation(conv_id)

    def new_chat(self, model: str | None = None) -> None:
        self.sidebar.clear_search()
        self.chat_page.new_chat(model)

    def _on_conversation_shown(self, conv_id: int) -> None:
        if conv_id == NO_CONVERSATION:
            self._show_start_page()
            return
        self.pages.setCurrentWidget(self.chat_page)
        self.refresh_conversations()
        self.status.show_conversation(conv_id)

    def refresh_conversations(self) -> None:
        if self._closed:
            return
        title = self.sidebar.refresh(self.current_conv)
        if title is not None:
            self.chat_page.set_title(title)

    def _on_current(self, action: Callable[[int], None]) -> None:
        if self.current_conv is not None:
            action(self.current_conv)

    def _rename(self, conv_id: int) -> None:
        conv = self.store.conversation(conv_id)
        title, ok = QInputDialog.getText(self, "Rename chat", "Title:", text=conv.title)
        if ok:
            self.controller.rename(conv_id, title)

    def _delete(self, conv_id: int, confirm: bool = True) -> None:
        conv = self.store.conversation(conv_id)
        if confirm and QMessageBox.question(
            self, "Delete chat?", f"Delete “{conv.title}” and all its messages? This cannot be undone."
        ) != QMessageBox.StandardButton.Yes:
            return
        self.controller.delete(conv_id)
        if self.current_conv == conv_id:
            self.chat_page.show_conversation(None)

    # -- documents dropped on the window ---------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if local_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = local_files(event.mimeData())
        if files:
            event.acceptProposedAction()
            self.chat_page.attach_paths(files)

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
            self.bridge.error(f"Could not write {path}: {exc.strerror or exc}")

    def import_chat(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import chat", str(Path.home()), "JSON (*.json)")
        if path:
            self.read_import(Path(path))

    def read_import(self, path: Path) -> None:
        try:
            conv = self.store.import_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            self.bridge.error(f"Could not read {path.name}: {exc}")
            return
        except PaddockError as exc:
            self.bridge.error(str(exc))
            return
        self.refresh_conversations()
        self.select_conversation(conv.id)

    # -- dialogs ---------------------------------------------------------------

    def show_about(self) -> None:
        AboutDialog(self, [info for _path, info in self.choices.known() if info is not None]).exec()

    def show_settings(self) -> None:
        dialog = SettingsDialog(self, self.store.get_setting("default_system_prompt", ""),
                                self.controller.load_settings, self.clear_kept_states)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.apply_settings(dialog.system.toPlainText(), dialog.load_settings(self.controller.load_settings))

    def apply_settings(self, system_prompt: str, load: LoadSettings) -> None:
        self.store.set_setting("default_system_prompt", system_prompt)
        changed = load != self.controller.load_settings
        self.controller.load_settings = load
        self.store.set_setting("load_settings", {k: getattr(load, k) for k in SAVED_LOAD_KEYS})
        loaded = self.controller.loaded
        if changed and loaded is not None and not self.controller.busy:
            self.controller.load_model(loaded.path, force=True)  # reload with the new settings

    def clear_kept_states(self) -> str:
        """Settings' Clear: what to show beside the button."""
        if self.controller.busy:
            return "Stop the answer first"
        try:
            self.controller.engine.clear_states()
        except PaddockError as exc:
            self.bridge.error(str(exc))
            return ""
        return "Cleared"

    def show_tools(self) -> None:
        ToolsDialog(self, self.tools).exec()
        self.chat_page.show_conversation(self.current_conv)  # the chat's switches list the servers anew

    def show_servers(self) -> None:
        ServersDialog(self, self.servers).exec()
        self.chat_page.refill_models()

    def toggle_api(self, on: bool) -> None:
        try:
            url = self.servers.serve(on)
        except PaddockError as exc:
            self.serve_action.setChecked(False)
            self.bridge.error(str(exc), title="Cannot serve the model")
            return
        self.status.show_api(url)
        if url:
            self.bridge.notice(f"The loaded model answers OpenAI-compatible requests at {url} (this computer only).")

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
        self.chat_page.save_chat_settings()
        self.controller.shutdown()
        self._disconnect_controller()
        self.docs.shutdown()
        self.manager.close()
        self.servers.close()
        self.tools.close()  # every tool server ends with the app
        super().closeEvent(event)
