"""llama.cpp's RPC workers on 127.0.0.1 (app/engine/rpc.py): real worker child processes serving
this machine's CPU through ``ggml_backend_rpc_start_server``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.engine import rpc
from app.errors import WorkerError


@pytest.fixture(scope="module")
def worker() -> Iterator[rpc.WorkerProcess]:
    with rpc.WorkerProcess("127.0.0.1", threads=1) as w:
        yield w


def test_worker_serves_a_device_and_announces_its_memory(worker: rpc.WorkerProcess) -> None:
    assert worker.device is not None
    assert worker.device.kind == "cpu"  # this machine has no GPU backend
    assert 0 < worker.device.memory_free <= worker.device.memory_total
    assert worker.memory().memory_total == worker.device.memory_total


def test_probe_speaks_the_rpc_protocol_to_a_plain_server(worker: rpc.WorkerProcess) -> None:
    # A bare WorkerProcess is ggml's own server: no Paddock status line, so the probe asks
    # through RPC hello / device count / device memory.
    status = rpc.probe(worker.endpoint)
    assert status.usable, status.error
    assert status.memory_total == worker.device.memory_total if worker.device else 0


def test_probe_of_nothing_says_so_without_raising() -> None:
    status = rpc.probe(f"127.0.0.1:{rpc.free_port()}", timeout=1.0)
    assert not status.reachable
    assert "nothing listens" in status.error


@pytest.mark.parametrize("text", ["host", "host:", ":50052", "host:0", "host:70000", "host:abc"])
def test_bad_endpoints_are_refused(text: str) -> None:
    with pytest.raises(WorkerError, match="HOST:PORT"):
        rpc.parse_endpoint(text)


def test_endpoints_parse() -> None:
    assert rpc.parse_endpoint("192.168.1.20:50052") == ("192.168.1.20", 50052)
    assert rpc.parse_endpoint("[::1]:9") == ("::1", 9)
    assert rpc.endpoint("::1", 9) == "[::1]:9"
