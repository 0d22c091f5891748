"""Remote backends against a real OpenAI-compatible server: llama-cpp-python's own, on the test model."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from pytestqt.qtbot import QtBot

from app import paths
from app.engine.remote import RemoteError, RemoteServers, model_ref
from app.engine.types import ChatMessage, SamplingParams
from app.store.chats import ChatStore
from app.ui.window import MainWindow
from tests.sqlite_files import stored_bytes

ALIAS = "gemma-test"
KEY = "sk-remote-secret"
ECHO = "List the numbers from 1 to 100, separated by commas."  # this base model answers by echoing it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    def __init__(self, model: Path, api_key: str | None = None) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", ALIAS,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--chat_format", "chatml"]
        if api_key:
            cmd += ["--api_key", api_key]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                httpx2.get(f"{self.url}/models", timeout=1, headers={"Authorization": f"Bearer {api_key}"})
                return
            except httpx2.TransportError:
                assert self.proc.poll() is None, "llama_cpp.server exited"
                time.sleep(0.2)
        raise AssertionError("llama_cpp.server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def server(test_model: Path) -> Iterator[LlamaServer]:
    srv = LlamaServer(test_model, api_key=KEY)
    yield srv
    srv.kill()


@pytest.fixture
def store() -> Iterator[ChatStore]:
    """The chat store on its real SQLite file: where the app keeps the servers the user added."""
    s = ChatStore(paths.database_path())
    yield s
    s.close()


@pytest.fixture
def remotes(store: ChatStore) -> RemoteServers:
    return RemoteServers(store.get_setting, store.set_setting)


def test_list_models_and_stream_an_answer(server: LlamaServer, remotes: RemoteServers) -> None:
    added, _saved = remotes.add("lab box", server.url, KEY)
    on_disk = stored_bytes(paths.database_path())
    assert server.url.encode() in on_disk  # the server is in the database file ...
    assert KEY.encode() not in on_disk  # ... its API key is not (it belongs in the keyring)
    client = remotes.client(added.id)
    assert client.models() == [ALIAS]
    gen = client.stream(ALIAS, [ChatMessage("user", ECHO)], SamplingParams(temperature=0.0, max_tokens=64))
    pieces = list(gen)
    assert len(pieces) > 3
    assert "".join(pieces).startswith("List the numbers")
    assert gen.result is not None
    assert gen.result.stats.finish_reason == "stop"
    assert gen.result.stats.completion_tokens >= len(pieces)
    assert gen.result.stats.ttft_s > 0


def test_wrong_key_and_unreachable_server(server: LlamaServer, remotes: RemoteServers) -> None:
    wrong, _ = remotes.add("lab box", server.url, "sk-wrong")
    with pytest.raises(RemoteError, match="refused the API key"):
        remotes.client(wrong.id).models()
    with pytest.raises(RemoteError, match="refused the API key"):
        list(remotes.client(wrong.id).stream(ALIAS, [ChatMessage("user", "hi")], SamplingParams()))
    gone, _ = remotes.add("nowhere", "http://127.0.0.1:9/v1")
    with pytest.raises(RemoteError, match="Cannot reach"):
        remotes.client(gone.id).models()
    wrong_path, _ = remotes.add("no api", server.url.removesuffix("/v1") + "/nothing", KEY)
    with pytest.raises(RemoteError, match="404"):
        remotes.client(wrong_path.id).models()


def test_server_disappearing_mid_stream_keeps_the_partial_answer(server: LlamaServer, remotes: RemoteServers) -> None:
    added, _ = remotes.add("lab box", server.url, KEY)
    gen = remotes.client(added.id).stream(ALIAS, [ChatMessage("user", ECHO)],
                                          SamplingParams(temperature=0.0, max_tokens=64))
    it = iter(gen)
    first = next(it)
    server.kill()
    with pytest.raises(RemoteError) as err:
        for _ in it:
            pass
    assert err.value.partial_text.startswith(first)
    assert "what arrived is kept" in str(err.value)


def test_a_chat_switches_between_local_and_remote(qtbot: QtBot, server: LlamaServer, test_model: Path) -> None:
    from tests.ui.windows import make_window, send_and_wait

    w: MainWindow = make_window(qtbot, test_model)
    try:
        with qtbot.waitSignal(w.servers.modelsListed, timeout=60_000) as listed:
            added, _ = w.servers.add("lab box", server.url, KEY)
        on_disk = stored_bytes(paths.database_path())
        assert server.url.encode() in on_disk
        assert KEY.encode() not in on_disk
        assert listed.args == [added.id, ""]
        ref = model_ref(added.id, ALIAS)
        assert (f"{ALIAS} · lab box", ref) in w.servers.cached_models()
        w.new_chat(model=ref)
        conv = w.current_conv
        assert conv is not None
        _c, _m, status, error, stats = send_and_wait(qtbot, w, ECHO)
        assert (status, error) == ("complete", "")
        assert w.store.messages(conv)[-1].content.startswith("List the numbers")
        assert stats["completion_tokens"] > 0
        w.store.update_conversation(conv, model=str(test_model))  # the same chat, now on the local engine
        _c, _m, status, error, stats = send_and_wait(qtbot, w, "What is the capital of France?")
        assert (status, error) == ("complete", "")
        assert stats["n_ctx"] == 2048  # answered by the local engine
        w.store.update_conversation(conv, model=ref)
        # The server goes away: the next answer fails with a message, and the chat keeps everything.
        server.kill()
        _c, _m, status, error, _s = send_and_wait(qtbot, w, "Are you there?")
        assert status == "error"
        assert "Cannot reach" in error
        assert len(w.store.messages(conv)) == 6
    finally:
        w.controller.shutdown()
