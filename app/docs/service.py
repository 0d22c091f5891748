"""Documents as one object: the index, the isolated extractor, embedders, retrieval.

Used the same way by the CLI (``paddock docs``) and the GUI (through
``app.ui.documents.panel``), so both index and retrieve identically.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from app import paths
from app.docs.embed import Embedder
from app.docs.extract import is_supported
from app.docs.index import Collection, DocIndex, Document
from app.docs.indexer import Indexer
from app.docs.isolate import Extractor
from app.docs.retrieve import Retriever
from app.errors import DocumentError, PaddockError

log = logging.getLogger(__name__)

# GGUF architectures of encoder (embedding) models llama.cpp runs.
EMBEDDING_ARCHITECTURES = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "t5encoder", "modern-bert",
     "neo-bert", "eurobert"}
)
MAX_FILES_PER_DROP = 10_000


def find_embedding_model() -> Path | None:
    """The first embedding model in the model library, if the user has one."""
    from app.models.library import Library

    library = Library()
    try:
        for model in library.models():
            if model.meta.get("architecture") in EMBEDDING_ARCHITECTURES and model.path.exists():
                return model.path
    except PaddockError as exc:
        log.info("no embedding model: %s", exc)
    finally:
        library.close()
    return None


def expand_paths(items: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files to index from dropped files and folders (recursively), and those skipped with why.

    Hidden files and folders are skipped silently; unsupported files are listed.
    """
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for raw in items:
        item = Path(raw).expanduser()
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                rel = path.relative_to(item)
                if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                    continue
                if is_supported(path):
                    files.append(path)
                else:
                    skipped.append((path, f"{path.name}: this kind of file is not supported"))
        elif item.is_file():
            files.append(item)  # asked for by name: try it, and say why if it fails
        else:
            skipped.append((item, f"{item}: no such file or folder"))
        if len(files) > MAX_FILES_PER_DROP:
            raise DocumentError(f"more than {MAX_FILES_PER_DROP} files: add a smaller folder")
    return files, skipped


class Documents:
    """Args:
    index_path: the SQLite index (default: the data folder's ``documents.sqlite3``).
    embed_model: the embedding model for new collections; ``"auto"`` picks one from the
        library, ``None`` means keyword search only.
    """

    def __init__(self, index_path: Path | None = None, embed_model: Path | str | None = "auto") -> None:
        self.index = DocIndex(index_path or paths.docs_path())
        self.extractor = Extractor()
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        self._default_embed: Path | None
        if embed_model == "auto":
            self._default_embed = find_embedding_model()
        else:
            self._default_embed = Path(embed_model) if embed_model else None
        self.indexer = Indexer(self.index, self.extractor, self.embedder_for)
        self.retriever = Retriever(self.index, self.embedder_for)

    @property
    def default_embed_model(self) -> Path | None:
        return self._default_embed

    def set_default_embed_model(self, path: Path | None) -> None:
        self._default_embed = path

    def embedder_for(self, collection: Collection) -> Embedder | None:
        """The collection's embedding model; a collection without one takes the default on first use."""
        model = collection.embed_model
        if model is None and self._default_embed is not None:
            model = str(self._default_embed)
            self.index.set_embed_model(collection.id, model)
        if model is None:
            return None
        if not Path(model).exists():
            log.warning("embedding model %s is gone; keyword search only", model)
            return None
        with self._lock:
            embedder = self._embedders.get(model)
            if embedder is None:
                embedder = self._embedders[model] = Embedder(Path(model))
            return embedder

    def add(self, collection: Collection, items: Iterable[Path]) -> tuple[list[Document], list[tuple[Path, str]]]:
        """Queue files and folders for indexing: (queued documents, skipped with reasons)."""
        files, skipped = expand_paths(items)
        queued = []
        for path in files:
            try:
                doc, added = self.index.add_document(collection.id, path)
            except DocumentError as exc:
                skipped.append((path, str(exc)))
                continue
            if added:
                queued.append(doc)
        return queued, skipped

    def collection_for(self, name: str, create: bool = False) -> Collection:
        collection = self.index.collection(name)
        if collection is None:
            if not create:
                known = ", ".join(c.name for c in self.index.collections()) or "none yet"
                raise PaddockError(f"no collection called {name!r} (collections: {known})")
            collection = self.index.ensure_collection(name)
        return collection

    def close(self) -> None:
        self.extractor.close()
        with self._lock:
            for embedder in self._embedders.values():
                embedder.close()
            self._embedders.clear()
        self.index.close()
