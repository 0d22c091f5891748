"""No prompt token evaluated twice, and quoting answers faster than llama-bench.

    .venv/bin/python -m benchmarks.kv_reuse [--runs 5]

With the real instruct model (SmolLM2-135M-Instruct) on the engine API:

1. document chat: seven small documents given whole (~1,500 tokens); the time to
   first token of a follow-up question against the first question's;
2. chat switch A -> B -> A with ~2,000-token histories: A's time to first token
   when it comes back, and after a restart (a new engine, the state from disk),
   against A cold;
3. speculative decoding from prompt-lookup drafts: tokens/s of answers that quote
   the prompt (repeat a passage, rewrite a file with one line fixed) and of an
   answer that quotes nothing, each paired with a ``llama-bench`` tg run of the
   same length made just before it (same build, flags, threads), and with
   Paddock's plain decoding;
4. the memory and disk a kept state takes.

Writes benchmarks/results/kv_reuse.json and kv_reuse.md; also run by
``python -m benchmarks``.
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

from app.engine.client import Engine
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from benchmarks.engine_bench import kept_home, save_results
from benchmarks.engine_bench import median as med

TOPICS = ("bakery", "lighthouse", "orchard", "harbour", "observatory", "library", "vineyard")
PASSAGE = ("The lighthouse at Point Reyes was built in 1870. Its first-order Fresnel lens, made in France, "
           "has 1,032 pieces of glass and could be seen 24 miles out to sea. The keepers climbed 308 steps "
           "every evening to light the lamp and wind the clockwork that turned the lens. In 1975 the light "
           "was automated, and the old lens now turns only for visitors on weekends.")
CODE = "\n".join([
    "def area(width, height):",
    "    return width * height",
    "",
    "",
    "def perimeter(width, height):",
    "    return 2 * width + height",
    "",
    "",
    "def describe(width, height):",
    "    return f'{width} by {height}: area {area(width, height)}, perimeter {perimeter(width, height)}'",
])
SPEED_CASES = {
    "quotes a passage": f"Repeat this passage exactly, word for word:\n\n{PASSAGE}",
    "fixes a line of code": f"Fix the bug in perimeter and give the whole file back:\n\n```python\n{CODE}\n```",
    "quotes nothing": "Write a short story about a cat who learns to fly.",
}


def instruct_model() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from scripts.test_models import smollm2

    return smollm2()


def _history(tag: str, turns: int) -> list[ChatMessage]:
    msgs = []
    for i in range(turns):
        msgs += [ChatMessage("user", f"{tag} question {i}: tell me about item {i} of the {tag} list. " * 4),
                 ChatMessage("assistant", f"Item {i} of the {tag} list is a thing worth knowing about. " * 5)]
    return msgs


def documents_follow_up(model: Path, runs: int) -> dict[str, Any]:
    from app.docs.prompt import documents_turn
    from app.docs.service import Documents

    firsts, follows, rows = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="paddock-kv-") as tmp:
            os.environ["PADDOCK_HOME"] = str(Path(tmp) / "home")
            folder = Path(tmp) / "notes"
            folder.mkdir()
            for i, topic in enumerate(TOPICS):
                lines = [f"The {topic} opened in {1900 + i * 7} and has {12 + i} rooms."]
                lines += [f"Note {n} about the {topic}: visitors come on day {n + i} of each month."
                          for n in range(6)]
                (folder / f"{topic}.md").write_text(f"# The {topic}\n\n" + "\n\n".join(lines) + "\n")
            docs = Documents(embed_model=None)
            collection = docs.collection_for("notes", create=True)
            docs.add(collection, [folder])
            for doc in docs.index.documents([collection.id]):
                docs.indexer.index_document(doc)
            with Engine() as eng:
                loaded = eng.load(str(model), LoadSettings(n_ctx=8192))
                history: list[ChatMessage] = []
                earlier: list[dict[str, Any]] = []
                turn_rows = []
                for question in ("When did the orchard open?", "How many rooms has the harbour?",
                                 "When do visitors come to the library?"):
                    turn = documents_turn(docs.retriever, [collection], [*history, ChatMessage("user", question)],
                                          loaded.n_ctx, earlier)
                    result = eng.generate(turn.messages, SamplingParams(temperature=0.0, max_tokens=32, seed=1))
                    s = result.stats
                    turn_rows.append({"prompt": s.prompt_tokens, "evaluated": s.prompt_evaluated,
                                      "reused": s.prompt_reused, "ttft_s": s.ttft_s})
                    history = [*turn.messages, ChatMessage("assistant", result.text)]
                    earlier = turn.sources or earlier
            docs.close()
        firsts.append(turn_rows[0]["ttft_s"])
        follows.append(med([r["ttft_s"] for r in turn_rows[1:]]))
        rows = turn_rows
    first, follow = med(firsts), med(follows)
    return {"first_ttft_s": first, "follow_up_ttft_s": follow, "ratio": follow / first, "turns": rows}


def chat_switch(model: Path, runs: int) -> dict[str, Any]:
    a = [*_history("apple", 14), ChatMessage("user", "And the next one?")]
    b = [*_history("berry", 14), ChatMessage("user", "And the next one?")]
    params = SamplingParams(temperature=0.0, max_tokens=8, seed=1)
    cold, back, reopened, prompt = [], [], [], 0
    state_mb = disk_mb = 0.0
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="paddock-kv-") as tmp:
            os.environ["PADDOCK_HOME"] = str(Path(tmp) / "home")
            with Engine() as eng:
                eng.load(str(model), LoadSettings(n_ctx=8192))
                first = eng.generate(a, params)
                eng.generate(b, params)
                again = eng.generate(a, params)
            files = list((Path(tmp) / "home" / "cache" / "kv-states").glob("*.kvstate"))
            disk_mb = sum(f.stat().st_size for f in files) / 1e6
            state_mb = disk_mb / max(1, len(files))
            with Engine() as eng:
                eng.load(str(model), LoadSettings(n_ctx=8192))
                restarted = eng.generate(a, params)
        cold.append(first.stats.ttft_s)
        back.append(again.stats.ttft_s)
        reopened.append(restarted.stats.ttft_s)
        prompt = first.stats.prompt_tokens
        assert again.text == first.text == restarted.text
    c = med(cold)
    return {"history_tokens": prompt, "cold_ttft_s": c, "back_ttft_s": med(back), "back_ratio": med(back) / c,
            "reopen_ttft_s": med(reopened), "reopen_ratio": med(reopened) / c,
            "state_mb": state_mb, "disk_mb_two_chats": disk_mb, "state_kb_per_token": state_mb * 1000 / prompt}


def speculative(model: Path, runs: int) -> dict[str, Any]:
    from benchmarks.peer import build as build_peer
    from benchmarks.peer import llama_bench

    bin_dir = build_peer()
    threads = LoadSettings().n_threads or _physical_cores()
    out: dict[str, Any] = {}
    with Engine() as plain, Engine() as fast:
        common = {"n_ctx": 4096, "kept_states_ram_mb": 0, "kept_states_disk_mb": 0}
        plain.load(str(model), LoadSettings(prompt_lookup=False, **common))  # type: ignore[arg-type]
        fast.load(str(model), LoadSettings(prompt_lookup=True, **common))  # type: ignore[arg-type]
        for name, text in SPEED_CASES.items():
            params = SamplingParams(temperature=0.0, max_tokens=256, seed=1)
            msgs = [ChatMessage("user", text)]
            plain.generate(msgs, params)  # warm-up
            fast.generate(msgs, params)
            pairs, plain_pairs, accepted, n_tokens, same = [], [], [], 0, True
            for _ in range(runs):
                p = plain.generate(msgs, params)
                n_tokens = p.stats.completion_tokens
                bench = med(llama_bench(bin_dir, model, threads, 0, max(n_tokens, 16), 1))
                f = fast.generate(msgs, params)
                same = same and f.text == p.text
                pairs.append((f.stats.tokens_per_s, bench))
                plain_pairs.append((p.stats.tokens_per_s, bench))
                accepted.append(f.stats.draft_accepted / max(1, f.stats.completion_tokens))
            out[name] = {
                "tokens": n_tokens,
                "paddock_tokens_per_s": med([a for a, _ in pairs]),
                "plain_tokens_per_s": med([a for a, _ in plain_pairs]),
                "llama_bench_tokens_per_s": med([b for _, b in pairs]),
                "ratio": med([a / b for a, b in pairs]),
                "plain_ratio": med([a / b for a, b in plain_pairs]),
                "drafted_share": med(accepted),
                "identical_to_plain": same,
            }
    return out


def _physical_cores() -> int:
    from app.engine.hardware import physical_cores

    return physical_cores()


def render(r: dict[str, Any]) -> str:
    d, s, sp = r["documents"], r["switch"], r["speculative"]
    lines = [
        "# Kept states and speculative decoding",
        "",
        f"Measured {r['date']} on {r['machine']}, commit {r['commit']}, model {r['model']}; "
        f"median of {r['runs']} runs.",
        "",
        "| measure | Paddock | against | ratio | goal |",
        "|---|---|---|---|---|",
        f"| Document chat, follow-up TTFT vs first question (s) | {d['follow_up_ttft_s']:.3f} | "
        f"{d['first_ttft_s']:.3f} | {d['ratio']:.3f} | ≤ 0.1 |",
        f"| Chat switch A→B→A, A's TTFT vs cold ({s['history_tokens']} tokens, s) | {s['back_ttft_s']:.3f} | "
        f"{s['cold_ttft_s']:.3f} | {s['back_ratio']:.3f} | ≤ 0.1 |",
        f"| Reopened after a restart, TTFT vs cold (s) | {s['reopen_ttft_s']:.3f} | {s['cold_ttft_s']:.3f} | "
        f"{s['reopen_ratio']:.3f} | ≤ 0.1 |",
    ]
    for name, c in sp.items():
        goal = "≥ 0.97" if name == "quotes nothing" else "≥ 1.3"
        lines.append(
            f"| Decode, answer that {name} ({c['tokens']} tokens), tokens/s vs llama-bench tg{c['tokens']} | "
            f"{c['paddock_tokens_per_s']:.1f} | {c['llama_bench_tokens_per_s']:.1f} | {c['ratio']:.2f} | {goal} |"
        )
    lines += [
        "",
        "Speculative decoding detail (prompt-lookup drafts):",
        "",
        "| answer | tokens | drafted and kept | plain decoding vs llama-bench | with drafts vs llama-bench | "
        "output identical |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in sp.items():
        lines.append(f"| {name} | {c['tokens']} | {c['drafted_share']:.0%} | {c['plain_ratio']:.2f} | "
                     f"{c['ratio']:.2f} | {'yes' if c['identical_to_plain'] else 'NO'} |")
    lines += [
        "",
        f"A kept state of the {s['history_tokens']}-token chat takes {s['state_mb']:.1f} MB "
        f"({s['state_kb_per_token']:.1f} kB per token) in memory and on disk; two chats kept: "
        f"{s['disk_mb_two_chats']:.1f} MB on disk. Budgets: 1 GB of memory and 4 GB of disk by default "
        "(Settings).",
        "",
        "Document chat turns (last run):",
        "",
        "| turn | prompt | evaluated | reused | TTFT s |",
        "|---|---|---|---|---|",
    ]
    for i, t in enumerate(d["turns"], 1):
        lines.append(f"| {i} | {t['prompt']} | {t['evaluated']} | {t['reused']} | {t['ttft_s']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args(argv)
    model = args.model or instruct_model()
    with kept_home():
        report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     check=False).stdout.strip(),
            "model": model.name,
            "runs": args.runs,
        }
        print("document chat…", file=sys.stderr)
        report["documents"] = documents_follow_up(model, args.runs)
        print("chat switch and restart…", file=sys.stderr)
        report["switch"] = chat_switch(model, args.runs)
        print("speculative decoding…", file=sys.stderr)
        report["speculative"] = speculative(model, args.runs)
    save_results("kv_reuse", report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
