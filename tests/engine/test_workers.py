"""One model across RPC workers on 127.0.0.1: real worker child processes (llama.cpp's RPC server
serving this machine's CPU), the real engine child registering them, the real SmolLM2 model."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.engine import rpc
from app.engine.client import Engine
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from app.engine.worker_gate import WorkerGate
from app.errors import EngineCrashedError

QUESTION = [ChatMessage("user", "Name three colours of the rainbow.")]
GREEDY = SamplingParams(temperature=0.0, seed=7, max_tokens=24)
N_CTX = 1024


@contextlib.contextmanager
def _engine(home: Path) -> Iterator[Engine]:
    # module-scoped: started before a test's own PADDOCK_HOME, so it gets a home of its own
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PADDOCK_HOME", str(home))
        eng = Engine()
        eng.start()
    try:
        yield eng
    finally:
        eng.close()  # frees the model (and its buffers on the workers) before the workers stop


@pytest.fixture(scope="module")
def two_workers() -> Iterator[list[rpc.WorkerProcess]]:
    with rpc.workers(2, threads=1) as ws:
        yield ws


@pytest.fixture(scope="module")
def split_engine(two_workers: list[rpc.WorkerProcess], instruct_model: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with _engine(tmp_path_factory.mktemp("split-home")) as eng:
        eng.load(str(instruct_model), LoadSettings(n_ctx=N_CTX, workers=tuple(w.endpoint for w in two_workers)))
        yield eng


def test_split_over_two_workers_answers_as_one_machine(split_engine: Engine, instruct_model: Path,
                                                      two_workers: list[rpc.WorkerProcess]) -> None:
    loaded = split_engine.loaded
    assert loaded is not None
    # llama.cpp's load log: the layers went to both workers, named by their addresses
    by_worker = {d.worker: d for d in loaded.devices if d.worker}
    assert set(by_worker) == {w.endpoint for w in two_workers}
    assert all(d.layers > 0 and d.model_bytes > 0 and d.kv_bytes > 0 for d in by_worker.values())
    assert sum(d.layers for d in loaded.devices) == 30  # SmolLM2-135M's blocks, each placed once
    told = [n for n in loaded.notices if n.startswith("Layers: ")]
    assert told == [rpc.placement_notice(loaded.devices)]
    assert all(f"on the worker at {w.endpoint}" in told[0] for w in two_workers)
    split = split_engine.generate(QUESTION, GREEDY)
    # the same engine process without workers, every layer offloaded: the workers registered before
    # (llama.cpp's default devices) are not used any more, so all of it stays on this CPU
    local = split_engine.load(str(instruct_model), LoadSettings(n_ctx=N_CTX, n_gpu_layers=-1))
    assert [(d.device, d.layers) for d in local.devices if d.layers] == [("CPU", 30)]
    assert not any(d.worker for d in local.devices)
    alone = split_engine.generate(QUESTION, GREEDY)
    assert split.stats.completion_tokens > 3
    assert split.text == alone.text


def _answer_until_lost(eng: Engine, lose: Callable[[], None]) -> tuple[list[str], EngineCrashedError]:
    """Stream a long answer, call ``lose`` after its third piece; the pieces and the crash it ends in."""
    gen = eng.stream([ChatMessage("user", "Write a long story about a cat.")],
                     SamplingParams(temperature=0.0, max_tokens=400))
    pieces: list[str] = []
    with pytest.raises(EngineCrashedError) as caught:
        for piece in gen:
            pieces.append(piece)
            if len(pieces) == 3:
                lose()
    return pieces, caught.value


@pytest.mark.timeout(180)
def test_worker_lost_mid_answer_keeps_the_partial_answer_and_names_it(
        two_workers: list[rpc.WorkerProcess], split_engine: Engine, instruct_model: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    split_engine.close()  # one client per worker: this test's engine takes the module's first worker
    doomed = rpc.WorkerProcess("127.0.0.1", threads=1)
    doomed.start()
    addrs = (two_workers[0].endpoint, doomed.endpoint)
    try:
        with _engine(tmp_path_factory.mktemp("lost-home")) as eng:
            eng.load(str(instruct_model), LoadSettings(n_ctx=N_CTX, workers=addrs))
            pieces, crash = _answer_until_lost(eng, doomed.kill)
            assert doomed.endpoint in str(crash)
            assert crash.partial_text == "".join(pieces)
            assert len(pieces) >= 3
            # the next message loads again, in a fresh engine, without the lost worker, and says so
            again = eng.load(str(instruct_model), LoadSettings(n_ctx=N_CTX, workers=addrs))
            assert any(doomed.endpoint in n and "left out" in n for n in again.notices)
            assert {d.worker for d in again.devices if d.worker} == {two_workers[0].endpoint}
            assert eng.generate(QUESTION, GREEDY).stats.completion_tokens > 0
    finally:
        doomed.stop()


def _connect_from(source: str, port: int) -> bytes:
    """What the gate answers a status request from ``source`` (b"": it closed the connection)."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        try:
            s.sendall(rpc.STATUS_REQUEST)
            while chunk := s.recv(4096):
                data += chunk
        except ConnectionResetError:  # closed with our request unread
            pass
    return data


