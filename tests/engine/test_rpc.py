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


def test_placement_from_a_load_log_with_a_local_gpu_and_a_two_device_worker() -> None:
    # llama.cpp's own lines (src/llama-model.cpp, llama-kv-cache.cpp, llama-context.cpp); a worker's buffers are
    # named "RPC<its device index>[endpoint]", its devices "RPC<n>" in this process's registry
    lines = [
        "load_tensors: layer   0 assigned to device CUDA0, is_swa = 0",
        "load_tensors: layer   1 assigned to device RPC3, is_swa = 0",
        "load_tensors: layer   2 assigned to device RPC4, is_swa = 0",
        "load_tensors: layer   3 assigned to device RPC4, is_swa = 0",
        "load_tensors:   CPU_Mapped model buffer size =    28.69 MiB",
        "load_tensors:        CUDA0 model buffer size =    10.00 MiB",
        "load_tensors: RPC0[10.0.0.5:50052] model buffer size =    33.82 MiB",
        "load_tensors: RPC1[10.0.0.5:50052] model buffer size =    58.28 MiB",
        "llama_kv_cache: RPC1[10.0.0.5:50052] KV buffer size =     6.00 MiB",
        "sched_reserve:    CUDA_Host compute buffer size =     1.00 MiB",
    ]
    placed = rpc.placement_from_log(lines, n_layers=3, endpoints={"RPC3": "10.0.0.5:50052", "RPC4": "10.0.0.5:50052"})
    by_device = {d.device: d for d in placed}
    assert by_device["CUDA0"].layers == 1
    assert by_device["CUDA0"].model_bytes == 10 * 2**20
    assert (by_device["RPC3"].layers, by_device["RPC3"].worker) == (1, "10.0.0.5:50052")
    assert by_device["RPC3"].model_bytes == int(33.82 * 2**20)
    assert (by_device["RPC4"].layers, by_device["RPC4"].output) == (1, True)  # layer 3 of 3 is the output layer
    assert by_device["RPC4"].kv_bytes == 6 * 2**20
    assert by_device["CPU"].model_bytes == int(28.69 * 2**20)
    assert by_device["CPU"].compute_bytes == 2**20  # pinned host memory is this computer's RAM


def test_an_ipv6_worker_is_left_out_before_llama_cpp_sees_it() -> None:
    # llama.cpp's client would split "[::1]:9" at its first colon and abort the engine process
    def never(addr: str, timeout: float) -> rpc.WorkerStatus:
        raise AssertionError(f"{addr} must not be probed")

    usable, left_out = rpc.register_workers(["[::1]:9"], probe_fn=never)
    assert usable == []
    assert [s.endpoint for s in left_out] == ["[::1]:9"]
    assert "IPv4" in left_out[0].error
