"""The MCP client against a real MCP server (the official SDK, over stdio): tools, failures, config."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from app import paths
from app.store.chats import ChatStore
from app.tools.config import ServerSecrets, ToolConfigError, ToolServer, ToolServers, import_claude_config
from app.tools.hub import ToolHub
from app.tools.mcp_client import MAX_RESULT_CHARS, McpConnection, ToolError
from tests.sqlite_files import stored_bytes
from tests.tools.conftest import SERVER, stdio_server

SECRET = "mcp-token-7f3a9c"  # an environment value of the server: it belongs in the keyring only


@pytest.fixture
def store() -> Iterator[ChatStore]:
    """The chat store on its real SQLite file, where the app keeps its settings."""
    s = ChatStore(paths.database_path())
    yield s
    s.close()


@pytest.fixture
def conn(notes: Path, tmp_path: Path) -> Any:
    c = McpConnection(stdio_server(notes, timeout_s=10), ServerSecrets(env={"NOTES_DIR": str(notes)}),
                      tmp_path / "server.log")
    yield c
    c.close()


def test_lists_and_calls_tools(conn: McpConnection) -> None:
    tools = {t.name: t for t in conn.start()}
    assert {"add", "read_note", "sleep", "crash", "big", "fail"} <= set(tools)
    assert tools["add"].description == "Add two integers."
    assert tools["add"].parameters["properties"]["a"]["type"] == "integer"
    assert tools["add"].function()["function"]["name"] == "add"
    assert conn.call("add", {"a": 2, "b": 40}).text == "42"
    assert conn.call("read_note", {"name": "shopping.txt"}).text.strip() == "eggs, flour, milk"


def test_errors_are_results_the_model_reads(conn: McpConnection) -> None:
    conn.start()
    escaped = conn.call("read_note", {"name": "../secret.txt"})
    assert escaped.is_error  # the SDK reports a tool's exception as an error result, not its text
    assert "outside the notes folder" not in escaped.text
    failed = conn.call("fail", {})
    assert failed.is_error
    assert "fail" in failed.text
    unknown = conn.call("nope", {})
    assert unknown.is_error


def test_oversized_result_is_cut_and_says_so(conn: McpConnection) -> None:
    conn.start()
    out = conn.call("big", {})
    assert len(out.text) < MAX_RESULT_CHARS + 200
    assert "cut: the result was 500,000 characters" in out.text


def test_hanging_call_times_out_and_the_server_goes_on(conn: McpConnection) -> None:
    conn.start()
    with pytest.raises(ToolError, match="did not answer within 1 s"):
        conn.call("sleep", {"seconds": 30}, timeout=1)
    assert conn.call("add", {"a": 1, "b": 1}).text == "2"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (a bound, not a measurement)."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        pause.wait(0.05)


def test_stop_cancels_a_running_call(notes: Path, tmp_path: Path) -> None:
    """Stop ends a call that would never answer: the caller gets a message, the server is told and
    interrupts the tool, and goes on serving; closing the connection ends the server process."""
    conn = McpConnection(stdio_server(notes, "--hang", timeout_s=10), ServerSecrets(env={"NOTES_DIR": str(notes)}),
                         tmp_path / "server.log")
    marker = tmp_path / "hang.txt"
    stop = threading.Event()

    def stop_once_running() -> None:
        wait_until(marker.exists, "the tool started on the server")
        stop.set()

    try:
        conn.start()
        stopper = threading.Thread(target=stop_once_running)
        stopper.start()
        with pytest.raises(ToolError, match="the call to hang was stopped"):
            conn.call("hang", {"marker": str(marker)}, cancel=stop)  # (it never answers by itself)
        stopper.join()
        wait_until(lambda: "cancelled" in marker.read_text(encoding="utf-8"), "the server interrupted the tool")
        assert conn.call("add", {"a": 1, "b": 1}).text == "2"
        server = psutil.Process(int(marker.read_text(encoding="utf-8").split()[1]))
        assert server.is_running()
    finally:
        conn.close()
    wait_until(lambda: not server.is_running() or server.status() == psutil.STATUS_ZOMBIE,
               "the server process ended with the connection")


def test_a_crashing_server_is_a_message_and_starts_again(notes: Path, tmp_path: Path, store: ChatStore) -> None:
    servers = ToolServers(store.get_setting, store.set_setting)
    server = servers.add(stdio_server(notes, timeout_s=5), ServerSecrets(env={"NOTES_DIR": str(notes)}))
    hub = ToolHub(servers, store.get_setting, store.set_setting, tmp_path)
    try:
        specs = {t.name: t for t in hub.enable(1, server.id)}
        with pytest.raises(ToolError):
            hub.run(specs["crash"], {})
        # the next call finds the server gone (a message) or already restarted; then it works again
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append(hub.run(specs["add"], {"a": 3, "b": 4}).text)
            except ToolError as exc:
                outcomes.append(str(exc))
        assert outcomes[-1] == "7", outcomes
        assert all(o == "7" or "stopped" in o or "not running" in o for o in outcomes)
    finally:
        hub.close()


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    missing = McpConnection(ToolServer("x", "Missing", "stdio", command="/nonexistent/mcp-server"), ServerSecrets(),
                            tmp_path / "a.log")
    with pytest.raises(ToolError, match="could not be started.*No such file"):
        missing.start()
    garbage = McpConnection(ToolServer("g", "Garbage", "stdio", command=sys.executable,
                                       args=(str(SERVER), "--garbage")), ServerSecrets(), tmp_path / "g.log")
    with pytest.raises(ToolError, match="Garbage"):
        garbage.start(timeout=8)
    garbage.close()


def test_hub_keeps_per_chat_choices_and_approvals(notes: Path, tmp_path: Path, store: ChatStore) -> None:
    servers = ToolServers(store.get_setting, store.set_setting)
    server = servers.add(stdio_server(notes), ServerSecrets(env={"NOTES_DIR": str(notes), "NOTES_TOKEN": SECRET}))
    assert servers.all()[0].env_names == ("NOTES_DIR", "NOTES_TOKEN")
    # the settings are in the database file; the values are not, only their names
    on_disk = stored_bytes(paths.database_path())
    assert b'"env_names": ["NOTES_DIR", "NOTES_TOKEN"]' in on_disk
    assert SECRET.encode() not in on_disk
    assert str(notes).encode() not in on_disk
    assert servers.secrets(servers.get(server.id)).env == {"NOTES_DIR": str(notes), "NOTES_TOKEN": SECRET}
    hub = ToolHub(servers, store.get_setting, store.set_setting, tmp_path)
    try:
        assert hub.tools(1) == ([], [])  # off until the chat turns it on
        hub.enable(1, server.id)
        specs, problems = hub.tools(1)
        assert problems == []
        add = next(s for s in specs if s.name == "add")
        assert hub.tools(2) == ([], [])  # another chat: still off
        assert not hub.always_allowed(1, add)
        hub.allow_always(1, add)
        assert hub.always_allowed(1, add)
        assert not hub.always_allowed(2, add)
        hub.enable(1, server.id, on=False)
        assert hub.tools(1) == ([], [])
    finally:
        hub.close()
    on_disk = stored_bytes(paths.database_path())
    assert b"chat_tools:1" in on_disk  # the chat's choices were written ...
    assert SECRET.encode() not in on_disk  # ... and still no secret


def test_claude_desktop_config_import() -> None:
    text = json.dumps({"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
                  "env": {"API_KEY": "s3cret"}},
        "remote": {"url": "https://tools.example/mcp", "headers": {"Authorization": "Bearer t"}},
    }})
    (files, files_secrets), (remote, remote_secrets) = import_claude_config(text)
    assert files.kind == "stdio"
    assert files.command == "npx"
    assert files.args[-1] == "/tmp"
    assert files_secrets.env == {"API_KEY": "s3cret"}
    assert remote.kind == "http"
    assert remote_secrets.headers == {"Authorization": "Bearer t"}
    with pytest.raises(ToolConfigError, match="mcpServers"):
        import_claude_config('{"servers": {}}')
    with pytest.raises(ToolConfigError, match="neither"):
        import_claude_config('{"mcpServers": {"x": {}}}')


def test_a_server_over_streamable_http(tmp_path: Path) -> None:
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        server = ToolServer("h", "Over HTTP", "http", url=f"http://127.0.0.1:{port}/mcp")
        conn = McpConnection(server, ServerSecrets(headers={"Authorization": "Bearer test"}), tmp_path / "h.log")
        try:
            assert "add" in {t.name for t in conn.start()}
            assert conn.call("add", {"a": 20, "b": 22}).text == "42"
        finally:
            conn.close()
    finally:
        proc.terminate()
        proc.wait(10)
    unreachable = McpConnection(ToolServer("u", "Nowhere", "http", url=f"http://127.0.0.1:{port}/mcp"),
                                ServerSecrets(), tmp_path / "u.log")
    with pytest.raises(ToolError, match="Nowhere"):
        unreachable.start(timeout=15)
    unreachable.close()
