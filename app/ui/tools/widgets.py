"""Tools in the window: the approval bar, the chat's tool switches, the servers dialog.

Nothing runs without the user: every call waits in the approval bar, which shows
exactly what will run (server, tool, arguments), until the user allows it once,
always in this chat, or declines it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.errors import PaddockError
from app.tools.config import ServerSecrets, ToolServer, from_command_line, import_claude_config
from app.tools.hub import ToolHub


def tool_hub(store: Any) -> ToolHub:
    """The app's tool hub: servers and per-chat choices in the chat store's settings."""
    from app import paths
    from app.tools.config import ToolServers

    return ToolHub(ToolServers(store.get_setting, store.set_setting), store.get_setting, store.set_setting,
                   paths.log_dir())


class ApprovalBar(QFrame):
    """Above the composer while a tool call waits for the user.

    Signals:
        decided(str): "once", "always" or "deny".
    """

    decided = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("approvalBar")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 8, 16, 8)
        self.title = QLabel()
        self.title.setObjectName("approvalTitle")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.details = QPlainTextEdit()
        self.details.setObjectName("approvalDetails")
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(120)
        layout.addWidget(self.details)
        row = QHBoxLayout()
        self.allow_once = QPushButton("Allow once")
        self.allow_once.setObjectName("primaryButton")
        self.allow_always = QPushButton("Always allow in this chat")
        self.deny = QPushButton("Deny")
        for button, decision in ((self.allow_once, "once"), (self.allow_always, "always"), (self.deny, "deny")):
            button.clicked.connect(lambda _=False, d=decision: self._decide(d))
            row.addWidget(button)
        row.addStretch(1)
        layout.addLayout(row)
        self.hide()

    def ask(self, call: dict[str, Any]) -> None:
        server = call.get("server") or "a tool server"
        self.title.setText(f"The model wants to run the tool “{call.get('name')}” of {server}. Run it?")
        # exactly what will run, as plain text
        self.details.setPlainText(f"{server} › {call.get('name')}\n"
                                  + json.dumps(call.get("arguments", {}), indent=2, ensure_ascii=False))
        self.show()
        self.allow_once.setFocus()

    def _decide(self, decision: str) -> None:
        self.hide()
        self.decided.emit(decision)


class _Starter(QObject):
    """Starts a server off the GUI thread; the result comes back as a signal."""

    done = Signal(str, bool, str)  # server id, on, error

    def run(self, hub: ToolHub, conv_id: int, server_id: str, on: bool) -> None:
        def work() -> None:
            try:
                hub.enable(conv_id, server_id, on)
                self.done.emit(server_id, on, "")
            except PaddockError as exc:
                self.done.emit(server_id, on, str(exc))

        threading.Thread(target=work, name="tool-server-start", daemon=True).start()


class ChatToolsPanel(QFrame):
    """The chat's tool servers, each a switch (a server starts when switched on)."""

    def __init__(self, hub: ToolHub, report: Callable[[str], None], on_require: Callable[[bool], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hub = hub
        self.report = report
        self.conv_id: int | None = None
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(0, 8, 0, 0)
        self.layout_.addWidget(QLabel("<b>Tools</b>"))
        self.hint = QLabel()
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        self.layout_.addWidget(self.hint)
        # "required": the answer's first step must be a call (a grammar makes even a small model write
        # a valid one); later steps are the model's choice.
        self.require = QCheckBox("Start each answer with a tool call")
        self.require.setToolTip("The model must call one of the chat's tools first (it still asks you).")
        self.require.toggled.connect(on_require)
        self.layout_.addWidget(self.require)
        self.boxes: dict[str, QCheckBox] = {}
        self._starter = _Starter()
        self._starter.done.connect(self._started)

    def show_chat(self, conv_id: int | None, required: bool = False) -> None:
        self.conv_id = conv_id
        self.require.blockSignals(True)
        self.require.setChecked(required)
        self.require.blockSignals(False)
        for box in self.boxes.values():
            self.layout_.removeWidget(box)
            box.deleteLater()
        self.boxes = {}
        servers = self.hub.servers.all()
        on = set(self.hub.chat_servers(conv_id)) if conv_id is not None else set()
        for server in servers:
            box = QCheckBox(server.name)
            box.setToolTip(server.describe())
            box.setChecked(server.id in on)
            box.toggled.connect(lambda checked, sid=server.id: self._toggle(sid, checked))
            self.layout_.addWidget(box)
            self.boxes[server.id] = box
        self.hint.setText("Each call asks you first." if servers else
                          "No tool servers yet: add one in File → Tools.")
        self.require.setVisible(bool(servers))
        self.layout_.removeWidget(self.require)
        self.layout_.addWidget(self.require)  # below the servers

    def _toggle(self, server_id: str, on: bool) -> None:
        if self.conv_id is None:
            return
        self.boxes[server_id].setEnabled(False)
        self._starter.run(self.hub, self.conv_id, server_id, on)

    def _started(self, server_id: str, on: bool, error: str) -> None:
        box = self.boxes.get(server_id)
        if box is not None:
            box.setEnabled(True)
            if error:
                box.blockSignals(True)
                box.setChecked(False)
                box.blockSignals(False)
        if error:
            self.report(error)
        elif on:
            tools = self.hub.connection(server_id).tools
            self.report(f"Tools on for this chat: {', '.join(t.name for t in tools) or 'none'}")


class ToolsDialog(QDialog):
    """File → Tools: the MCP servers (a command, or a URL), added, imported, removed."""

    def __init__(self, parent: QWidget, hub: ToolHub) -> None:
        super().__init__(parent)
        self.hub = hub
        self.setWindowTitle("Tools (MCP servers)")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Tool servers give the model tools (files, search, calculators…). Each call "
                                "asks you first. Secrets (environment values, headers) are kept in the keyring."))
        self.list = QListWidget()
        layout.addWidget(self.list)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Files")
        self.command = QLineEdit()
        self.command.setPlaceholderText("a command (npx -y @modelcontextprotocol/server-filesystem ~/Notes) "
                                        "or a URL (https://host/mcp)")
        self.secrets = QPlainTextEdit()
        self.secrets.setPlaceholderText("optional, one per line: KEY=value (environment) or Header: value")
        self.secrets.setFixedHeight(60)
        form.addRow("Name", self.name)
        form.addRow("Command or URL", self.command)
        form.addRow("Secrets", self.secrets)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(self.add)
        self.import_button = QPushButton("Import mcpServers JSON…")
        self.import_button.clicked.connect(self.import_file)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove)
        for b in (self.add_button, self.import_button, self.remove_button):
            row.addWidget(b)
        row.addStretch(1)
        layout.addLayout(row)
        self.error = QLabel()
        self.error.setObjectName("messageError")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(620, 460)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for s in self.hub.servers.all():
            item = QListWidgetItem(f"{s.name}  ·  {s.describe()}")
            item.setData(256, s.id)
            self.list.addItem(item)

    def add(self) -> None:
        self.error.clear()
        target = self.command.text().strip()
        try:
            secrets = _secrets(self.secrets.toPlainText())
            if target.startswith(("http://", "https://")):
                server = ToolServer("", self.name.text().strip() or target, "http", url=target)
            else:
                server = from_command_line(self.name.text(), target)
            self.hub.servers.add(server, secrets)
        except PaddockError as exc:
            self.error.setText(str(exc))
            return
        self.name.clear()
        self.command.clear()
        self.secrets.clear()
        self.refresh()

    def import_file(self, path: str | None = None) -> None:
        self.error.clear()
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Import MCP servers", str(Path.home()), "JSON (*.json)")
        if not path:
            return
        try:
            for server, secrets in import_claude_config(Path(path).read_text(encoding="utf-8")):
                self.hub.servers.add(server, secrets)
        except (OSError, UnicodeDecodeError) as exc:
            self.error.setText(f"Could not read {path}: {exc}")
        except PaddockError as exc:
            self.error.setText(str(exc))
        self.refresh()

    def remove(self) -> None:
        for item in self.list.selectedItems():
            server_id = str(item.data(256))
            self.hub.close_server(server_id)
            self.hub.servers.remove(server_id)
        self.refresh()


def _secrets(text: str) -> ServerSecrets:
    secrets = ServerSecrets()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if ":" in line and ("=" not in line or line.index(":") < line.index("=")):
            key, _, value = line.partition(":")
            secrets.headers[key.strip()] = value.strip()
        elif "=" in line:
            key, _, value = line.partition("=")
            secrets.env[key.strip()] = value.strip()
        else:
            raise PaddockError(f"cannot read the secret line {line!r}: write KEY=value or Header: value")
    return secrets
