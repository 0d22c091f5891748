"""Remote OpenAI-compatible servers in the app, and the switch that serves the local model."""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.api import ApiServer
from app.engine.remote import RemoteServer, model_ref
from app.errors import PaddockError

if TYPE_CHECKING:
    from app.ui.chat.controller import ChatController

MODELS_KEY = "remote_models"  # server id -> model ids, as last listed (so menus never wait on the network)
API_PORT = 8080


class ServerHub(QObject):
    """Servers the user added (their model lists fetched off the GUI thread) and the local API switch."""

    modelsListed = Signal(str, str)  # server id, error ("" when fine)
    apiChanged = Signal(str)  # the local API's URL, or "" when off

    def __init__(self, controller: ChatController) -> None:
        super().__init__()
        self.controller = controller
        self.store = controller.store
        self.remotes = controller.remotes
        self.api: ApiServer | None = None

    def cached_models(self) -> list[tuple[str, str]]:
        """(label, model reference) of every known remote model."""
        cache: dict[str, list[str]] = self.store.get_setting(MODELS_KEY, {}) or {}
        out: list[tuple[str, str]] = []
        for server in self.remotes.all():
            out.extend((f"{m} · {server.name}", model_ref(server.id, m)) for m in cache.get(server.id, []))
        return out

    def add(self, name: str, url: str, key: str) -> tuple[RemoteServer, str]:
        server, saved = self.remotes.add(name, url, key or None)
        self.refresh(server.id)
        return server, ("" if saved is None or saved.persistent else saved.message)

    def remove(self, server_id: str) -> None:
        self.remotes.remove(server_id)
        cache = self.store.get_setting(MODELS_KEY, {}) or {}
        cache.pop(server_id, None)
        self.store.set_setting(MODELS_KEY, cache)

    def refresh(self, server_id: str) -> None:
        def work() -> None:
            try:
                models = self.remotes.client(server_id).models()
            except PaddockError as exc:
                self.modelsListed.emit(server_id, str(exc))
                return
            cache = self.store.get_setting(MODELS_KEY, {}) or {}
            cache[server_id] = models
            self.store.set_setting(MODELS_KEY, cache)
            self.modelsListed.emit(server_id, "" if models else "the server lists no models")

        threading.Thread(target=work, name="list-remote-models", daemon=True).start()

    # -- the local API -----------------------------------------------------------

    def serve(self, on: bool, port: int = API_PORT) -> str:
        """Start or stop serving the loaded model on 127.0.0.1; returns the URL ("" when off)."""
        if not on:
            if self.api is not None:
                self.api.stop()
            self.api = None
            self.apiChanged.emit("")
            return ""
        if self.api is None:
            api = ApiServer(self.controller.engine, host="127.0.0.1", port=port)
            api.start()
            self.api = api
        self.apiChanged.emit(self.api.url)
        return self.api.url

    def close(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None


class ServersDialog(QDialog):
    def __init__(self, parent: QWidget, hub: ServerHub) -> None:
        super().__init__(parent)
        self.hub = hub
        self.setWindowTitle("Servers")
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Chat with models on an OpenAI-compatible server — vLLM, llama.cpp's llama-server, Ollama "
            "(http://localhost:11434/v1), LM Studio. The address usually ends in <code>/v1</code>. "
            "API keys are kept in your system keyring."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.list = QListWidget()
        layout.addWidget(self.list, 1)
        row = QHBoxLayout()
        for text, slot in (("Refresh models", self._refresh), ("Remove", self._remove)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        row.addStretch(1)
        layout.addLayout(row)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Lab GPU box")
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://host:8000/v1")
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("optional")
        form.addRow("Name", self.name)
        form.addRow("Address", self.url)
        form.addRow("API key", self.key)
        layout.addLayout(form)
        self.add_button = QPushButton("Add server")
        self.add_button.clicked.connect(self._add)
        layout.addWidget(self.add_button)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        hub.modelsListed.connect(self._on_listed)
        self.resize(560, 460)
        self._fill()

    def _fill(self) -> None:
        self.list.clear()
        cache = self.hub.store.get_setting(MODELS_KEY, {}) or {}
        for server in self.hub.remotes.all():
            models = cache.get(server.id, [])
            item = QListWidgetItem(f"{server.name} — {server.base_url}\n"
                                   f"{len(models)} model(s): {', '.join(models[:4])}{'…' if len(models) > 4 else ''}")
            item.setData(256, server.id)
            self.list.addItem(item)

    def _selected(self) -> str | None:
        item = self.list.currentItem()
        return str(item.data(256)) if item is not None else None

    def _add(self) -> None:
        try:
            server, warning = self.hub.add(self.name.text(), self.url.text(), self.key.text())
        except PaddockError as exc:
            self.status.setText(f"<span style='color:#c62828'>{html.escape(str(exc))}</span>")
            return
        self.name.clear()
        self.url.clear()
        self.key.clear()
        self.status.setText(f"Listing the models of {html.escape(server.name)}…"
                            + (f"<br>{html.escape(warning)}" if warning else ""))
        self._fill()

    def _refresh(self) -> None:
        server_id = self._selected()
        if server_id:
            self.status.setText("Listing models…")
            self.hub.refresh(server_id)

    def _remove(self) -> None:
        server_id = self._selected()
        if server_id and QMessageBox.question(self, "Remove server?", "Remove this server? Chats that use it "
                                              "keep their messages.") == QMessageBox.StandardButton.Yes:
            self.hub.remove(server_id)
            self._fill()

    def _on_listed(self, server_id: str, error: str) -> None:
        self._fill()
        self.status.setText(f"<span style='color:#c62828'>{html.escape(error)}</span>" if error
                            else "Models listed: pick one in the model menu above a chat.")
