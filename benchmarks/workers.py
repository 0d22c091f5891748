"""One model over two RPC workers on 127.0.0.1 against the same model on this machine alone.

    .venv/bin/python -m benchmarks.workers [--runs 3] [--tokens 64]

With the real instruct model (SmolLM2-135M-Instruct, 30 layers) on the engine API, greedy:

1. local: every layer on this machine's CPU;
2. two workers behind their gates (what ``paddock worker`` runs): the layers split over two
   worker processes serving the CPU through llama.cpp's RPC server, each gate counting the bytes
   it forwards;
3. two bare workers (ggml's server without the gate): the protocol's own cost.

Each run measures the time to first token (a fresh ~120-token prompt, nothing cached) and
decode tokens/s; runs alternate between the setups so that drift on a shared machine hits
each alike, and ratios are medians of the per-run ratios. Bytes per token: what the gates
forwarded (both ways) for a prompt with a 1-token answer, and the extra for ``--tokens``
answer tokens, per answer token.

On loopback this is the protocol's cost, not a network's: on a real LAN add the round trips
(one or more per layer boundary crossed per token) and the bandwidth for the prompt's activations.

Writes benchmarks/results/workers.json and workers.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.engine import rpc
from app.engine.client import Engine
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from app.engine.worker_gate import WorkerGate
from benchmarks.engine_bench import RESULTS
from benchmarks.engine_bench import median as med

N_CTX = 2048
THREADS = 1  # per worker and for the local engine: one core each on a 2-core machine


def _prompt(i: int) -> list[ChatMessage]:
    facts = " ".join(f"Item {i}-{k} costs {3 * k + i} coins and weighs {k + 2} kilograms." for k in range(8))
    return [ChatMessage("user", f"{facts} Summarise the list above in plain words, item by item.")]


@contextlib.contextmanager
def _gates(workers: list[rpc.WorkerProcess]) -> Iterator[list[WorkerGate]]:
    gates = [WorkerGate(w, "127.0.0.1", 0) for w in workers]
    threads = []
    for g in gates:
        g.bind()
        t = threading.Thread(target=g.serve_forever, daemon=True)
        t.start()
        threads.append(t)
    try:
        yield gates
    finally:
        for g in gates:
            g.stop()
        for t in threads:
            t.join(5)


def _engine(model: Path, workers: tuple[str, ...]) -> Engine:
    eng = Engine()
    eng.start()
    eng.load(str(model), LoadSettings(n_ctx=N_CTX, n_threads=THREADS, workers=workers, kept_states_ram_mb=0,
                                      kept_states_disk_mb=0))
    return eng


def _run(eng: Engine, i: int, tokens: int) -> tuple[dict[str, float], str]:
    result = eng.generate(_prompt(i), SamplingParams(temperature=0.0, seed=1, max_tokens=tokens))
    s = result.stats
    return ({"ttft_s": s.ttft_s, "tokens_per_s": s.tokens_per_s, "completion_tokens": s.completion_tokens,
             "prompt_tokens": s.prompt_tokens}, result.text)


def _bytes(gates: list[WorkerGate]) -> int:
    return sum(g.bytes_to_worker + g.bytes_from_worker for g in gates)


def run(runs: int, tokens: int, model: Path) -> dict[str, Any]:
    with rpc.workers(2, threads=THREADS) as gated_workers, rpc.workers(2, threads=THREADS) as bare_workers, \
            _gates(gated_workers) as gates:
        engines = {
            "local": _engine(model, ()),
            "gated": _engine(model, tuple(g.endpoint for g in gates)),
            "bare": _engine(model, tuple(w.endpoint for w in bare_workers)),
        }
        try:
            placement = {name: [d.to_dict() for d in e.loaded.devices] if e.loaded else []
                         for name, e in engines.items()}
            # warm-up (compute buffers, page cache) on each, then the measured runs, interleaved
            for e in engines.values():
                _run(e, 999, 8)
            rows: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
            answers: dict[str, list[str]] = {name: [] for name in engines}
            for i in range(runs):
                for name, e in engines.items():
                    row, text = _run(e, i, tokens)
                    rows[name].append(row)
                    answers[name].append(text)
            # bytes: a prompt with a 1-token answer, then the same prompt size with ``tokens`` answer tokens
            before = _bytes(gates)
            one, _ = _run(engines["gated"], 500, 1)
            prompt_bytes = _bytes(gates) - before
            before = _bytes(gates)
            full, _ = _run(engines["gated"], 501, tokens)
            answer_bytes = _bytes(gates) - before - prompt_bytes
        finally:
            for e in engines.values():
                e.close()  # frees the model on the workers before they stop
    summary: dict[str, Any] = {}
    for name, rs in rows.items():
        summary[name] = {"ttft_s": med([r["ttft_s"] for r in rs]), "tokens_per_s": med([r["tokens_per_s"] for r in rs])}
    for name in ("gated", "bare"):
        summary[name]["tokens_per_s_vs_local"] = med([r["tokens_per_s"] / lo["tokens_per_s"]
                                                       for r, lo in zip(rows[name], rows["local"], strict=True)])
        summary[name]["ttft_vs_local"] = med([r["ttft_s"] / lo["ttft_s"] for r, lo in zip(rows[name], rows["local"],
                                                                                          strict=True)])
        summary[name]["same_answers_as_local"] = answers[name] == answers["local"]
    extra_tokens = max(1, int(full["completion_tokens"]) - 1)
    summary["bytes"] = {
        "prompt_tokens": int(one["prompt_tokens"]),
        "prompt_bytes": prompt_bytes,
        "prompt_bytes_per_token": prompt_bytes / max(1, int(one["prompt_tokens"])),
        "answer_tokens": extra_tokens,
        "bytes_per_answer_token": answer_bytes / extra_tokens,
    }
    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "note": "shared machine (other engineers' jobs running): compare ratios, not absolutes"},
        "model": model.name, "runs": runs, "answer_tokens": tokens, "threads": THREADS, "n_ctx": N_CTX,
        "summary": summary, "rows": rows, "placement": placement,
    }


def write(report: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "workers.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    s = report["summary"]
    b = s["bytes"]
    lines = [
        "# One model over two RPC workers on 127.0.0.1",
        "",
        f"{report['model']}, greedy, {report['answer_tokens']}-token answers, {report['threads']} thread per "
        f"engine/worker, median of {report['runs']} interleaved runs. {report['machine']['note']}.",
        "",
        "| setup | TTFT (s) | decode tok/s | TTFT vs local | tok/s vs local | same answers |",
        "|---|---|---|---|---|---|",
        f"| local (all layers on this CPU) | {s['local']['ttft_s']:.3f} | {s['local']['tokens_per_s']:.1f} "
        "| 1 | 1 | - |",
    ]
    for name, label in (("gated", "two `paddock worker`s (with the gate)"), ("bare", "two bare ggml RPC servers")):
        r = s[name]
        lines.append(f"| {label} | {r['ttft_s']:.3f} | {r['tokens_per_s']:.1f} | {r['ttft_vs_local']:.2f} | "
                     f"{r['tokens_per_s_vs_local']:.2f} | {r['same_answers_as_local']} |")
    lines += [
        "",
        f"Bytes through the gates: a {b['prompt_tokens']}-token prompt {b['prompt_bytes']:,} bytes "
        f"({b['prompt_bytes_per_token']:,.0f} per prompt token); each answer token {b['bytes_per_answer_token']:,.0f} "
        "bytes (both ways, over both workers). Most of an answer token's bytes are its logits read back from the "
        "worker holding the output layer (vocabulary x 4 bytes: 49,152 x 4 = 196,608 for SmolLM2).",
        "",
        "Loopback measures the protocol's cost (serialising graphs, a round trip per worker per token), "
        "not a network's: across a LAN each token also pays the round trips.",
    ]
    (RESULTS / "workers.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    from scripts.test_models import smollm2

    os.environ["PADDOCK_HOME"] = tempfile.mkdtemp(prefix="paddock-bench-workers-")
    started = time.perf_counter()
    report = run(args.runs, args.tokens, Path(smollm2()))
    report["wall_s"] = round(time.perf_counter() - started, 1)
    write(report)
    print((RESULTS / "workers.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
