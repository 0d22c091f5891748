"""Predicted against measured speed: the placement planner's tokens/s before load vs the engine's after.

    .venv/bin/python -m benchmarks.placement_speed [--runs 3]

For the two test models (Gemma 3 270M Q4_K_M, SmolLM2 135M Q4_1) and a tiny MoE GGUF written
here (tests/gguf_files.py), each run measures this machine's memory bandwidth and matmul rate
(:func:`app.engine.speed.measure_cpu`) right before measuring the engine, so that prediction and
measurement see the same load on a shared machine; then predicts decode and prompt tokens/s from
the GGUF header alone (:mod:`app.engine.speed`) and measures them through the real engine: decode
from a 64-token greedy answer, prompt from a fresh ~400-token prompt's evaluation time.

Writes benchmarks/results/placement_speed.json and .md (ratios measured/predicted; goal 0.75-1.25).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from app.engine.client import Engine
from app.engine.gguf_file import read_gguf
from app.engine.hardware import detect, physical_cores
from app.engine.placement import ModelTable, plan
from app.engine.speed import measure_cpu, predict
from app.engine.types import LoadSettings, SamplingParams
from benchmarks.engine_bench import COUNTING, RESULTS, fresh_prompt, test_model

N_CTX = 2048


def models(folder: Path) -> dict[str, Path]:
    from scripts.test_models import smollm2
    from tests.gguf_files import tiny_moe

    smol = smollm2()
    return {"Gemma 3 270M Q4_K_M": test_model(), "SmolLM2 135M Q4_1": smol,
            "tiny MoE (4 experts, 2 used)": tiny_moe(smol, folder / "tiny-moe.gguf")}


def measure(eng: Engine, path: Path, threads: int, run: int) -> dict[str, float]:
    eng.load(str(path), LoadSettings(n_ctx=N_CTX, n_threads=threads))
    cpu = measure_cpu(threads)
    table = ModelTable.from_info(read_gguf(path))
    placement = plan(table, detect(), n_ctx=N_CTX)
    greedy = SamplingParams(temperature=0.0, max_tokens=64, seed=run)
    answer = eng.generate([], greedy, raw_prompt=COUNTING)
    prompt = eng.generate([], SamplingParams(temperature=0.0, max_tokens=1), raw_prompt=fresh_prompt(run, 400))
    cpu_after = measure_cpu(threads)
    mean_cpu = type(cpu)(cpu.name, (cpu.bandwidth + cpu_after.bandwidth) / 2, (cpu.flops + cpu_after.flops) / 2)
    pred = predict(table, placement, mean_cpu, None, kv_tokens=32)
    return {
        "bandwidth_gb_s": mean_cpu.bandwidth / 1e9,
        "predicted_decode": pred.decode_tokens_per_s,
        "measured_decode": answer.stats.tokens_per_s,
        "predicted_prompt": pred.prompt_tokens_per_s,
        "measured_prompt": prompt.stats.prompt_evaluated / max(prompt.stats.ttft_s, 1e-6),
        "active_bytes": table.active_bytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = args.threads or physical_cores()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Engine() as eng:
        for name, path in models(Path(tmp)).items():
            runs = [measure(eng, path, threads, i) for i in range(args.runs)]
            row = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            row["decode_ratio"] = statistics.median(r["measured_decode"] / r["predicted_decode"] for r in runs)
            row["prompt_ratio"] = statistics.median(r["measured_prompt"] / r["predicted_prompt"] for r in runs)
            rows[name] = row
            print(name, json.dumps(row))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "placement_speed.json").write_text(json.dumps({"threads": threads, "models": rows}, indent=2))
    lines = ["| model | bytes/token | GB/s | decode predicted | measured | ratio "
             "| prompt predicted | measured | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['active_bytes'] / 1e6:.0f} MB | {r['bandwidth_gb_s']:.1f} | "
                     f"{r['predicted_decode']:.0f} | {r['measured_decode']:.0f} | {r['decode_ratio']:.2f} | "
                     f"{r['predicted_prompt']:.0f} | {r['measured_prompt']:.0f} | {r['prompt_ratio']:.2f} |")
    (RESULTS / "placement_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