def test_gate_refuses_a_client_that_is_not_allowed(two_workers: list[rpc.WorkerProcess]) -> None:
    # 127.0.0.2 is loopback too (127.0.0.0/8): a second client address on this one machine
    gate = WorkerGate(two_workers[1], "127.0.0.1", 0, allow=["127.0.0.2"])
    gate.bind()
    thread = threading.Thread(target=gate.serve_forever, daemon=True)
    thread.start()
    try:
        assert _connect_from("127.0.0.1", gate.port) == b""  # closed unread
        assert gate.refused == 1
        answer = _connect_from("127.0.0.2", gate.port)
        assert b'"paddock_worker": 1' in answer
        assert b'"busy": false' in answer
        status = rpc.probe(gate.endpoint)  # from 127.0.0.1: refused, and the probe says why
        assert not status.reachable
        assert "allow" in status.error
        assert gate.refused == 3  # the status request and the RPC hello, both closed unread
    finally:
        gate.stop()
        thread.join(5)


def test_worker_on_an_open_address_without_allow_refuses_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    port = rpc.free_port()
    assert main(["worker", "--host", "0.0.0.0", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert "--allow" in err
    assert "SSH" in err
    with pytest.raises(ConnectionRefusedError):  # nothing started listening
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.timeout(180)
def test_worker_gone_silent_ends_the_answer_instead_of_hanging(instruct_model: Path,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    # A machine that vanishes resets no connection: llama.cpp would wait on its socket for ever. Here
    # the worker is frozen (SIGSTOP) and its gate stops listening, so the engine's connection stays
    # open and silent while nothing answers at the worker's address any more.
    import os
    import signal

    with rpc.WorkerProcess("127.0.0.1", threads=1) as worker:
        gate = WorkerGate(worker, "127.0.0.1", 0)
        gate.bind()
        thread = threading.Thread(target=gate.serve_forever, daemon=True)
        thread.start()
        assert worker.pid is not None
        try:
            with _engine(tmp_path_factory.mktemp("silent-home")) as eng:
                eng.load(str(instruct_model), LoadSettings(n_ctx=N_CTX, workers=(gate.endpoint,)))
                pid = worker.pid

                def vanish() -> None:
                    os.kill(pid, signal.SIGSTOP)
                    gate.stop()

                pieces, crash = _answer_until_lost(eng, vanish)
                assert gate.endpoint in str(crash)
                assert crash.partial_text == "".join(pieces)
        finally:
            os.kill(worker.pid, signal.SIGCONT)
            gate.stop()
            thread.join(5)
