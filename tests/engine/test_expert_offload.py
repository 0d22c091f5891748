"""MoE experts in RAM on the real load path: a tiny mixture-of-experts GGUF written here (architecture llama,
4 experts of which 2 work per token, 2 layers, SmolLM2's tokenizer) loads through the real engine with
llama.cpp's tensor buffer-type overrides; its load log names each expert tensor moved, and greedy output
is the same with and without the override (the override moves bytes, never changes arithmetic)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.engine.client import Engine
from app.engine.gguf_file import read_gguf
from app.engine.hardware import GiB, Hardware, plan_load
from app.engine.loadplan import place_for_load
from app.engine.overrides import ExpertOverrides, expert_patterns, load_attempts
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from app.errors import ModelTooLargeError
from tests.gguf_files import tiny_moe

OVERRIDDEN = "buffer type overridden"


@pytest.fixture(scope="module")
def moe_model(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_moe(instruct_model, tmp_path_factory.mktemp("moe") / "tiny-moe.gguf")


@pytest.fixture(scope="module")
def debug_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine whose child sends llama.cpp's DEBUG lines (where the override lines are) to this process."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PADDOCK_HOME", str(tmp_path_factory.mktemp("moe-home")))
        env.setenv("PADDOCK_ENGINE_LOG_LEVEL", str(logging.DEBUG))
        eng = Engine()
        eng.start()
    yield eng
    eng.close()


def test_experts_move_to_ram_by_override_and_answers_stay_the_same(
    debug_engine: Engine, moe_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paddock.llama")
    greedy = SamplingParams(temperature=0.0, max_tokens=12, seed=1)
    question = [ChatMessage("user", "Name three colours.")]
    results = {}
    for n_cpu_moe, moved in ((0, 0), (1, 3), (-1, 6)):  # 3 expert tensors (gate, up, down) per layer
        caplog.clear()
        loaded = debug_engine.load(str(moe_model), LoadSettings(n_ctx=512, n_cpu_moe=n_cpu_moe))
        lines = [r.getMessage() for r in caplog.records if OVERRIDDEN in r.getMessage()]
        assert len(lines) == moved, lines
        assert all("_exps" in line and line.rstrip().endswith("CPU") for line in lines)
        assert loaded.n_cpu_moe == (2 if n_cpu_moe < 0 else n_cpu_moe)
        assert loaded.plan.startswith("all 2 layers on the CPU, context 512")
        assert loaded.predicted_tokens_per_s is not None
        assert loaded.predicted_tokens_per_s > 0
        result = debug_engine.generate(question, greedy)
        assert result.stats.completion_tokens > 0
        results[n_cpu_moe] = result.text
    assert results[0] == results[1] == results[-1]


def test_patterns_are_llama_cpps() -> None:
    assert expert_patterns(0, 48) == []
    assert expert_patterns(48, 48) == [r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"]
    assert expert_patterns(2, 48) == [r"blk\.0\.ffn_(up|down|gate|gate_up)_(ch|)exps",
                                      r"blk\.1\.ffn_(up|down|gate|gate_up)_(ch|)exps"]
    overrides = ExpertOverrides(2, 48)
    assert [overrides.array[i].pattern for i in range(3)] == [p.encode() for p in expert_patterns(2, 48)] + [None]
    assert overrides.array[0].buft  # libllama's own CPU buffer type
    assert not ExpertOverrides(0, 48)


def test_a_gpu_that_runs_out_of_memory_gets_smaller_plans_then_the_cpu() -> None:
    # No GPU here to run out of memory: the order of retries the engine walks through is checked as data.
    attempts = load_attempts(-1, 10, 48, moe=True)
    assert [(a[0], a[1]) for a in attempts] == [(-1, 10), (-1, 48), (24, 48), (0, 0)]
    assert attempts[1][2] == "with the experts of every layer in RAM"
    assert [(a[0], a[1]) for a in load_attempts(30, 0, 40, moe=False)] == [(30, 0), (15, 0), (0, 0)]
    assert load_attempts(0, 0, 40, moe=False) == [(0, 0, "")]


def test_a_model_that_fits_nowhere_is_refused_before_load_with_numbers(moe_model: Path) -> None:
    info = read_gguf(moe_model)
    # a machine with 5 MB for models beyond what the system keeps (2 GiB)
    tiny = Hardware("cpu", 2, 2 * GiB + (5 << 20), 2 * GiB, None, False)
    load_plan = plan_load(info.shape, tiny, n_ctx=512)
    with pytest.raises(ModelTooLargeError, match=r"tiny-moe does not fit: needs 0\.\d GB of RAM at context 512 "
                       r"\(this machine has 0\.0 GB of RAM for models\)"):
        place_for_load(info, tiny, load_plan, LoadSettings(n_ctx=512), 2)


def test_chat_takes_n_cpu_moe(moe_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    code = main(["chat", "--model", str(moe_model), "--n-cpu-moe", "1", "--ctx", "512", "--max-tokens", "4",
                 "--temperature", "0", "--raw", "--json", "Once upon a time"])
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(out.out)
    assert data["n_cpu_moe"] == 1
    assert data["predicted_tokens_per_s"] > 0
    assert data["plan"].startswith("all 2 layers on the CPU")


def _load_over_rpc(model: str, worker: str, n_cpu_moe: int, out: Any) -> None:
    """In a child process: the worker registered as a ggml device, the model loaded with every layer offloaded
    and the experts of ``n_cpu_moe`` layers overridden to the CPU; llama.cpp's log lines sent back."""
    import ctypes

    import llama_cpp

    from app.engine import rpc

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(_level: int, text: bytes, _data: ctypes.c_void_p) -> None:
        lines.append(text.decode(errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    usable, left_out = rpc.register_workers([worker])
    if not usable:
        out.put(["not registered: " + "; ".join(s.error for s in left_out)])
        return
    overrides = ExpertOverrides(n_cpu_moe, 2)
    with overrides.applied():
        llm = llama_cpp.Llama(model_path=model, n_gpu_layers=-1, n_ctx=256, verbose=False)
    llm.close()  # before the worker goes: a client whose worker vanished aborts
    out.put("".join(lines).splitlines())


def _buffer_mib(lines: list[str], device: str) -> float:
    """``load_tensors:   RPC0[127.0.0.1:N] model buffer size =     0.19 MiB`` -> 0.19 (0 when absent)."""
    import re

    for line in lines:
        m = re.search(r"(\S+) model buffer size =\s+([\d.]+) MiB", line)
        if m and m.group(1).startswith(device):
            return float(m.group(2))
    return 0.0


def test_an_rpc_device_stands_in_for_a_gpu_and_the_experts_stay_in_ram(moe_model: Path) -> None:
    """llama.cpp's RPC server on 127.0.0.1 is a real ggml device: with every layer offloaded to it, the load
    log's buffer sizes show where the plan put things (experts in CPU memory, the rest on the device)."""
    import multiprocessing as mp

    from app.engine import rpc
    from app.engine.placement import ModelTable

    table = ModelTable.from_info(read_gguf(moe_model))
    experts = sum(layer.experts for layer in table.layers) / 2**20
    ctx = mp.get_context("spawn")
    with rpc.WorkerProcess("127.0.0.1", threads=1) as worker:
        logs = {}
        for n_cpu_moe in (0, 2):
            out = ctx.Queue()
            child = ctx.Process(target=_load_over_rpc, args=(str(moe_model), worker.endpoint, n_cpu_moe, out))
            child.start()
            logs[n_cpu_moe] = out.get(timeout=120)
            child.join(30)
            assert child.exitcode == 0, logs[n_cpu_moe][-5:]
    for n_cpu_moe, lines in logs.items():
        moved = [line for line in lines if OVERRIDDEN in line]
        assert len(moved) == 3 * n_cpu_moe, moved
    rpc_all, cpu_all = _buffer_mib(logs[0], "RPC"), _buffer_mib(logs[0], "CPU")
    rpc_moe, cpu_moe = _buffer_mib(logs[2], "RPC"), _buffer_mib(logs[2], "CPU")
    assert rpc_all > 0, logs[0]
    # the experts of both layers left the device for CPU memory, nothing else moved (CPU memory is a map
    # of the file: it covers whole spans between the tensors it holds, so it grows by a little more)
    assert rpc_all - rpc_moe == pytest.approx(experts, abs=0.02)
    assert experts - 0.02 <= cpu_moe - cpu_all <= experts + 0.15
    # what stays on the device is what the planner counts for it: layers without experts and the (tied) head
    on_device = (sum(layer.total - layer.experts for layer in table.layers) + table.head_bytes) / 2**20
    assert rpc_moe == pytest.approx(on_device, rel=0.05)
