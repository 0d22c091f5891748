"""Dense vectors for chunks and questions, from a GGUF embedding model.

The embedding model runs in its own engine process, not the chat engine's: a
folder being indexed never holds up an answer, and a crash in one does not
take the other down.  Models trained with task prefixes (nomic-embed, bge,
e5) get theirs; vectors are L2-normalised so a dot product is the cosine.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from app.engine.client import Engine
from app.engine.types import LoadSettings

Purpose = Literal["query", "document"]
BATCH = 16  # chunks per request: progress stays live, a query waits at most one batch

# (name fragment, query prefix, document prefix), from each model's card.
_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("nomic-embed", "search_query: ", "search_document: "),
    ("bge-", "Represent this sentence for searching relevant passages: ", ""),
    ("e5-", "query: ", "passage: "),
    ("mxbai-embed", "Represent this sentence for searching relevant passages: ", ""),
)


def prefixes(model_name: str) -> tuple[str, str]:
    lowered = model_name.lower()
    for fragment, query, document in _PREFIXES:
        if fragment in lowered:
            return query, document
    return "", ""


class Embedder:
    """An embedding model in its own engine process, started on first use.  Thread-safe."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        self.model_path = Path(model_path)
        self.name = self.model_path.name
        self.threads = threads
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self.query_prefix, self.document_prefix = prefixes(self.name)

    def _ensure(self) -> Engine:
        if self._engine is None or not self._engine.is_alive():
            engine = Engine()
            engine.load(str(self.model_path), LoadSettings(embedding=True, n_threads=self.threads, n_gpu_layers=0))
            self._engine = engine
        return self._engine

    def embed(self, texts: Sequence[str], purpose: Purpose = "document") -> np.ndarray:
        """A (len(texts), dim) float32 matrix of unit vectors.

        Raises:
            PaddockError: the model could not be loaded or the engine failed.
        """
        prefix = self.query_prefix if purpose == "query" else self.document_prefix
        with self._lock:
            engine = self._ensure()
            vectors, _ = engine.embed([prefix + t for t in texts])
        matrix = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
            self._engine = None
