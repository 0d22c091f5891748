"""``paddock worker`` and ``paddock chat --worker`` as a user runs them: real processes on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from app.engine import rpc


def test_chat_over_a_paddock_worker_reports_where_the_layers_went(instruct_model: Path) -> None:
    port = rpc.free_port()
    addr = f"127.0.0.1:{port}"
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker", "--port", str(port), "--threads", "1"],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        banner = worker.stderr.readline()  # printed once it serves
        assert f"Paddock worker at {addr}: CPU" in banner
        assert "GB free" in banner
        gone = f"127.0.0.1:{rpc.free_port()}"
        out = subprocess.run(
            [sys.executable, "-m", "app", "chat", "--model", str(instruct_model), "--ctx", "1024", "--temperature",
             "0", "--max-tokens", "8", "--worker", addr, "--worker", gone, "--json", "Say hello."],
            capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["completion_tokens"] > 0
        on_worker = [d for d in data["devices"] if d["worker"] == addr]
        assert len(on_worker) == 1
        assert on_worker[0]["layers"] == 30  # every layer went through the gate to the worker
        assert any(gone in n and "left out" in n for n in data["notices"])
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    assert code == 0  # a clean stop, its ggml child with it
    assert not rpc.probe(addr, timeout=1.0).reachable
