"""The tools in use: running servers, the tools each chat has on, approvals, calls.

A server starts only when a chat turns it on (or a call needs it again after it
stopped), and every server ends with the app.  Each chat keeps which servers it
uses and which tools the user allowed "always in this chat"; any other call waits
for the user's approval.  Tool results are untrusted text: they go back to the
model as a tool message and to the window as plain text, never as markup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.tools.config import ServerSecrets, ToolServer, ToolServers
from app.tools.mcp_client import McpConnection, ToolError, ToolOutcome, ToolSpec

log = logging.getLogger("paddock.tools")

MAX_ROUNDS = 8  # model -> tools -> model rounds in one answer


def _key(conv_id: int) -> str:
    return f"chat_tools:{conv_id}"


class ToolHub:
    """Tool servers and per-chat tool settings, for the window, the CLI and the API.

    Args:
        servers: the servers the user added.
        get_setting / set_setting: where per-chat choices are kept (the chat store's settings).
        log_dir: where each stdio server's stderr is written.
    """

    def __init__(self, servers: ToolServers, get_setting: Callable[[str, Any], Any],
                 set_setting: Callable[[str, Any], None], log_dir: Path) -> None:
        self.servers = servers
        self._get = get_setting
        self._set = set_setting
        self.log_dir = log_dir
        self._connections: dict[str, McpConnection] = {}
        self._lock = threading.Lock()

    # -- per chat ------------------------------------------------------------------

    def _chat(self, conv_id: int) -> dict[str, Any]:
        data = self._get(_key(conv_id), None)
        return data if isinstance(data, dict) else {"servers": [], "always": []}

    def chat_servers(self, conv_id: int) -> list[str]:
        known = {s.id for s in self.servers.all()}
        return [s for s in self._chat(conv_id).get("servers", []) if s in known]

    def enable(self, conv_id: int, server_id: str, on: bool = True) -> list[ToolSpec]:
        """Turn a server's tools on (starting it) or off for one chat.

        Raises:
            ToolError: the server could not be started (then it stays off).
        """
        data = self._chat(conv_id)
        servers = [s for s in data.get("servers", []) if s != server_id]
        tools: list[ToolSpec] = []
        if on:
            tools = self.connection(server_id).start()
            servers.append(server_id)
        self._set(_key(conv_id), {**data, "servers": servers})
        return tools

    def forget_chat(self, conv_id: int) -> None:
        self._set(_key(conv_id), None)

    def tools(self, conv_id: int) -> tuple[list[ToolSpec], list[str]]:
        """The tools of the chat's servers (started if needed), and a message per server that failed."""
        specs: list[ToolSpec] = []
        problems: list[str] = []
        for server_id in self.chat_servers(conv_id):
            try:
                specs += self.connection(server_id).start()
            except ToolError as exc:
                problems.append(str(exc))
        return specs, problems

    def always_allowed(self, conv_id: int, spec: ToolSpec) -> bool:
        return f"{spec.server_id}/{spec.name}" in self._chat(conv_id).get("always", [])

    def allow_always(self, conv_id: int, spec: ToolSpec) -> None:
        data = self._chat(conv_id)
        always = [*data.get("always", []), f"{spec.server_id}/{spec.name}"]
        self._set(_key(conv_id), {**data, "always": sorted(set(always))})

    # -- servers and calls -----------------------------------------------------------

    def connection(self, server_id: str) -> McpConnection:
        with self._lock:
            conn = self._connections.get(server_id)
            if conn is None:
                server = self.servers.get(server_id)
                conn = McpConnection(server, self.servers.secrets(server), self.log_dir / f"tool-{server_id}.log")
                self._connections[server_id] = conn
            return conn

    def run(self, spec: ToolSpec, arguments: dict[str, Any], cancel: threading.Event | None = None) -> ToolOutcome:
        """Run an approved call (starting its server again if it stopped).

        Raises:
            ToolError: the call failed, timed out or was stopped.
        """
        conn = self.connection(spec.server_id)
        if not conn.alive:
            conn.start()
        return conn.call(spec.name, arguments, cancel=cancel)

    def check(self, server: ToolServer, secrets: ServerSecrets) -> list[ToolSpec]:
        """Start ``server`` once (saved or not), list its tools, and stop it: the Tools dialog's Test.

        Raises:
            ToolError: it could not be started, or it is not an MCP server.
        """
        conn = McpConnection(server, secrets, self.log_dir / f"tool-{server.id or 'test'}.log")
        try:
            return conn.start()
        finally:
            conn.close()

    def close_server(self, server_id: str) -> None:
        with self._lock:
            conn = self._connections.pop(server_id, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns, self._connections = list(self._connections.values()), {}
        for conn in conns:
            try:
                conn.close()
            except Exception:  # closing at exit: log, go on with the others
                log.exception("closing tool server %s", conn.server.name)


def find_tool(specs: list[ToolSpec], name: str) -> ToolSpec | None:
    return next((s for s in specs if s.name == name), None)
