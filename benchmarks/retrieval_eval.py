"""Retrieval quality and indexing throughput on a generated corpus.

    .venv/bin/python -m benchmarks.retrieval_eval [--embed-model PATH] [--docs 40]

The corpus is written by this script (seeded, so every run is the same): PDFs,
Word files, HTML, Markdown and text about fictional places, each with a few
facts buried among look-alike paragraphs that share the facts' vocabulary.
Every question paraphrases one fact and names the passage that answers it.
Reported per retriever (BM25, dense, hybrid): recall@5 (the answering passage
is among the first five) and MRR@10; and indexing throughput (pages/s,
chunks/s) with and without embeddings.

Dense retrieval needs an embedding model.  Without ``--embed-model`` the test
model (Gemma 3 270M, a chat model, mean-pooled) stands in: that measures the
wiring, not what a real embedder (nomic-embed, bge) achieves; the report says
which model was used.

Writes benchmarks/results/retrieval.json and retrieval.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.docs.service import Documents
from benchmarks.engine_bench import RESULTS, test_model

PLACES = ["Harwick", "Eldmoor", "Tarnby", "Quillon", "Brastow", "Fenwater", "Ostrel", "Mirrendale", "Calloway",
          "Dunmere", "Ashgrove", "Pellinor", "Rookhaven", "Sallow Cross", "Vintry", "Wexcombe", "Yarrowby", "Zell",
          "Glenarden", "Hollin", "Kestrel Bay", "Lorn", "Marbeck", "Norwood Fell"]
COLOURS = ["green", "crimson", "ochre", "slate blue", "white", "black", "amber", "violet"]
MATERIALS = ["granite", "oak", "cast iron", "limestone", "brick", "basalt", "larch", "sandstone"]
MONTHS = ["January", "March", "April", "June", "August", "September", "October", "December"]

# (fact sentence, question, the words that prove the passage answers it)
FACTS = [
    ("The footbridge at {p} was painted {c} in {y}, after the flood.",
     "What colour is the {p} footbridge?", "{c}"),
    ("{p} library keeps its rarest maps in a vault built from {m}.",
     "What material is the map vault of {p} library made of?", "{m}"),
    ("The {p} cheese fair is held every {mo}, on the second weekend.",
     "In which month does {p} hold its cheese fair?", "{mo}"),
    ("Trains from {p} to the coast take {n} minutes on the slow line.",
     "How long is the slow train ride from {p} to the coast?", "{n} minutes"),
    ("The lighthouse of {p} shows a flash every {n} seconds.",
     "How often does the {p} lighthouse flash?", "{n} seconds"),
    ("{p} brewery uses water from a spring {n} metres underground.",
     "How deep is the spring that supplies the {p} brewery?", "{n} metres"),
]
FILLER = [
    "Visitors to {p} often mention the colours of the old houses and the bridges over the canal.",
    "The council of {p} debated the library budget and the maintenance of its stone buildings.",
    "Many towns near {p} hold fairs and markets through the year, some in spring and some in autumn.",
    "The railway timetable for the region changes twice a year; journeys to the coast vary in length.",
    "Lighthouses along this coast were automated long ago, and their keepers' cottages became museums.",
    "Local breweries advertise their water, their springs and their wells with great pride.",
    "The history society of {p} publishes a newsletter about paint, materials and restoration work.",
    "Tourist offices recommend walking tours that pass the library, the brewery and the harbour.",
]
KINDS = ["md", "pdf", "docx", "html", "txt"]


@dataclass
class Question:
    text: str
    document: str
    needle: str


def write_corpus(folder: Path, n_docs: int, seed: int = 7) -> tuple[list[Question], int]:
    """Write the corpus; returns the questions and the number of pages."""
    from tests.docfiles import write_docx, write_pdf

    rng = random.Random(seed)
    questions: list[Question] = []
    pages = 0
    for i in range(n_docs):
        place = PLACES[i % len(PLACES)] + ("" if i < len(PLACES) else f" {i // len(PLACES) + 1}")
        kind = KINDS[i % len(KINDS)]
        sections: list[tuple[str, list[str]]] = []
        for s, (fact, question, needle) in enumerate(rng.sample(FACTS, 3)):
            values = {"p": place, "c": rng.choice(COLOURS), "m": rng.choice(MATERIALS), "mo": rng.choice(MONTHS),
                      "y": rng.randint(1850, 1990), "n": rng.randint(7, 95)}
            paragraphs = [f.format(**values) for f in rng.sample(FILLER, 3)]
            paragraphs.insert(rng.randint(0, 3), fact.format(**values))
            paragraphs += [f.format(**values) for f in rng.sample(FILLER, 2)]
            sections.append((f"Part {s + 1}", paragraphs))
            questions.append(Question(question.format(**values), f"{i:02d}-{kind}", needle.format(**values)))
        name = f"{i:02d}-{kind}"
        title = f"Notes on {place}"
        if kind == "pdf":
            write_pdf(folder / f"{name}.pdf", [f"{h}\n\n" + "\n\n".join(ps) for h, ps in sections])
            pages += len(sections)
        elif kind == "docx":
            write_docx(folder / f"{name}.docx", sections, title=title)
            pages += 1
        elif kind == "html":
            body = "".join(f"<h2>{h}</h2>" + "".join(f"<p>{p}</p>" for p in ps) for h, ps in sections)
            (folder / f"{name}.html").write_text(f"<html><body><h1>{title}</h1>{body}</body></html>")
            pages += 1
        elif kind == "md":
            body = "\n\n".join(f"## {h}\n\n" + "\n\n".join(ps) for h, ps in sections)
            (folder / f"{name}.md").write_text(f"# {title}\n\n{body}\n")
            pages += 1
        else:
            (folder / f"{name}.txt").write_text(title + "\n\n" + "\n\n".join(p for _h, ps in sections for p in ps))
            pages += 1
    return questions, pages


def evaluate(docs: Documents, questions: list[Question], mode: str) -> dict[str, float]:
    collection = docs.collection_for("eval")
    recall5 = 0
    rr = 0.0
    started = time.perf_counter()
    for q in questions:
        hits = docs.retriever.search([collection], q.text, k=10, mode=mode)  # type: ignore[arg-type]
        rank = next((i for i, h in enumerate(hits, start=1)
                     if h.source.startswith(q.document) and q.needle in h.text), None)
        if rank is not None:
            rr += 1.0 / rank
            recall5 += rank <= 5
    elapsed = time.perf_counter() - started
    return {"recall@5": recall5 / len(questions), "mrr@10": rr / len(questions),
            "ms_per_query": 1000 * elapsed / len(questions)}


def run_index(folder: Path, db: Path, embed: Path | None) -> tuple[Documents, dict[str, float]]:
    docs = Documents(db, embed_model=embed)
    collection = docs.collection_for("eval", create=True)
    docs.add(collection, [folder])
    started = time.perf_counter()
    stats = docs.indexer.run_pending()
    elapsed = time.perf_counter() - started
    return docs, {"documents": stats.documents, "pages": stats.pages, "chunks": stats.chunks,
                  "seconds": elapsed, "pages_per_s": stats.pages / elapsed, "chunks_per_s": stats.chunks / elapsed,
                  "embed_s": stats.embed_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embed-model", type=Path, default=None)
    parser.add_argument("--docs", type=int, default=40)
    args = parser.parse_args()
    embed = args.embed_model or test_model()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        folder.mkdir()
        questions, _pages = write_corpus(folder, args.docs)
        docs, keyword_stats = run_index(folder, Path(tmp) / "bm25.sqlite3", None)
        docs.close()
        docs, dense_stats = run_index(folder, Path(tmp) / "dense.sqlite3", embed)
        try:
            results = {mode: evaluate(docs, questions, mode) for mode in ("bm25", "dense", "hybrid")}
        finally:
            docs.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                            text=True).stdout.strip()
    report = {
        "date": time.strftime("%Y-%m-%d"), "commit": commit, "machine": platform.processor() or platform.machine(),
        "embed_model": embed.name, "documents": args.docs, "questions": len(questions),
        "retrieval": results, "indexing_keyword_only": keyword_stats, "indexing_with_embeddings": dense_stats,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Retrieval evaluation ({report['date']}, commit {commit})", "",
        f"{args.docs} generated documents (PDF, DOCX, HTML, Markdown, text), {len(questions)} questions; "
        f"embedding model: `{embed.name}`.", "",
        "| retriever | recall@5 | MRR@10 | ms/query |", "|---|---|---|---|",
    ]
    for mode, r in results.items():
        lines.append(f"| {mode} | {r['recall@5']:.2f} | {r['mrr@10']:.2f} | {r['ms_per_query']:.1f} |")
    lines += ["", "| indexing | pages/s | chunks/s | total s |", "|---|---|---|---|"]
    for label, s in (("keyword only (extract, chunk, FTS5)", keyword_stats), ("with embeddings", dense_stats)):
        lines.append(f"| {label} | {s['pages_per_s']:.1f} | {s['chunks_per_s']:.1f} | {s['seconds']:.1f} |")
    (RESULTS / "retrieval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
