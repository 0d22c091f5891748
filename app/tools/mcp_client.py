"""One MCP server's connection, through the official ``mcp`` SDK.

The SDK is asyncio; Paddock's callers are threads (the chat worker, the API
server).  Each connection runs its own event loop on a thread of its own: one
task holds the SDK's ``Client`` open for the connection's life, and calls are
submitted to that loop and waited for with a timeout, checking a cancel event
(the Stop button) in between.  A server that fails to start, exits, hangs or
answers with something unreadable ends in a :class:`ToolError` whose message
says which server and what happened; the connection is then closed, and the next
use starts it again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.errors import PaddockError
from app.tools.config import ServerSecrets, ToolServer

log = logging.getLogger("paddock.tools")


class _NoTraceback(logging.Filter):
    """The SDK logs a whole traceback for each line a program prints that is not MCP: keep one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            record.msg = f"{record.getMessage()}: {_reason(record.exc_info[1]) if record.exc_info[1] else ''}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("mcp.client.stdio").addFilter(_NoTraceback())

START_TIMEOUT_S = 30.0
MAX_RESULT_CHARS = 20_000  # a result is quoted into the prompt: more than this is cut, and the model told


class ToolError(PaddockError):
    """A tool server or call failed; the message is shown in the chat, which goes on."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model is told about it."""

    server_id: str
    server_name: str
    name: str
    description: str
    parameters: dict[str, Any]

    def function(self) -> dict[str, Any]:
        """The OpenAI / Hugging Face ``tools`` entry."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolOutcome:
    text: str
    is_error: bool = False


class McpConnection:
    """A running MCP server (stdio) or an open session with one (HTTP).

    Args:
        server: what to start or reach.
        secrets: its environment / header values (from the keyring).
        log_path: where a stdio server's stderr goes.
    """

    def __init__(self, server: ToolServer, secrets: ServerSecrets, log_path: Path) -> None:
        self.server = server
        self.secrets = secrets
        self.log_path = log_path
        self.tools: list[ToolSpec] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._closing: asyncio.Event | None = None
        self._errlog: IO[str] | None = None
        self._done: concurrent.futures.Future[None] | None = None

    @property
    def alive(self) -> bool:
        return self._client is not None and self._done is not None and not self._done.done()

    # -- life --------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> list[ToolSpec]:
        """Start (or connect to) the server and list its tools.

        Raises:
            ToolError: it could not be started or reached, or listing its tools failed.
        """
        if self.alive:
            return self.tools
        self.close()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"mcp-{self.server.name}", daemon=True)
        self._thread.start()
        ready: concurrent.futures.Future[list[ToolSpec]] = concurrent.futures.Future()
        self._done = asyncio.run_coroutine_threadsafe(self._hold(ready), loop)
        try:
            self.tools = ready.result(timeout)
        except concurrent.futures.TimeoutError:
            self.close()
            raise ToolError(f"“{self.server.name}” could not be started: it did not answer as an MCP tool server "
                            f"within {timeout:.0f} s. Check the command ({self.server.describe()}); its error "
                            f"output is in {self.log_path}.") from None
        except ToolError:
            self.close()
            raise
        return self.tools

    def close(self) -> None:
        """End the session (a stdio server process ends with it)."""
        loop, closing = self._loop, self._closing
        if loop is not None and closing is not None and loop.is_running():
            loop.call_soon_threadsafe(closing.set)
        if self._done is not None:
            with contextlib.suppress(Exception):
                self._done.result(10)
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if loop is not None and not loop.is_running():
            loop.close()
        if self._errlog is not None:
            self._errlog.close()
        self._loop = self._thread = self._client = self._closing = self._errlog = self._done = None

    async def _hold(self, ready: concurrent.futures.Future[list[ToolSpec]]) -> None:
        """The task that keeps the SDK's client open until :meth:`close`."""
        from mcp import Client

        self._closing = asyncio.Event()
        try:
            async with Client(self._transport(), raise_exceptions=True) as client:
                listed = await client.list_tools()
                tools = [ToolSpec(self.server.id, self.server.name, t.name, t.description or "",
                                  dict(t.input_schema or {"type": "object", "properties": {}}))
                         for t in listed.tools]
                self._client = client
                ready.set_result(tools)
                await self._closing.wait()
        except BaseException as exc:  # the SDK's task groups raise groups; unwrap for the message
            if not ready.done():
                ready.set_exception(ToolError(f"“{self.server.name}” could not be started: {self._why(exc)}"))
            elif not isinstance(exc, asyncio.CancelledError) and not (self._closing and self._closing.is_set()):
                log.warning("tool server %s ended: %s", self.server.name, _reason(exc))
        finally:
            self._client = None

    def _why(self, exc: BaseException) -> str:
        """Why a server did not start, in words a user can act on (the SDK says "Connection closed")."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        where = self.server.describe()
        if self.server.kind == "http":
            return f"{where} did not answer as an MCP tool server ({_reason(exc)})."
        if isinstance(exc, FileNotFoundError):
            return (f"the program {self.server.command!r} was not found. Check the command, and that the program "
                    "is installed.")
        if isinstance(exc, PermissionError):
            return f"Paddock is not allowed to run {self.server.command!r} (permission denied)."
        if (isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED) or isinstance(exc, ValueError):
            return (f"the program is not an MCP tool server, or it stopped at once: it ended without answering "
                    f"Paddock's MCP greeting. Check the command ({where}); its error output is in {self.log_path}.")
        return f"{_reason(exc)} ({where})."

    def _transport(self) -> Any:
        if self.server.kind == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client

            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._errlog = self.log_path.open("a", encoding="utf-8")
            params = StdioServerParameters(command=self.server.command, args=list(self.server.args),
                                           env=self.secrets.env or None)
            return stdio_client(params, errlog=self._errlog)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=self.secrets.headers, timeout=httpx2.Timeout(30.0, read=300.0))
        return streamable_http_client(self.server.url, http_client=http)

    # -- calls -------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any], timeout: float | None = None,
             cancel: threading.Event | None = None) -> ToolOutcome:
        """Run one tool call.

        Raises:
            ToolError: the server is gone, the call timed out or was stopped, or its result is unreadable.
        """
        timeout = self.server.timeout_s if timeout is None else timeout
        client = self._client
        if client is None or not self.alive:
            raise ToolError(f"the tool {self.server.name!r} is not running (it may have crashed; see "
                            f"{self.log_path})")
        future = self._submit(client.call_tool(name, arguments))
        waited = 0.0
        while True:
            try:
                result = future.result(0.1)
                break
            except concurrent.futures.TimeoutError:
                waited += 0.1
                if cancel is not None and cancel.is_set():
                    future.cancel()
                    raise ToolError(f"the call to {name} was stopped") from None
                if waited >= timeout:
                    future.cancel()
                    raise ToolError(f"{name} on {self.server.name!r} did not answer within {timeout:.0f} s "
                                    "and was abandoned") from None
                if self._done is not None and self._done.done():
                    raise ToolError(f"the tool {self.server.name!r} stopped during the call to {name} "
                                    f"(see {self.log_path})") from None
            except Exception as exc:
                reason = _reason(exc)
                if "closed" in reason.lower():  # the SDK's word for a server process that ended
                    self._client = None  # started again on next use
                    raise ToolError(f"the tool {self.server.name!r} has stopped (it may have crashed; see "
                                    f"{self.log_path}); it starts again on the next call") from exc
                raise ToolError(f"{name} on {self.server.name!r} failed: {reason}") from exc
        return _outcome(result)

    def _submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)


def _outcome(result: Any) -> ToolOutcome:
    """A call's result as text for the model: text parts as they are, others named."""
    parts: list[str] = []
    try:
        for item in result.content or []:
            kind = getattr(item, "type", "")
            if kind == "text":
                parts.append(str(item.text))
            elif kind == "resource" and getattr(getattr(item, "resource", None), "text", None):
                parts.append(str(item.resource.text))
            else:
                parts.append(f"[{kind or 'unknown'} content not shown to the model]")
        if not parts and getattr(result, "structured_content", None) is not None:
            import json

            parts.append(json.dumps(result.structured_content, ensure_ascii=False))
        is_error = bool(result.is_error)
    except (AttributeError, TypeError) as exc:
        raise ToolError(f"the tool returned something Paddock cannot read ({exc})") from exc
    text = "\n".join(parts)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n[… cut: the result was {len(text):,} characters]"
    return ToolOutcome(text, is_error)


def _reason(exc: BaseException) -> str:
    """The innermost, most telling message of an exception (groups unwrapped)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__
