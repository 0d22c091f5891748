"""Tools in the window: the approval bar, the chat's tool switches, the servers dialog.

Nothing runs without the user: every call waits in the approval bar, which shows
exactly what will run (server, tool, arguments), until the user allows it once,
always in this chat, or declines it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
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
from app.models.auth import keyring_problem
from app.tools.config import ServerSecrets, ToolServer, from_command_line, import_claude_config
from app.tools.hub import ToolHub
from app.ui.common.folders import open_file
from app.ui.common.secrets import KEEP


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
        server = call.get("server") or "a tool"
        where = f" of the tool “{call['server']}”" if call.get("server") else ""
        self.title.setText(f"The model wants to run “{call.get('name')}”{where}. Run it?")
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
        # A server that cannot be switched on is explained here, beside its switch, until the next try.
        self.error = QLabel()
        self.error.setObjectName("messageError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.layout_.addWidget(self.error)
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
                          "No tools yet: add one in File → Tools.")
        self.require.setVisible(bool(servers))
        self.layout_.removeWidget(self.require)
        self.layout_.addWidget(self.require)  # below the servers
        self.layout_.removeWidget(self.error)
        self.layout_.addWidget(self.error)
        self.error.hide()

    def _toggle(self, server_id: str, on: bool) -> None:
        if self.conv_id is None:
            return
        self.boxes[server_id].setEnabled(False)
        self.error.hide()
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
            self.error.setText(error)
            self.error.show()
        elif on:
            tools = self.hub.connection(server_id).tools
            self.report(f"Tools on for this chat: {', '.join(t.name for t in tools) or 'none'}")


class ToolsDialog(QDialog):
    """File → Tools: the MCP servers (a command, or a URL), added, tested, changed, imported, removed."""

    def __init__(self, parent: QWidget, hub: ToolHub) -> None:
        super().__init__(parent)
        self.hub = hub
        self.editing: str | None = None  # the id of the server whose fields are shown, if any
        self.setWindowTitle("Tools (MCP)")
        layout = QVBoxLayout(self)
        problem = keyring_problem()
        kept = ("Secrets (environment values, headers) are kept in your system keyring." if problem is None else
                f"Secrets (environment values, headers): {problem} on this computer, so Paddock can keep them "
                "only until you quit; you are asked first.")
        intro = QLabel("Tools let the model use files, search, calculators…: each is a program or an address "
                       f"that speaks MCP. Each call asks you first. Select a tool to change it. {kept}")
        intro.setWordWrap(True)
        self.intro = intro
        layout.addWidget(intro)
        self.list = QListWidget()
        self.list.currentItemChanged.connect(lambda item, _prev: self._edit(item))
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
        self.add_button.setObjectName("primaryButton")
        self.add_button.clicked.connect(self.add)
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Start the tool once and list what it offers")
        self.test_button.clicked.connect(self.test)
        self.new_button = QPushButton("New")
        self.new_button.setToolTip("Empty the fields to add another tool")
        self.new_button.clicked.connect(lambda: self.list.setCurrentRow(-1))
        self.import_button = QPushButton("Import from Claude Desktop…")
        self.import_button.setToolTip("Add the tools of a claude_desktop_config.json (its \"mcpServers\")")
        self.import_button.clicked.connect(self.import_file)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove)
        for b in (self.add_button, self.test_button, self.new_button, self.import_button, self.remove_button):
            row.addWidget(b)
        row.addStretch(1)
        layout.addLayout(row)
        self.outcome = QLabel()
        self.outcome.setObjectName("hint")
        self.outcome.setWordWrap(True)
        self.outcome.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.outcome)
        self.error = QLabel()
        self.error.setObjectName("messageError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.error)
        # Without a keyring: what happened to the secrets just added, and the choice (not a modal box).
        self.session_only: str | None = None
        self.keyring_bar = QFrame()
        self.keyring_bar.setObjectName("noticeBar")
        bar = QHBoxLayout(self.keyring_bar)
        self.keyring_note = QLabel()
        self.keyring_note.setWordWrap(True)
        bar.addWidget(self.keyring_note, 1)
        self.keep_button = QPushButton(KEEP)
        self.keep_button.clicked.connect(self._keep_session_server)
        self.drop_button = QPushButton("Remove the tool")
        self.drop_button.clicked.connect(self._drop_session_server)
        bar.addWidget(self.keep_button)
        bar.addWidget(self.drop_button)
        self.keyring_bar.hide()
        layout.addWidget(self.keyring_bar)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._tester = _Tester()
        self._tester.done.connect(self._tested)
        self.resize(620, 500)
        self.refresh()

    def refresh(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for s in self.hub.servers.all():
            item = QListWidgetItem(f"{s.name}  ·  {s.describe()}")
            item.setData(256, s.id)
            self.list.addItem(item)
            if s.id == self.editing:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self.remove_button.setEnabled(self.list.count() > 0)

    def _edit(self, item: QListWidgetItem | None) -> None:
        """Show the selected server in the fields (or empty them for a new one)."""
        self.error.clear()
        self.outcome.clear()
        server = None
        if item is not None:
            try:
                server = self.hub.servers.get(str(item.data(256)))
            except PaddockError:
                server = None
        self.editing = server.id if server is not None else None
        self.name.setText(server.name if server else "")
        self.command.setText(server.describe() if server else "")
        self.secrets.clear()
        names = [*server.env_names, *server.header_names] if server else []
        self.secrets.setPlaceholderText(
            f"kept: {', '.join(names)} (leave empty to keep them, or write them all anew)" if names else
            "optional, one per line: KEY=value (environment) or Header: value")
        self.add_button.setText("Save changes" if server else "Add")

    def _fields(self) -> tuple[ToolServer, ServerSecrets | None]:
        """The server the fields describe (secrets None: unchanged, for a server being edited).

        Raises:
            PaddockError: a field cannot be read.
        """
        target = self.command.text().strip()
        text = self.secrets.toPlainText()
        secrets = _secrets(text) if text.strip() or self.editing is None else None
        if target.startswith(("http://", "https://")):
            server = ToolServer("", self.name.text().strip() or target, "http", url=target)
        else:
            server = from_command_line(self.name.text(), target)
        return dataclasses.replace(server, id=self.editing or ""), secrets

    def add(self) -> None:
        """Add the server in the fields, or save the changes to the selected one."""
        self.error.clear()
        self.outcome.clear()
        try:
            server, secrets = self._fields()
            if self.editing is not None:
                self.hub.close_server(self.editing)  # started again, as changed, on its next use
                saved = self.hub.servers.update(server, secrets)
            else:
                saved = self.hub.servers.add(server, secrets)
        except PaddockError as exc:
            self.error.setText(str(exc))
            return
        self.editing = None
        self.list.setCurrentRow(-1)
        self._edit(None)
        self.refresh()
        self.outcome.setText(f"Saved “{saved.name}”. Switch it on for a chat in the chat's settings panel.")
        if secrets is not None and (secrets.env or secrets.headers) and \
                self.hub.servers.secrets_for_session_only(saved.id):
            # Told here, and the user chooses; meanwhile the secrets live in memory only, never in a file.
            self.session_only = saved.id
            problem = keyring_problem() or "the system keyring did not keep them"
            self.keyring_note.setText(
                f"Paddock cannot save the secrets of “{saved.name}”: {problem}. They are kept in memory until "
                "you quit (and asked for again next time), or remove the tool now.")
            self.keyring_bar.show()

    def _keep_session_server(self) -> None:
        self.session_only = None
        self.keyring_bar.hide()

    def _drop_session_server(self) -> None:
        """The user would rather not keep the secrets in memory: the server goes."""
        if self.session_only is not None:
            name = self.hub.servers.get(self.session_only).name
            self.hub.close_server(self.session_only)
            self.hub.servers.remove(self.session_only)
            self.outcome.setText(f"“{name}” was removed: its secrets are not kept.")
            self.refresh()
        self.session_only = None
        self.keyring_bar.hide()

    def test(self) -> None:
        """Start the server in the fields once, off the window's thread; the result shows below."""
        self.error.clear()
        try:
            server, secrets = self._fields()
            if secrets is None and self.editing is not None:
                secrets = self.hub.servers.secrets(self.hub.servers.get(self.editing))
        except PaddockError as exc:
            self.error.setText(str(exc))
            return
        self.test_button.setEnabled(False)
        self.outcome.setText(f"Starting “{server.name}”…")
        self._tester.run(self.hub, server, secrets or ServerSecrets())

    def _tested(self, names: list[str], error: str) -> None:
        self.test_button.setEnabled(True)
        if error:
            self.outcome.clear()
            self.error.setText(error)
        else:
            self.outcome.setText(f"It works: {len(names)} tool{'s' if len(names) != 1 else ''}"
                                + (f" ({', '.join(names)})" if names else "") + ".")

    def import_file(self, path: str | None = None) -> None:
        self.error.clear()
        if not path:
            chosen = open_file(self, "Import tools from a Claude Desktop config", "JSON (*.json)")
            path = str(chosen) if chosen is not None else None
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
        self.editing = None
        self._edit(None)
        self.refresh()


class _Tester(QObject):
    """The Test button's run, off the GUI thread.

    Signals:
        done(list, str): the tool names, or an error ("" when it worked).
    """

    done = Signal(list, str)

    def run(self, hub: ToolHub, server: ToolServer, secrets: ServerSecrets) -> None:
        def work() -> None:
            try:
                self.done.emit([t.name for t in hub.check(server, secrets)], "")
            except PaddockError as exc:
                self.done.emit([], str(exc))

        threading.Thread(target=work, name="tool-server-test", daemon=True).start()


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
