"""Decode speed of answers that quote nothing and of answers that quote, against llama-bench, in one run.

    .venv/bin/python -m benchmarks.decode_speed [--runs 5]

Both test models (Gemma 3 270M base, the ``test_model`` of the tests, as a raw
completion; SmolLM2-135M-Instruct through its chat template), greedy:

1. plain answers, short (33 tokens) and long (256 tokens), that quote nothing:
   the app's own per-token work and any draft that does not pay show here;
2. answers that quote their prompt (a passage repeated), where prompt-lookup
   drafts should pay.

Each run of each case is four measurements in a row: ``llama-bench`` decoding
as many tokens as the answer has after as many as its prompt has (same build,
flags and threads, ``tg<n> @ d<prompt>``),
Paddock with prompt-lookup drafts, then ``llama-bench`` again and Paddock
without drafts (the two Paddock runs swap places every other run).  Each
Paddock figure is divided by the llama-bench figure measured just before it;
the table gives the medians of those ratios.  This machine is shared (other
engineers' tests run on its 2 cores), so only ratios measured side by side mean
anything; the load average during each case is recorded next to it.

Writes benchmarks/results/decode_speed.json and decode_speed.md; also run by
``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine.client import Engine
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from benchmarks.engine_bench import RESULTS, save_results, test_model
from benchmarks.engine_bench import median as med
from benchmarks.kv_reuse import CODE, PASSAGE, instruct_model
from benchmarks.peer import build as build_peer
from benchmarks.peer import llama_bench

STORY = "Once upon a time, in a village by the sea,"


@dataclass(frozen=True)
class Case:
    model: str  # "gemma" or "smollm2"
    name: str
    text: str
    max_tokens: int
    kind: str = "plain"  # "plain" (quotes nothing), "quote" (repeats its prompt) or "rewrite" (quotes in part)


CASES = (
    Case("gemma", "plain, short", STORY, 33),
    Case("gemma", "plain, long", "The history of the Roman Empire begins", 256),
    Case("gemma", "quotes a passage", f"{PASSAGE}\n\nThe same passage, copied word for word:\n\n", 96, "quote"),
    Case("smollm2", "plain, short", "Write a short story about a cat who learns to fly.", 33),
    Case("smollm2", "plain, long", "Write a short story about a cat who learns to fly.", 256),
    Case("smollm2", "quotes a passage", f"Repeat this passage exactly, word for word:\n\n{PASSAGE}", 256, "quote"),
    Case("smollm2", "rewrites code",
         f"Fix the bug in perimeter and give the whole file back:\n\n```python\n{CODE}\n```", 256, "rewrite"),
)
GOALS = {"plain": "≥ 0.97", "quote": "≥ 1.3 with drafts", "rewrite": "≥ 1.0 with drafts"}


def _generate(eng: Engine, case: Case) -> Any:
    params = SamplingParams(temperature=0.0, max_tokens=case.max_tokens, seed=1)
    if case.model == "gemma":
        return eng.generate([], params, raw_prompt=case.text)
    return eng.generate([ChatMessage("user", case.text)], params)


def measure(case: Case, model: Path, on: Engine, off: Engine, bin_dir: Path, threads: int,
            runs: int) -> dict[str, Any]:
    warm_on, warm_off = _generate(on, case), _generate(off, case)  # warm-up (and the answer's length)
    n = warm_off.stats.completion_tokens
    depth = warm_off.stats.prompt_tokens  # llama-bench decodes after as many tokens as the prompt has
    pairs: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    drafted, kept, loads, same = [], [], [], warm_on.text == warm_off.text
    own: dict[str, list[float]] = {"on": [], "off": []}  # seconds of Paddock's own work per answer token
    shares: dict[str, list[float]] = {"on": [], "off": []}  # llama_decode's share of the answer's time
    client: list[float] = []  # CPU this process (the engine's client) used, as a share of the wall time
    for i in range(runs):
        loads.append(os.getloadavg()[0])
        for which in (("on", "off") if i % 2 == 0 else ("off", "on")):
            peer = med(llama_bench(bin_dir, model, threads, 0, n, 1, depth))
            cpu, wall = time.process_time(), time.perf_counter()
            result = _generate(on if which == "on" else off, case)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            pairs[which].append((result.stats.tokens_per_s, peer))
            stats = result.stats
            answer_s = stats.total_s - stats.ttft_s  # from the first answer token to the last
            if stats.completion_tokens > 1 and answer_s > 0:
                # drift-immune: both parts of one answer's time, measured together in the engine
                own[which].append((answer_s - stats.decode_s) / (stats.completion_tokens - 1))
                shares[which].append(stats.decode_s / answer_s)
            client.append(cpu / wall)
            if which == "on":
                drafted.append(result.stats.draft_tokens)
                kept.append(result.stats.draft_accepted / max(1, result.stats.completion_tokens))
                same = same and result.text == warm_off.text
    return {
        "model": case.model, "case": case.name, "kind": case.kind, "tokens": n, "prompt_tokens": depth,
        "finish": warm_off.stats.finish_reason,
        "on_tok_s": med([a for a, _ in pairs["on"]]), "off_tok_s": med([a for a, _ in pairs["off"]]),
        "llama_bench_tok_s": med([b for _, b in pairs["on"] + pairs["off"]]),
        "on_ratio": med([a / b for a, b in pairs["on"]]), "off_ratio": med([a / b for a, b in pairs["off"]]),
        "on_ratios": [round(a / b, 3) for a, b in pairs["on"]],
        "off_ratios": [round(a / b, 3) for a, b in pairs["off"]],
        "drafted": med(drafted), "drafted_kept_share": med(kept), "identical": same,
        "own_us_on": med(own["on"]) * 1e6, "own_us_off": med(own["off"]) * 1e6,
        "decode_share_on": med(shares["on"]), "decode_share_off": med(shares["off"]),
        "decode_shares_off": [round(x, 4) for x in shares["off"]], "client_cpu": med(client),
        "load_median": med(loads), "load_max": max(loads),
    }


def run(runs: int) -> dict[str, Any]:
    bin_dir = build_peer()
    models = {"gemma": test_model(), "smollm2": instruct_model()}
    common = {"n_ctx": 4096, "kept_states_ram_mb": 0, "kept_states_disk_mb": 0}
    default_on = LoadSettings().prompt_lookup
    rows = []
    for key, model in models.items():
        with Engine() as on, Engine() as off:
            loaded = on.load(str(model), LoadSettings(prompt_lookup=True, **common))  # type: ignore[arg-type]
            off.load(str(model), LoadSettings(prompt_lookup=False, **common))  # type: ignore[arg-type]
            for case in CASES:
                if case.model == key:
                    print(f"{key}: {case.name}…", file=sys.stderr)
                    rows.append(measure(case, model, on, off, bin_dir, loaded.n_threads, runs))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 check=False).stdout.strip(),
        "models": {k: m.name for k, m in models.items()},
        "runs": runs, "threads": loaded.n_threads, "prompt_lookup_default": default_on, "cases": rows,
    }


def render(r: dict[str, Any]) -> str:
    default = "on" if r["prompt_lookup_default"] else "off"
    lines = [
        "# Decode speed against llama-bench: plain and quoting answers, drafts on and off",
        "",
        f"Measured {r['date']} on {r['machine']} ({r['threads']} threads), commit {r['commit']}; models "
        f"{r['models']['gemma']} (raw completion) and {r['models']['smollm2']} (chat), greedy. Each figure is "
        f"the median of {r['runs']} ratios, each Paddock run divided by a llama-bench run decoding as many "
        "tokens after as many (tg<answer> @ d<prompt>), made just before it. Prompt-lookup drafts are "
        + default + " by default.",
        "",
        "| model | answer | prompt + answer tokens | drafts on / llama-bench | drafts off / llama-bench | goal | "
        "drafted (kept share) | same text | load avg (max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["cases"]:
        goal = GOALS[c["kind"]]
        lines.append(
            f"| {c['model']} | {c['case']} | {c['prompt_tokens']} + {c['tokens']} | {c['on_ratio']:.3f} | "
            f"{c['off_ratio']:.3f} | {goal} | "
            f"{c['drafted']:.0f} ({c['drafted_kept_share']:.0%}) | {'yes' if c['identical'] else 'NO'} | "
            f"{c['load_median']:.1f} ({c['load_max']:.1f}) |"
        )
    lines += [
        "",
        "## Paddock's own work on each token, measured inside the engine",
        "",
        "The ratios above divide two runs made seconds apart, and this machine's speed drifts by 10–20 % "
        "within seconds, so a single ratio ranges ±10 %. The engine also times, within each answer, the "
        "calls to `llama_decode` (what llama-bench times) against the answer's whole time from its first "
        "token to its last: what is left is Paddock's own work (sampling, text, stop strings, drafting, "
        "sending), measured on the same tokens at the same moment, so drift cancels out. The engine's "
        "client (this process, reading the stream) runs beside it and takes the CPU shown.",
        "",
        "| model | answer | llama_decode's share of the answer, drafts off | Paddock's own work per token, "
        "drafts on / off | the client's CPU |",
        "|---|---|---|---|---|",
    ]
    for c in r["cases"]:
        lines.append(
            f"| {c['model']} | {c['case']} | {c['decode_share_off']:.3f} | "
            f"{c['own_us_on']:.0f} / {c['own_us_off']:.0f} µs | {c['client_cpu']:.1%} |"
        )
    lines += [
        "",
        "Tokens/s (medians): " + "; ".join(
            f"{c['model']} {c['case']}: {c['on_tok_s']:.1f} on, {c['off_tok_s']:.1f} off, "
            f"llama-bench {c['llama_bench_tok_s']:.1f}" for c in r["cases"]) + ".",
        "",
        "Per-run ratios (drafts on | off): " + "; ".join(
            f"{c['model']} {c['case']}: {c['on_ratios']} | {c['off_ratios']}" for c in r["cases"]) + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for decode_speed.json and .md")
    args = parser.parse_args(argv)
    report = run(args.runs)
    save_results("decode_speed", report, render(report), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
