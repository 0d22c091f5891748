"""The MCP servers the user added, and how they are stored.

A server is a command (stdio: Paddock starts it) or a URL (streamable HTTP).
Its secrets (environment values, HTTP header values) live in the OS keyring
like Paddock's other keys; the settings hold only their names.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from app.errors import PaddockError
from app.models.auth import TokenStore

SETTINGS_KEY = "tool_servers"


class ToolConfigError(PaddockError):
    """A server definition that cannot be used (the message says what to fix)."""


@dataclass(frozen=True)
class ToolServer:
    id: str
    name: str
    kind: Literal["stdio", "http"]
    command: str = ""
    args: tuple[str, ...] = ()
    url: str = ""
    env_names: tuple[str, ...] = ()  # values in the keyring
    header_names: tuple[str, ...] = ()  # values in the keyring
    # Call timeout, seconds: a hanging call ends with a message after this.
    timeout_s: float = 60.0

    def describe(self) -> str:
        if self.kind == "stdio":
            return " ".join(shlex.quote(p) for p in (self.command, *self.args))
        return self.url


@dataclass
class ServerSecrets:
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class ToolServers:
    """The servers the user added; persisted through ``get_setting`` / ``set_setting``."""

    def __init__(self, get_setting: Callable[[str, Any], Any], set_setting: Callable[[str, Any], None]) -> None:
        self._get = get_setting
        self._set = set_setting
        self._stores: dict[str, TokenStore] = {}  # one per server: a keyring that fails keeps secrets here

    def all(self) -> list[ToolServer]:
        out = []
        for saved in self._get(SETTINGS_KEY, []) or []:
            raw = dict(saved)
            for key in ("args", "env_names", "header_names"):
                raw[key] = tuple(raw.get(key) or ())
            out.append(ToolServer(**raw))
        return out

    def get(self, server_id: str) -> ToolServer:
        for s in self.all():
            if s.id == server_id:
                return s
        raise ToolConfigError("this tool was removed: add it again in File → Tools")

    def add(self, server: ToolServer, secrets: ServerSecrets | None = None) -> ToolServer:
        _check(server)
        secrets = secrets or ServerSecrets()
        server = ToolServer(**{**asdict(server), "id": server.id or uuid.uuid4().hex[:8],
                               "env_names": tuple(secrets.env), "header_names": tuple(secrets.headers)})
        self._set(SETTINGS_KEY, [_plain(s) for s in self.all() if s.id != server.id] + [_plain(server)])
        if secrets.env or secrets.headers:
            self._secret(server.id).save(json.dumps({"env": secrets.env, "headers": secrets.headers}))
        return server

    def update(self, server: ToolServer, secrets: ServerSecrets | None) -> ToolServer:
        """Change a server the user added (same id); ``secrets`` None keeps the ones it has."""
        old = self.get(server.id)
        if secrets is not None:
            return self.add(server, secrets)
        _check(server)
        server = ToolServer(**{**asdict(server), "env_names": old.env_names, "header_names": old.header_names})
        self._set(SETTINGS_KEY, [_plain(server) if s.id == server.id else _plain(s) for s in self.all()])
        return server

    def secrets_for_session_only(self, server_id: str) -> bool:
        """True when the server's secrets could not go to the keyring and live in memory until quit."""
        return self._secret(server_id).source() == "session"

    def remove(self, server_id: str) -> None:
        self._set(SETTINGS_KEY, [_plain(s) for s in self.all() if s.id != server_id])
        self._secret(server_id).clear()

    def secrets(self, server: ToolServer) -> ServerSecrets:
        if not server.env_names and not server.header_names:
            return ServerSecrets()
        raw = self._secret(server.id).get()
        if not raw:
            raise ToolConfigError(
                f"the secrets of the tool {server.name!r} are not in the keyring any more: add the tool again"
            )
        data = json.loads(raw)
        return ServerSecrets(dict(data.get("env") or {}), dict(data.get("headers") or {}))

    def _secret(self, server_id: str) -> TokenStore:
        if server_id not in self._stores:
            self._stores[server_id] = TokenStore(account=f"tool-server:{server_id}", env_var=None)
        return self._stores[server_id]


def _plain(server: ToolServer) -> dict[str, Any]:
    data = asdict(server)
    for key in ("args", "env_names", "header_names"):
        data[key] = list(data[key])
    return data


def _check(server: ToolServer) -> None:
    if not server.name.strip():
        raise ToolConfigError("give the tool a name")
    if server.kind == "stdio" and not server.command.strip():
        raise ToolConfigError("give the command that starts the tool (e.g. npx -y @modelcontextprotocol/"
                              "server-filesystem ~/Documents)")
    if server.kind == "http" and not re.match(r"^https?://", server.url):
        raise ToolConfigError("the tool's address must start with http:// or https://")


def from_command_line(name: str, line: str) -> ToolServer:
    """A stdio server from one command line as a user types it."""
    try:
        parts = shlex.split(line)
    except ValueError as exc:
        raise ToolConfigError(f"cannot read that command line: {exc}") from exc
    if not parts:
        raise ToolConfigError("give the command that starts the tool")
    return ToolServer("", name.strip() or parts[0], "stdio", command=parts[0], args=tuple(parts[1:]))


def import_claude_config(text: str) -> list[tuple[ToolServer, ServerSecrets]]:
    """Servers from a Claude-Desktop-style file: ``{"mcpServers": {name: {command, args, env} | {url, headers}}}``.

    Raises:
        ToolConfigError: not that format, or a server without a command or URL.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ToolConfigError(f"this is not a JSON file ({exc})") from exc
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ToolConfigError("this file has no \"mcpServers\" object (the format of Claude Desktop's config)")
    out = []
    for name, spec in servers.items():
        if not isinstance(spec, dict):
            raise ToolConfigError(f"server {name!r} is not an object")
        secrets = ServerSecrets({str(k): str(v) for k, v in (spec.get("env") or {}).items()},
                                {str(k): str(v) for k, v in (spec.get("headers") or {}).items()})
        if spec.get("command"):
            args = spec.get("args") or []
            if not isinstance(args, list):
                raise ToolConfigError(f"server {name!r}: \"args\" must be a list")
            server = ToolServer("", str(name), "stdio", command=str(spec["command"]), args=tuple(map(str, args)))
        elif spec.get("url"):
            server = ToolServer("", str(name), "http", url=str(spec["url"]))
        else:
            raise ToolConfigError(f"server {name!r} has neither a \"command\" nor a \"url\"")
        _check(server)
        out.append((server, secrets))
    return out
