"""Whole-document answers against passages, on a generated log larger than the context.

    .venv/bin/python -m benchmarks.whole_docs [--model PATH] [--ctx 2048] [--files 4] [--records 16]

The corpus is written by this script (seeded): harbour incident logs in several
files and formats (Markdown, text, HTML, Word), each a series of records.  Some
records involve fog; each names a supplier, and suppliers are spread over all
files; each file opens with a line naming its own harbour.  The answers are
known by construction:

- list recall: "List every supplier named in these logs." — the share of the
  suppliers named that the answer contains;
- count exactness: "How many incidents involved fog?" — whether the number in
  the answer equals the number of fog records, and its error;
- summary coverage: "Summarise these logs." — the share of files whose harbour
  the summary mentions (facts from every document present).

Each question is answered in both modes on the same model, context and corpus:
passages (retrieval, what document chat does today) and whole documents
(``app/docs/whole.py``: map over every passage group, reduce).  Also reported:
time per answer, passages read, the map prompt's fixed part and how much of
every map prompt came from the KV cache, and a follow-up answered from the kept
map results.  The default model is SmolLM2-135M-Instruct (the test model): it
measures the machinery (coverage, exact counting of what was extracted, KV
reuse), not what a capable model extracts.

Writes benchmarks/results/whole_docs.json and whole_docs.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.engine_bench import RESULTS, kept_home, save_results

HARBOURS = ["Harwick", "Eldmoor", "Tarnby", "Quillon", "Brastow", "Fenwater", "Ostrel", "Mirrendale"]
SUPPLIERS = ["Calloway Ropes", "Dunmere Marine", "Ashgrove Paints", "Pellinor Diesel", "Rookhaven Nets",
             "Vintry Hoists", "Wexcombe Cables", "Yarrowby Fuel", "Glenarden Timber", "Hollin Buoys",
             "Kestrel Chandlers", "Lorn Welding", "Marbeck Pumps", "Zell Anchors"]
EVENTS = ["a crane stalled while lifting a container", "a mooring line parted at the outer berth",
          "a forklift struck a bollard", "a pump failed in the dry dock", "a pilot boat grazed the quay",
          "a hatch cover jammed on a bulk carrier", "a fuel hose leaked during bunkering",
          "a gangway slipped at low tide"]
WEATHER = ["clear skies", "light rain", "strong wind", "heavy swell", "overcast and calm"]
KINDS = ["md", "txt", "html", "docx"]

QUESTIONS = {
    "list": "List every supplier named in these logs.",
    "count": "How many incidents involved fog?",
    "summary": "Summarise these logs.",
}


@dataclass
class Truth:
    suppliers: set[str] = field(default_factory=set)
    fog: int = 0
    harbours: list[str] = field(default_factory=list)
    records: int = 0


def write_corpus(folder: Path, n_files: int = 4, records: int = 12, seed: int = 11) -> Truth:
    """Write the logs; the answers come back with them."""
    from tests.docfiles import write_docx

    rng = random.Random(seed)
    truth = Truth()
    number = 1000
    for f in range(n_files):
        harbour = HARBOURS[f % len(HARBOURS)]
        truth.harbours.append(harbour)
        kind = KINDS[f % len(KINDS)]
        entries = []
        for _ in range(records):
            number += rng.randint(1, 9)
            supplier = SUPPLIERS[rng.randrange(len(SUPPLIERS))]
            fog = rng.random() < 0.3
            weather = "thick fog" if fog else rng.choice(WEATHER)
            truth.suppliers.add(supplier)
            truth.fog += fog
            truth.records += 1
            entries.append(
                (f"Incident {number}",
                 f"Incident {number} at {harbour} harbour: {rng.choice(EVENTS)}. Weather: {weather}. "
                 f"Parts were supplied by {supplier}. The duty officer filed the report and the berth "
                 f"reopened after {rng.randint(1, 9)} hours; no one was hurt.")
            )
        intro = (f"Incident log of {harbour} harbour. This log records every incident at {harbour} harbour "
                 "this season, one record per incident.")
        name = f"{harbour.lower()}-log"
        if kind == "md":
            text = f"# {harbour} harbour\n\n{intro}\n\n" + "\n\n".join(f"## {h}\n\n{b}" for h, b in entries)
            (folder / f"{name}.md").write_text(text + "\n", encoding="utf-8")
        elif kind == "txt":
            text = f"{intro}\n\n" + "\n\n".join(b for _h, b in entries)
            (folder / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
        elif kind == "html":
            body = "".join(f"<h2>{h}</h2><p>{b}</p>" for h, b in entries)
            (folder / f"{name}.html").write_text(
                f"<html><body><h1>{harbour} harbour</h1><p>{intro}</p>{body}</body></html>", encoding="utf-8")
        else:
            write_docx(folder / f"{name}.docx", [(f"{harbour} harbour", [intro]), *[(h, [b]) for h, b in entries]])
    return truth


def first_number(text: str) -> int | None:
    m = re.search(r"\b(\d{1,4})\b", text.replace("**", ""))
    return int(m.group(1)) if m else None


def score(kind: str, text: str, truth: Truth, count: int | None = None) -> dict[str, Any]:
    low = text.lower()
    if kind == "list":
        named = sorted(s for s in truth.suppliers if s.lower() in low)
        return {"recall": len(named) / len(truth.suppliers), "found": len(named), "of": len(truth.suppliers)}
    if kind == "count":
        said = count if count is not None else first_number(text)
        return {"said": said, "truth": truth.fog, "exact": said == truth.fog,
                "abs_error": abs(said - truth.fog) if said is not None else None}
    covered = [h for h in truth.harbours if h.lower() in low]
    return {"coverage": len(covered) / len(truth.harbours), "documents": len(covered), "of": len(truth.harbours)}


def run(model: Path, ctx: int, n_files: int, records: int, kinds: tuple[str, ...] = tuple(QUESTIONS)
        ) -> dict[str, Any]:
    import os

    report: dict[str, Any] = {"model": model.name, "n_ctx": ctx, "files": n_files, "records_per_file": records}
    with kept_home(), tempfile.TemporaryDirectory() as tmp:
        os.environ["PADDOCK_HOME"] = str(Path(tmp) / "home")
        _run(report, Path(tmp), model, ctx, n_files, records, kinds)
    return report


def _run(report: dict[str, Any], tmp: Path, model: Path, ctx: int, n_files: int, records: int,
         kinds: tuple[str, ...]) -> None:
    from app.docs.prompt import CHARS_PER_TOKEN, build_user_turn
    from app.docs.service import Documents
    from app.docs.whole import WholeReader, WholeSettings
    from app.engine.client import Engine
    from app.engine.types import ChatMessage, LoadSettings, SamplingParams

    corpus = tmp / "logs"
    corpus.mkdir()
    truth = write_corpus(corpus, n_files, records)
    report["truth"] = {"suppliers": sorted(truth.suppliers), "fog": truth.fog, "records": truth.records,
                       "harbours": truth.harbours}
    docs = Documents(tmp / "docs.sqlite3", embed_model=None)
    try:
        collection = docs.collection_for("logs", create=True)
        docs.add(collection, [corpus])
        docs.indexer.run_pending(lambda _d: None)
        chars = sum(len(c.text) for d in docs.index.documents([collection.id]) for c in docs.index.chunks(d.id))
        with Engine() as engine:
            loaded = engine.load(str(model), LoadSettings(n_ctx=ctx))
            corpus_tokens = engine.count_tokens([ChatMessage("user", "\n".join(
                c.text for d in docs.index.documents([collection.id]) for c in docs.index.chunks(d.id)))])[0]
            report["corpus"] = {"chars": chars, "tokens": corpus_tokens, "context": loaded.n_ctx,
                                "times_context": round(corpus_tokens / loaded.n_ctx, 2)}
            reader = WholeReader(engine, docs.index, WholeSettings(map_tokens=160, reduce_tokens=256))
            rows: dict[str, Any] = {}
            for kind in kinds:
                question = QUESTIONS[kind]
                # passages: retrieval into one prompt, as `paddock docs ask --passages`
                max_tokens = 256
                budget = max(1000, (loaded.n_ctx - max_tokens - 300) * CHARS_PER_TOKEN)
                t = time.perf_counter()
                retrieval = docs.retriever.for_question([collection], question, budget)
                result = engine.generate([ChatMessage("user", build_user_turn(question, retrieval.passages))],
                                         SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0))
                passages = {"s": round(time.perf_counter() - t, 2), "passages_read": len(retrieval.passages),
                            **score(kind, result.text, truth), "text": result.text}
                t = time.perf_counter()
                answer = reader.answer([collection], question)
                whole = {"s": round(time.perf_counter() - t, 2), "passages_read": answer.passages_read,
                         "passages_total": answer.passages_total, "map_calls": answer.map_calls,
                         "reduce_calls": answer.reduce_calls, "fixed_prefix_tokens": answer.fixed_prefix_tokens,
                         "prompt_tokens": answer.prompt_tokens, "prompt_reused": answer.prompt_reused,
                         "map_prefix_reused": _prefix_reuse(answer),
                         **score(kind, answer.text, truth, answer.count), "text": answer.text,
                         "items": [i["text"] for i in answer.items],
                         "unverified": [i["text"] for i in answer.unverified]}
                t = time.perf_counter()
                again = reader.answer([collection], question)
                whole["follow_up_s"] = round(time.perf_counter() - t, 2)
                whole["follow_up_from_cache"] = again.passages_from_cache
                rows[kind] = {"question": question, "passages": passages, "whole": whole}
                print(f"{kind}: passages {passages['s']} s, whole {whole['s']} s", file=sys.stderr)
            report["questions"] = rows
    finally:
        docs.close()


def _prefix_reuse(answer: Any) -> float:
    """Prompt tokens taken from the KV cache over all calls of the answer, divided by the map
    prompt's fixed part times the map calls after the first, capped at 1.

    Each map prompt shares its fixed part (after the template's few header tokens) with the one
    before, so 1.0 means every later map call took at least that much from the cache.  The sum
    also holds the first call's and the reduce calls' reuse (the template header, a few tokens
    each), so this is an upper bound; ``prompt_reused`` / ``prompt_tokens`` are reported beside it."""
    later = answer.map_calls - 1
    if later <= 0 or not answer.fixed_prefix_tokens:
        return 0.0
    return float(min(1.0, answer.prompt_reused / (later * answer.fixed_prefix_tokens)))


def render(r: dict[str, Any]) -> str:
    c = r["corpus"]
    lines = [
        f"# Whole documents against passages ({r['date']}, commit {r['commit']})", "",
        f"{r['machine']}; model {r['model']}; context {c['context']} tokens; corpus {r['files']} files "
        f"({', '.join(KINDS[: r['files']])}), {r['truth']['records']} records, {c['tokens']} tokens "
        f"= {c['times_context']} × the context. {r['truth']['fog']} records involve fog; "
        f"{len(r['truth']['suppliers'])} suppliers are named. The machine was shared with other work while "
        "this ran: times are indicative, compare them within this run only.", "",
        "| question | mode | passages read | score | time s |", "|---|---|---|---|---|",
    ]
    for kind, q in r["questions"].items():
        for mode in ("passages", "whole"):
            row = q[mode]
            if kind == "list":
                value = f"recall {row['recall']:.2f} ({row['found']}/{row['of']})"
            elif kind == "count":
                value = f"said {row['said']}, truth {row['truth']}, exact {row['exact']}"
            else:
                value = f"coverage {row['coverage']:.2f} ({row['documents']}/{row['of']} documents)"
            read = (f"{row['passages_read']} of {row['passages_total']}" if mode == "whole"
                    else str(row["passages_read"]))
            lines.append(f"| {q['question']} | {mode} | {read} | {value} | {row['s']} |")
    commits = {k: q.get("commit", r["commit"]) for k, q in r["questions"].items()}
    if len(set(commits.values())) > 1:
        lines += ["", "Rows measured at different commits: " + ", ".join(f"{k} at {c}" for k, c in commits.items())
                  + "."]
    lines += ["", "| question | map calls | reduce calls | map prompt fixed part | fixed part reused from KV, "
              "later map calls | prompt tokens reused / total | follow-up from kept map results |",
              "|---|---|---|---|---|---|---|"]
    for q in r["questions"].values():
        w = q["whole"]
        lines.append(f"| {q['question']} | {w['map_calls']} | {w['reduce_calls']} | {w['fixed_prefix_tokens']} "
                     f"tokens | {100 * w['map_prefix_reused']:.0f} % | {w['prompt_reused']} / {w['prompt_tokens']} "
                     f"| {w['follow_up_from_cache']} passages, {w['follow_up_s']} s (first: {w['s']} s) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--questions", default=",".join(QUESTIONS),
                        help="which to measure (list,count,summary); a subset updates those rows of the last results")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.questions.split(",") if k)
    if not kinds or any(k not in QUESTIONS for k in kinds):
        parser.error(f"--questions takes some of {','.join(QUESTIONS)}")
    import psutil

    from scripts.test_models import smollm2

    model = args.model or smollm2()
    report = run(model, args.ctx, args.files, args.records, kinds)
    report["date"] = time.strftime("%Y-%m-%d")
    report["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                                      text=True).stdout.strip()
    for row in report["questions"].values():
        row["commit"] = report["commit"]
    last = RESULTS / "whole_docs.json"
    if set(kinds) != set(QUESTIONS) and last.exists():
        earlier = json.loads(last.read_text())
        same = ("model", "n_ctx", "files", "records_per_file")
        if all(earlier.get(k) == report[k] for k in same):
            report["questions"] = {**earlier.get("questions", {}), **report["questions"]}
            report["questions"] = {k: report["questions"][k] for k in QUESTIONS if k in report["questions"]}
    report["machine"] = (f"{platform.machine()}, {psutil.cpu_count(logical=False)} cores, "
                         f"{psutil.virtual_memory().total / 2**30:.0f} GiB")
    save_results("whole_docs", report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
