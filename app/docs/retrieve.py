"""Finding the passages that answer a question.

Two retrievers, fused:
- keyword: SQLite FTS5 with BM25 over chunk text and location (always there);
- dense: cosine similarity of embedding vectors (when the collection has an
  embedding model), a brute-force matrix product, which at 100k chunks of
  768 floats is ~300 MB and a few ms; no approximate index is needed at
  desktop scale.
Reciprocal rank fusion (Cormack et al. 2009, k = 60) merges the two rankings
without having to calibrate BM25 scores against cosines.

Small document sets are given whole (every chunk, in order) when they fit the
context budget, which beats any retriever.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from app.docs.embed import Embedder
from app.docs.index import Collection, DocIndex, Document

Mode = Literal["hybrid", "bm25", "dense"]
RRF_K = 60
CANDIDATES = 50  # per retriever, before fusion

_STOPWORDS = frozenset(
    {
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "could", "did", "do", "does", "for", "from",
    "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on",
    "or", "our", "please", "should", "so", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will",
    "with", "would", "you", "your", "about", "tell", "give", "explain", "describe",
    }
)


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    document_id: int
    source: str  # the file name
    path: str
    location: str
    text: str
    score: float
    start: int
    end: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def label(self) -> str:
        return f"{self.source}, {self.location}" if self.location else self.source


@dataclass(frozen=True)
class Retrieval:
    passages: tuple[Passage, ...]
    whole: bool  # every chunk of the documents was given (they fit the context)
    ready: tuple[Document, ...]  # searched
    pending: tuple[Document, ...]  # not yet indexed when the question was asked
    failed: tuple[Document, ...]


def fts_query(text: str) -> str:
    """A safe FTS5 query: the question's words (no operators), OR'ed, as quoted terms."""
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]
    seen: dict[str, None] = dict.fromkeys(words)
    return " OR ".join(f'"{w}"' for w in seen)


class Retriever:
    """Args:
    index: the document index.
    embedder_for: the collection's embedding model, or None (keyword search only).
    """

    def __init__(self, index: DocIndex, embedder_for: Callable[[Collection], Embedder | None]) -> None:
        self.index = index
        self.embedder_for = embedder_for
        self._cache: dict[tuple[tuple[int, ...], str], tuple[int, list[int], np.ndarray]] = {}
        self._lock = threading.Lock()

    # -- ranking ---------------------------------------------------------------

    def bm25(self, collection_ids: Sequence[int], query: str, limit: int = CANDIDATES) -> list[tuple[int, float]]:
        match = fts_query(query)
        if not match or not collection_ids:
            return []
        marks = ",".join("?" * len(collection_ids))
        rows = self.index.db.query(
            "SELECT chunks_fts.rowid AS id, bm25(chunks_fts, 1.0, 0.5) AS rank FROM chunks_fts "
            "JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id "
            f"WHERE chunks_fts MATCH ? AND d.collection_id IN ({marks}) AND d.state = 'ready' "
            "ORDER BY rank LIMIT ?",
            (match, *collection_ids, limit),
        )
        return [(int(r["id"]), -float(r["rank"])) for r in rows]

    def dense(
        self, collection_ids: Sequence[int], query: str, embedder: Embedder, limit: int = CANDIDATES
    ) -> list[tuple[int, float]]:
        ids, matrix = self._matrix(collection_ids, embedder.name)
        if not ids:
            return []
        q = embedder.embed([query], "query")[0]
        if q.shape[0] != matrix.shape[1]:
            return []  # vectors from another model with the same file name: ignore them
        scores = matrix @ q
        order = np.argsort(-scores)[:limit]
        return [(ids[i], float(scores[i])) for i in order]

    def _matrix(self, collection_ids: Sequence[int], model: str) -> tuple[list[int], np.ndarray]:
        key = (tuple(sorted(collection_ids)), model)
        stamp = self._stamp(collection_ids, model)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1], cached[2]
        ids, matrix = self.index.vectors(list(key[0]), model)
        with self._lock:
            self._cache[key] = (stamp, ids, matrix)
        return ids, matrix

    def _stamp(self, collection_ids: Sequence[int], model: str) -> int:
        marks = ",".join("?" * len(collection_ids))
        rows = self.index.db.query(
            "SELECT count(*) AS n, COALESCE(max(v.chunk_id), 0) AS m FROM vectors v JOIN chunks c ON c.id = v.chunk_id "
            f"JOIN documents d ON d.id = c.document_id WHERE d.collection_id IN ({marks}) AND v.model = ? "
            "AND d.state = 'ready'",
            (*collection_ids, model),
        )
        return int(rows[0]["n"]) * 1_000_003 + int(rows[0]["m"])

    def search(self, collections: Sequence[Collection], query: str, k: int = 5, mode: Mode = "hybrid") -> list[Passage]:
        """The k best passages for a query.

        Raises:
            PaddockError: dense search was asked for and the embedding model failed.
        """
        ids = [c.id for c in collections]
        rankings: list[list[tuple[int, float]]] = []
        if mode in ("hybrid", "bm25"):
            rankings.append(self.bm25(ids, query))
        if mode in ("hybrid", "dense"):
            # one embedding model per search: the first collection's that has one
            embedder = next((e for e in (self.embedder_for(c) for c in collections) if e is not None), None)
            if embedder is not None:
                rankings.append(self.dense(ids, query, embedder))
        if len(rankings) == 1:
            ranked = rankings[0][:k]
        else:
            fused: dict[int, float] = {}
            for ranking in rankings:
                for rank, (chunk_id, _score) in enumerate(ranking):
                    fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
            ranked = sorted(fused.items(), key=lambda item: -item[1])[:k]
        return [p for p in (self._passage(cid, score) for cid, score in ranked) if p is not None]

    def _passage(self, chunk_id: int, score: float) -> Passage | None:
        rows = self.index.db.query(
            "SELECT c.*, d.name, d.path FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?",
            (chunk_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return Passage(
            r["id"], r["document_id"], r["name"], r["path"], r["location"], r["text"], round(score, 6),
            r["start"], r["end"],
        )

    # -- for a chat turn -------------------------------------------------------

    def for_question(
        self, collections: Sequence[Collection], question: str, budget_chars: int, k: int = 6
    ) -> Retrieval:
        """The passages to give the model for this question.

        Every chunk of the ready documents when they fit ``budget_chars``; else the
        top ``k`` of the hybrid search (as many as fit the budget).
        """
        docs = self.index.documents([c.id for c in collections])
        ready = tuple(d for d in docs if d.state == "ready")
        pending = tuple(d for d in docs if d.state in ("queued", "indexing"))
        failed = tuple(d for d in docs if d.state == "failed")
        chunks = [(d, c) for d in ready for c in self.index.chunks(d.id)]
        if ready and sum(len(c.text) for _d, c in chunks) <= budget_chars:
            passages = [Passage(c.id, d.id, d.name, d.path, c.location, c.text, 1.0, c.start, c.end)
                        for d, c in chunks]
            return Retrieval(tuple(passages), True, ready, pending, failed)
        found = self.search(collections, question, k=k) if ready else []
        kept: list[Passage] = []
        used = 0
        for p in found:
            if used + len(p.text) > budget_chars and kept:
                break
            kept.append(p)
            used += len(p.text)
        return Retrieval(tuple(kept), False, ready, pending, failed)
