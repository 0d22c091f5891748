"""Soak: the real window streams 200 answers over 10 chats, then quits through File > Quit.

    .venv/bin/python -m benchmarks.soak [--answers 200] [--chats 10] [--model PATH] [--trace-stalls] [--out DIR]

Runs the app as a user does, as its own process (``paddock --drive``, see
app/ui/autopilot.py), offscreen, with the SmolLM2 instruct model, and reports
what a long session does to it: GUI process memory growth, the drift of the
reference counts of None/True/False (PySide6 6.12 on Python 3.11 loses them
until the process aborts), the time to the window's first paint, event-loop
stalls from then on (a 5 ms heartbeat's lateness, p99 and max), garbage
collections by generation, and the exit code.  Writes soak.json and soak.md to
benchmarks/results/ (or --out); also run at the end of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.ui.autopilot import LONG_GC_MS, DrivePlan, run_driven
from benchmarks.engine_bench import RESULTS, save_results


def instruct_model() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from scripts.test_models import smollm2

    return smollm2()


def soak(model: Path, answers: int, chats: int, max_tokens: int = 48, trace_stalls: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="paddock-soak-") as tmp:
        plan = DrivePlan(model=str(model), answers=answers, chats=chats, max_tokens=max_tokens,
                         report=Path(tmp) / "report.json", checkpoint=max(1, answers // 4), trace_stalls=trace_stalls)
        started = time.perf_counter()
        run = run_driven(plan, home=Path(tmp) / "home")
        wall = time.perf_counter() - started
    report = run.report
    statuses = [a["status"] for a in report.get("answers", [])]
    drift = {k: report["refcounts_end"][k] - v for k, v in report.get("refcounts_start", {}).items()}
    return {
        "python": platform.python_version(),
        "pyside6": _pyside_version(),
        "exit_code": run.returncode,
        "fatal_error": run.fatal_error,
        "answers": len(statuses),
        "complete": statuses.count("complete"),
        "interrupted": statuses.count("interrupted"),
        "errors": report.get("errors", []),
        "tokens": sum(a["completion_tokens"] for a in report.get("answers", [])),
        "chats": len(report.get("conversations", [])),
        "rss_start_mb": report.get("rss_start_mb"),
        "rss_end_mb": report.get("rss_end_mb"),
        "rss_growth_mb": round(report.get("rss_end_mb", 0) - report.get("rss_start_mb", 0), 1),
        "refcount_drift": drift,
        "checkpoint": report.get("checkpoint", {}),
        "growth_after_checkpoint": report.get("growth", {}),
        "first_paint_s": report.get("first_paint_s"),
        "stall_p99_ms": report.get("stall_p99_ms"),
        "stall_max_ms": report.get("stall_max_ms"),
        "heartbeats": report.get("heartbeats"),
        "traced": trace_stalls,
        "long_stalls": report.get("long_stalls", []),
        "gc_pauses": report.get("gc_pauses", {}),
        "wall_s": round(wall, 1),
        "stderr_tail": run.stderr[-800:] if run.returncode else "",
    }


def _pyside_version() -> str:
    import PySide6

    return str(PySide6.__version__)


def render(r: dict[str, Any]) -> str:
    drift = ", ".join(f"{k} {v:+d}" for k, v in r["refcount_drift"].items())
    cp, growth = r.get("checkpoint", {}), r.get("growth_after_checkpoint", {})
    return "\n".join([
        f"# Soak: {r['answers']} streamed answers (up to {r['max_tokens']} tokens) over {r['chats']} chats "
        "in the real window",
        "",
        f"{r['date']} · {r['machine']} · commit {r['commit']} · Python {r['python']} · PySide6 {r['pyside6']} · "
        f"model {r['model']}",
        "",
        "| | |",
        "|---|---|",
        f"| exit code after File > Quit | {r['exit_code']}{' (Fatal Python error)' if r['fatal_error'] else ''} |",
        f"| answers: complete / stopped | {r['complete']} / {r['interrupted']} ({r['tokens']} tokens) |",
        f"| GUI process memory, first answer → last | {r['rss_start_mb']} → {r['rss_end_mb']} MB "
        f"({r['rss_growth_mb']:+.1f} MB) |",
        f"| reference counts, start → end (should not fall) | {drift} |",
        f"| memory growth from answer {cp.get('answers')} to the last (goal: under 10 MB) | "
        f"{growth.get('rss_mb', 0):+.1f} MB |",
        f"| reference counts, answer {cp.get('answers')} → last | "
        f"{', '.join(f'{k} {v:+d}' for k, v in growth.get('refcounts', {}).items())} |",
        f"| live objects that grew most, answer {cp.get('answers')} → last | "
        f"{', '.join(f'{k} {v:+d}' for k, v in list(growth.get('objects', {}).items())[:8])} |",
        f"| time to first paint (process start → the window first painted; the heartbeat starts after it) | "
        f"{r.get('first_paint_s')} s |",
        f"| event-loop stall (5 ms heartbeat lateness, first paint → Quit), p99 / max | {r['stall_p99_ms']} / "
        f"{r['stall_max_ms']} ms |",
        f"| garbage collections (count, longest) by generation 0 / 1 / 2 | {_gc_line(r.get('gc_pauses', {}))} |",
        f"| wall time | {r['wall_s']} s |",
        "",
        *(_long_stalls(r["long_stalls"]) if r.get("traced") else []),
        *_long_collections(r.get("gc_pauses", {})),
    ])


def _gc_line(pauses: dict[str, Any]) -> str:
    gens = pauses.get("by_generation", [])
    return " / ".join(f"{g['count']}, {g['max_ms']} ms" for g in gens) or "not recorded"


def _long_collections(pauses: dict[str, Any]) -> list[str]:
    """Each collection long enough to show as a stall (any thread's holds the interpreter lock)."""
    long = pauses.get("long", [])
    if not long:
        return []
    lines = [f"Garbage collections of {LONG_GC_MS} ms or more:", ""]
    lines += [f"- generation {c['generation']}, {c['ms']} ms at {c['at_s']} s, after {c['after_answers']} answers, "
              f"on thread {c['thread']} ({c['collected']} collected)" for c in long]
    return [*lines, ""]


def _long_stalls(traces: list[dict[str, Any]]) -> list[str]:
    """Where the GUI thread was during each stall over 50 ms (the autopilot's StallTracer)."""
    if not traces:
        return ["No stall lasted 50 ms or more.", ""]
    lines = ["Stalls of 50 ms or more, and where the GUI thread was (innermost frame last):", ""]
    for t in traces:
        lines.append(f"- {t.get('stall_ms', t['seen_late_ms'])} ms at {t['at_s']} s, after {t['after_answers']} "
                     f"answers: `{' → '.join(t['stack'][-4:])}`")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--chats", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=48,
                        help="per answer; histories grow with it, and each chat switch evaluates its history again")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--trace-stalls", action="store_true",
                        help="note where the GUI thread was during each stall over 50 ms (a diagnostic: see "
                             "app.ui.autopilot.StallTracer)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for soak.json and soak.md")
    args = parser.parse_args(argv)
    model = args.model or instruct_model()
    print(f"soak: {args.answers} answers over {args.chats} chats…", file=sys.stderr)
    result = soak(model, args.answers, args.chats, args.max_tokens, args.trace_stalls)
    result["max_tokens"] = args.max_tokens
    result.update({
        "date": time.strftime("%Y-%m-%d"), "model": model.name,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                                 text=True).stdout.strip(),
    })
    save_results("soak", result, render(result), args.out)
    return 0 if result["exit_code"] == 0 and not result["fatal_error"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
