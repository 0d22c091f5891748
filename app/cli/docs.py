"""``paddock docs``: index documents into collections, search them, ask about them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.errors import PaddockError


def add_parser(sub: Any) -> None:
    docs = sub.add_parser("docs", help="index documents and ask questions about them")
    dsub = docs.add_subparsers(dest="docs_command", metavar="ACTION", required=True)

    add = dsub.add_parser("add", help="index files and folders into a collection")
    add.add_argument("--collection", required=True)
    add.add_argument("--embed-model", default="auto",
                     help="GGUF embedding model (path or library name); 'none' for keyword search only; "
                          "default: an embedding model from the library, if any")
    add.add_argument("paths", nargs="+", type=Path)

    search = dsub.add_parser("search", help="the passages that best match a query")
    search.add_argument("--collection", required=True)
    search.add_argument("--k", type=int, default=5)
    search.add_argument("--mode", choices=("hybrid", "bm25", "dense"), default="hybrid")
    search.add_argument("--json", action="store_true", help="a JSON list of {source, location, text, score}")
    search.add_argument("query")

    ask = dsub.add_parser("ask", help="answer a question from a collection, with citations")
    ask.add_argument("--collection", required=True)
    ask.add_argument("--model", required=True, help="path to a .gguf file, or a model in the library")
    ask.add_argument("--k", type=int, default=6, help="passages to retrieve when the documents do not fit whole")
    ask.add_argument("--max-tokens", type=int, default=512)
    ask.add_argument("--temperature", type=float, default=0.2)
    ask.add_argument("--seed", type=int, default=None)
    ask.add_argument("--ctx", type=int, default=None)
    ask.add_argument("--json", action="store_true")
    ask.add_argument("question")

    ls = dsub.add_parser("list", help="collections, or the documents of one")
    ls.add_argument("--collection", default=None)
    ls.add_argument("--json", action="store_true")

    rm = dsub.add_parser("rm", help="remove a document from a collection, or the whole collection")
    rm.add_argument("--collection", required=True)
    rm.add_argument("path", nargs="?", type=Path)


def _embed_model(value: str) -> Path | str | None:
    if value == "auto":
        return "auto"
    if value.lower() == "none":
        return None
    from app.models.library import loadable_model

    return loadable_model(value)


def run(args: argparse.Namespace) -> int:
    from app.docs.service import Documents

    # Only `add` chooses a collection's embedding model; the others use the one it was indexed with.
    embed: Path | str | None = _embed_model(args.embed_model) if args.docs_command == "add" else None
    docs = Documents(embed_model=embed)
    try:
        handler = {"add": _add, "search": _search, "ask": _ask, "list": _list, "rm": _rm}[args.docs_command]
        return handler(docs, args)
    finally:
        docs.close()


def _add(docs: Any, args: argparse.Namespace) -> int:
    collection = docs.collection_for(args.collection, create=True)
    if args.embed_model != "auto":
        model = docs.default_embed_model
        docs.index.set_embed_model(collection.id, str(model) if model else None)
        collection = docs.index.collection_by_id(collection.id)
    queued, skipped = docs.add(collection, args.paths)
    for _path, reason in skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    embedder = docs.embedder_for(docs.index.collection_by_id(collection.id))
    print(f"indexing {len(queued)} file(s) into {collection.name!r}"
          + (f" with embeddings from {embedder.name}" if embedder else " (keyword search only)"), file=sys.stderr)
    failed = []

    def on_change(doc: Any) -> None:
        if doc.state == "ready":
            note = f" ({doc.error})" if doc.error else ""
            print(f"  ok      {doc.name}: {doc.pages} page(s), {doc.n_chunks} chunk(s){note}", file=sys.stderr)
        elif doc.state == "failed":
            failed.append(doc)
            print(f"  failed  {doc.error}", file=sys.stderr)

    stats = docs.indexer.run_pending(on_change)
    print(f"{stats.documents} indexed, {stats.failed} failed, {stats.chunks} chunks in {stats.total_s:.1f} s",
          file=sys.stderr)
    return 1 if failed or (skipped and not queued) else 0


def _search(docs: Any, args: argparse.Namespace) -> int:
    collection = docs.collection_for(args.collection)
    if args.k <= 0:
        raise PaddockError("--k must be a positive number")
    if args.mode == "dense" and docs.embedder_for(collection) is None:
        raise PaddockError(f"collection {collection.name!r} has no embedding model: dense search is not possible")
    passages = docs.retriever.search([collection], args.query, k=args.k, mode=args.mode)
    if args.json:
        out = [{"source": p.source, "location": p.location, "text": p.text, "score": p.score, "path": p.path,
                "chunk_id": p.chunk_id, "start": p.start, "end": p.end} for p in passages]
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if not passages:
        print("no matching passages", file=sys.stderr)
    for number, p in enumerate(passages, start=1):
        print(f"[{number}] {p.label}  (score {p.score:.4f})")
        print("    " + p.text.strip().replace("\n", "\n    ")[:600])
        print()
    return 0


def _ask(docs: Any, args: argparse.Namespace) -> int:
    from app.docs.prompt import CHARS_PER_TOKEN, build_user_turn, cited_numbers
    from app.engine.client import Engine
    from app.engine.types import ChatMessage, LoadSettings, SamplingParams
    from app.models.library import loadable_model

    collection = docs.collection_for(args.collection)
    path = loadable_model(args.model)
    params = SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed)
    with Engine() as engine:
        loaded = engine.load(str(path), LoadSettings(n_ctx=args.ctx))
        budget = max(1000, (loaded.n_ctx - args.max_tokens - 300) * CHARS_PER_TOKEN)
        retrieval = docs.retriever.for_question([collection], args.question, budget, k=args.k)
        if retrieval.pending:
            print(f"note: {len(retrieval.pending)} document(s) are not indexed yet", file=sys.stderr)
        if not retrieval.passages:
            raise PaddockError(f"collection {collection.name!r} has no indexed text to answer from")
        prompt = build_user_turn(args.question, retrieval.passages)
        gen = engine.stream([ChatMessage("user", prompt)], params)
        for piece in gen:
            if not args.json:
                sys.stdout.write(piece)
                sys.stdout.flush()
        result = gen.result
        assert result is not None
    cited = cited_numbers(result.text, len(retrieval.passages))
    if args.json:
        print(json.dumps({
            "text": result.text,
            "cited": cited,
            "whole_documents": retrieval.whole,
            "sources": [{"number": i, "source": p.source, "location": p.location, "text": p.text}
                        for i, p in enumerate(retrieval.passages, start=1)],
        }, ensure_ascii=False))
        return 0
    sys.stdout.write("\n\nSources:\n")
    for number in cited or range(1, len(retrieval.passages) + 1):
        p = retrieval.passages[number - 1]
        sys.stdout.write(f"  [{number}] {p.label}\n")
    return 0


def _list(docs: Any, args: argparse.Namespace) -> int:
    if args.collection is None:
        rows: list[dict[str, Any]] = []
        for c in docs.index.collections():
            documents = docs.index.documents([c.id])
            rows.append({"name": c.name, "documents": len(documents),
                         "ready": sum(d.state == "ready" for d in documents), "embed_model": c.embed_model})
        if args.json:
            print(json.dumps(rows))
        for r in [] if args.json else rows:
            model = Path(r["embed_model"]).name if r["embed_model"] else "keyword search only"
            print(f"{r['name']}: {r['documents']} document(s), {r['ready']} ready; {model}")
        return 0
    collection = docs.collection_for(args.collection)
    documents = docs.index.documents([collection.id])
    if args.json:
        print(json.dumps([{"name": d.name, "path": d.path, "state": d.state, "error": d.error, "pages": d.pages,
                           "chunks": d.n_chunks} for d in documents]))
        return 0
    for d in documents:
        extra = f": {d.error}" if d.error else ""
        print(f"{d.state:9} {d.name} ({d.pages} page(s), {d.n_chunks} chunk(s)){extra}")
    return 0


def _rm(docs: Any, args: argparse.Namespace) -> int:
    collection = docs.collection_for(args.collection)
    if args.path is None:
        docs.index.delete_collection(collection.id)
        print(f"removed collection {collection.name!r}", file=sys.stderr)
        return 0
    wanted = str(args.path.expanduser().resolve())
    matches = [d for d in docs.index.documents([collection.id]) if d.path == wanted or d.name == args.path.name]
    if not matches:
        raise PaddockError(f"{args.path} is not in collection {collection.name!r}")
    for d in matches:
        docs.index.remove_document(d.id)
        print(f"removed {d.name}", file=sys.stderr)
    return 0
