"""Indexing: extract (isolated), chunk, store with FTS5, embed (own process).

No Qt here: the GUI runs :meth:`Indexer.run_pending` on a worker thread, the CLI
on its main thread.  Every document is independent: one that fails is marked
``failed`` with its reason and the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.docs.chunk import chunk_blocks, document_text
from app.docs.embed import BATCH, Embedder
from app.docs.index import Collection, DocIndex, Document, file_sha256
from app.docs.isolate import Extractor
from app.errors import DocumentError, PaddockError

log = logging.getLogger(__name__)

EXTRACTED_AT = 0.3  # progress after extraction; chunking and storing take it to this + 0.1, embedding to 1


@dataclass
class IndexStats:
    documents: int = 0
    failed: int = 0
    pages: int = 0
    chunks: int = 0
    extract_s: float = 0.0
    embed_s: float = 0.0
    total_s: float = 0.0


EmbedderFor = Callable[[Collection], Embedder | None]


class Indexer:
    """Args:
    index: the document index.
    extractor: runs the extractors in an isolated process.
    embedder_for: the embedding model for a collection, or None for keyword search only.
    """

    def __init__(self, index: DocIndex, extractor: Extractor, embedder_for: EmbedderFor) -> None:
        self.index = index
        self.extractor = extractor
        self.embedder_for = embedder_for
        self.stats = IndexStats()

    def run_pending(
        self,
        on_change: Callable[[Document], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> IndexStats:
        """Index every queued document (including ones queued while this runs)."""
        started = time.perf_counter()
        while not should_stop():
            pending = self.index.pending()
            if not pending:
                break
            self.index_document(pending[0], on_change, should_stop)
        self.stats.total_s += time.perf_counter() - started
        return self.stats

    def index_document(
        self,
        doc: Document,
        on_change: Callable[[Document], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        def changed() -> None:
            if on_change is not None:
                with contextlib.suppress(PaddockError):  # removed meanwhile
                    on_change(self.index.document(doc.id))

        self.index.set_state(doc.id, "indexing", 0.02)
        changed()
        path = Path(doc.path)
        t0 = time.perf_counter()
        try:
            extracted = self.extractor.extract(path)
            sha = file_sha256(path)
        except (DocumentError, OSError) as exc:
            message = str(exc) if isinstance(exc, DocumentError) else f"cannot read {path.name}: {exc}"
            self._fail(doc, message)
            changed()
            return
        self.stats.extract_s += time.perf_counter() - t0
        chunks = chunk_blocks(extracted.blocks)
        try:
            self.index.document(doc.id)
        except PaddockError:
            return  # removed while it was being read
        self.index.store_chunks(
            doc.id, document_text(extracted.blocks), chunks, kind=extracted.kind, pages=extracted.pages, sha256=sha
        )
        self.index.set_progress(doc.id, EXTRACTED_AT + 0.1)
        changed()
        warning = None
        collection = self.index.collection_by_id(doc.collection_id)
        embedder = self.embedder_for(collection)
        if embedder is not None:
            try:
                self.embed_document(doc.id, embedder, changed, should_stop)
            except PaddockError as exc:
                warning = f"keyword search only: the embedding model failed ({exc})"
                log.warning("embedding %s failed: %s", doc.name, exc)
        if should_stop():
            self.index.set_state(doc.id, "queued", 0)  # redone next time
            return
        self.index.set_state(doc.id, "ready", 1.0, error=warning)
        self.stats.documents += 1
        self.stats.pages += extracted.pages
        self.stats.chunks += len(chunks)
        changed()

    def embed_document(
        self,
        doc_id: int,
        embedder: Embedder,
        changed: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        todo = self.index.chunks_without_vectors(doc_id, embedder.name)
        total = max(len(todo), 1)
        t0 = time.perf_counter()
        for start in range(0, len(todo), BATCH):
            if should_stop():
                return
            batch = todo[start : start + BATCH]
            vectors = embedder.embed([c.text for c in batch], "document")
            self.index.store_vectors(embedder.name, [(c.id, v) for c, v in zip(batch, vectors, strict=True)])
            done = start + len(batch)
            self.index.set_progress(doc_id, EXTRACTED_AT + 0.1 + (0.9 - EXTRACTED_AT) * done / total)
            changed()
        self.stats.embed_s += time.perf_counter() - t0

    def _fail(self, doc: Document, message: str) -> None:
        log.info("not indexed: %s", message)
        self.index.set_state(doc.id, "failed", 0, error=message)
        self.stats.failed += 1
