"""The document index: collections, documents, chunks, FTS5 and vectors in SQLite.

Its own file (``documents.sqlite3``), so that heavy indexing writes never wait
on, or hold up, the chat database.  A conversation's dropped files go into its
own private collection; a named collection can be attached to any number of
conversations (``chat_collections``).  Documents move through
``queued → indexing → ready | failed``; one still ``indexing`` at startup
(the app was closed or killed) goes back to ``queued`` and is redone.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from app.docs.chunk import Chunk
from app.errors import DocumentError, PaddockError
from app.store.db import Database, Migration

DocState = Literal["queued", "indexing", "ready", "failed"]


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE collections (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            private_to INTEGER,              -- a conversation id: the chat's own dropped files
            embed_model TEXT,                -- the embedding model its vectors come from
            created_at REAL NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL DEFAULT 0,
            mtime REAL NOT NULL DEFAULT 0,
            sha256 TEXT,
            kind TEXT,
            state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'indexing', 'ready', 'failed')),
            error TEXT,
            progress REAL NOT NULL DEFAULT 0,
            pages INTEGER NOT NULL DEFAULT 0,
            n_chunks INTEGER NOT NULL DEFAULT 0,
            text TEXT,
            added_at REAL NOT NULL,
            indexed_at REAL,
            UNIQUE (collection_id, path)
        )"""
    )
    conn.execute(
        """CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ord INTEGER NOT NULL,
            text TEXT NOT NULL,
            location TEXT NOT NULL,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX chunks_by_document ON chunks(document_id, ord)")
    conn.execute(
        """CREATE TABLE vectors (
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            vector BLOB NOT NULL             -- float32, L2-normalised
        )"""
    )
    conn.execute(
        """CREATE TABLE chat_collections (
            conversation_id INTEGER NOT NULL,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            PRIMARY KEY (conversation_id, collection_id)
        )"""
    )
    # BM25 keyword search; porter stemming so "install" finds "installing".
    conn.execute(
        "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, location, content='chunks', content_rowid='id', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    conn.execute(
        """CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text, location) VALUES (new.id, new.text, new.location);
        END"""
    )
    conn.execute(
        """CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, location) VALUES ('delete', old.id, old.text, old.location);
        END"""
    )


def _v2(conn: sqlite3.Connection) -> None:
    # Whole-document answers (app/docs/whole.py): what the model read in each document for a
    # question, kept for the document version it was read from.
    conn.execute(
        """CREATE TABLE map_results (
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            key TEXT NOT NULL,               -- the question, its kind, the model and the context size
            version TEXT NOT NULL,           -- the document version read (sha256, indexing, chunks)
            result TEXT NOT NULL,            -- JSON: per passage group, items or notes by chunk id
            created_at REAL NOT NULL,
            PRIMARY KEY (document_id, key)
        )"""
    )


MIGRATIONS: list[Migration] = [_v1, _v2]


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    private_to: int | None
    embed_model: str | None


@dataclass(frozen=True)
class Document:
    id: int
    collection_id: int
    path: str
    name: str
    size: int
    kind: str | None
    state: DocState
    error: str | None
    progress: float
    pages: int
    n_chunks: int


@dataclass(frozen=True)
class StoredChunk:
    id: int
    document_id: int
    ord: int
    text: str
    location: str
    start: int
    end: int


def _collection(row: sqlite3.Row) -> Collection:
    return Collection(row["id"], row["name"], row["private_to"], row["embed_model"])


def _document(row: sqlite3.Row) -> Document:
    return Document(
        row["id"], row["collection_id"], row["path"], row["name"], row["size"], row["kind"], row["state"],
        row["error"], row["progress"], row["pages"], row["n_chunks"],
    )


def private_name(conversation_id: int) -> str:
    return f"chat-{conversation_id}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DocIndex:
    """CRUD for collections, documents, chunks and vectors.  Thread-safe (the Database lock)."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path, MIGRATIONS)
        with self.db.transaction() as conn:
            # Interrupted indexing is redone from the start of that document.
            for row in conn.execute("SELECT id FROM documents WHERE state = 'indexing'").fetchall():
                conn.execute("DELETE FROM chunks WHERE document_id = ?", (row["id"],))
            conn.execute("UPDATE documents SET state = 'queued', progress = 0 WHERE state = 'indexing'")

    def close(self) -> None:
        self.db.close()

    # -- collections -----------------------------------------------------------

    def collection(self, name: str) -> Collection | None:
        rows = self.db.query("SELECT * FROM collections WHERE name = ?", (name,))
        return _collection(rows[0]) if rows else None

    def collection_by_id(self, collection_id: int) -> Collection:
        rows = self.db.query("SELECT * FROM collections WHERE id = ?", (collection_id,))
        if not rows:
            raise PaddockError(f"collection {collection_id} does not exist")
        return _collection(rows[0])

    def collections(self, include_private: bool = False) -> list[Collection]:
        where = "" if include_private else "WHERE private_to IS NULL"
        return [_collection(r) for r in self.db.query(f"SELECT * FROM collections {where} ORDER BY name")]

    def ensure_collection(self, name: str, private_to: int | None = None) -> Collection:
        name = name.strip()
        if not name:
            raise PaddockError("a collection needs a name")
        existing = self.collection(name)
        if existing is not None:
            return existing
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO collections (name, private_to, created_at) VALUES (?, ?, ?)",
                (name, private_to, time.time()),
            )
        found = self.collection(name)
        assert found is not None
        return found

    def chat_collection(self, conversation_id: int) -> Collection:
        """The conversation's own collection (created and attached on first use)."""
        collection = self.ensure_collection(private_name(conversation_id), private_to=conversation_id)
        self.attach(conversation_id, collection.id)
        return collection

    def rename_collection(self, collection_id: int, name: str) -> Collection:
        """Name a collection (a chat's private one becomes reusable in other chats)."""
        name = name.strip()
        if not name:
            raise PaddockError("a collection needs a name")
        other = self.collection(name)
        if other is not None and other.id != collection_id:
            raise PaddockError(f"there is already a collection called {name!r}")
        with self.db.transaction() as conn:
            conn.execute("UPDATE collections SET name = ?, private_to = NULL WHERE id = ?", (name, collection_id))
        return self.collection_by_id(collection_id)

    def delete_collection(self, collection_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM collections WHERE id = ?", (collection_id,))

    def set_embed_model(self, collection_id: int, model: str | None) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE collections SET embed_model = ? WHERE id = ?", (model, collection_id))

    def attach(self, conversation_id: int, collection_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO chat_collections (conversation_id, collection_id) VALUES (?, ?)",
                (conversation_id, collection_id),
            )

    def detach(self, conversation_id: int, collection_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM chat_collections WHERE conversation_id = ? AND collection_id = ?",
                (conversation_id, collection_id),
            )

    def attached(self, conversation_id: int) -> list[Collection]:
        rows = self.db.query(
            "SELECT c.* FROM collections c JOIN chat_collections cc ON cc.collection_id = c.id "
            "WHERE cc.conversation_id = ? ORDER BY c.private_to IS NULL, c.name",
            (conversation_id,),
        )
        return [_collection(r) for r in rows]

    def forget_conversation(self, conversation_id: int) -> None:
        """The chat was deleted: its private collection goes, named ones stay."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM collections WHERE private_to = ?", (conversation_id,))
            conn.execute("DELETE FROM chat_collections WHERE conversation_id = ?", (conversation_id,))

    # -- documents -------------------------------------------------------------

    def add_document(self, collection_id: int, path: Path) -> tuple[Document, bool]:
        """Queue a file; ``(document, added)``.  A file already there and unchanged is not redone."""
        path = path.resolve()
        try:
            stat = path.stat()
        except OSError as exc:
            raise DocumentError(f"cannot read {path}: {exc.strerror or exc}") from exc
        rows = self.db.query(
            "SELECT * FROM documents WHERE collection_id = ? AND path = ?", (collection_id, str(path))
        )
        if rows:
            doc = _document(rows[0])
            if rows[0]["size"] == stat.st_size and rows[0]["mtime"] == stat.st_mtime and doc.state != "failed":
                return doc, False
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM chunks WHERE document_id = ?", (doc.id,))
                conn.execute(
                    "UPDATE documents SET state = 'queued', error = NULL, progress = 0, size = ?, mtime = ?, "
                    "n_chunks = 0 WHERE id = ?", (stat.st_size, stat.st_mtime, doc.id),
                )
            return self.document(doc.id), True
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO documents (collection_id, path, name, size, mtime, added_at) VALUES (?, ?, ?, ?, ?, ?)",
                (collection_id, str(path), path.name, stat.st_size, stat.st_mtime, time.time()),
            )
            doc_id = int(cur.lastrowid or 0)
        return self.document(doc_id), True

    def document(self, doc_id: int) -> Document:
        rows = self.db.query("SELECT * FROM documents WHERE id = ?", (doc_id,))
        if not rows:
            raise PaddockError(f"document {doc_id} does not exist (it was removed)")
        return _document(rows[0])

    def documents(self, collection_ids: Iterable[int]) -> list[Document]:
        ids = list(collection_ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self.db.query(
            f"SELECT * FROM documents WHERE collection_id IN ({marks}) ORDER BY collection_id, name", tuple(ids)
        )
        return [_document(r) for r in rows]

    def pending(self) -> list[Document]:
        return [_document(r) for r in self.db.query("SELECT * FROM documents WHERE state = 'queued' ORDER BY id")]

    def remove_document(self, doc_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def document_text(self, doc_id: int) -> str:
        rows = self.db.query("SELECT text FROM documents WHERE id = ?", (doc_id,))
        return str(rows[0]["text"] or "") if rows else ""

    def set_state(self, doc_id: int, state: DocState, progress: float | None = None, error: str | None = None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE documents SET state = ?, progress = COALESCE(?, progress), error = ?, "
                "indexed_at = CASE WHEN ? = 'ready' THEN ? ELSE indexed_at END WHERE id = ?",
                (state, progress, error, state, time.time(), doc_id),
            )

    def set_progress(self, doc_id: int, progress: float) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE documents SET progress = ? WHERE id = ?", (progress, doc_id))

    def store_chunks(
        self, doc_id: int, text: str, chunks: Sequence[Chunk], *, kind: str, pages: int, sha256: str
    ) -> None:
        """Replace the document's chunks (one transaction: all or nothing)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
            conn.executemany(
                "INSERT INTO chunks (document_id, ord, text, location, start, end) VALUES (?, ?, ?, ?, ?, ?)",
                [(doc_id, i, c.text, c.location, c.start, c.end) for i, c in enumerate(chunks)],
            )
            conn.execute(
                "UPDATE documents SET text = ?, kind = ?, pages = ?, sha256 = ?, n_chunks = ? WHERE id = ?",
                (text, kind, pages, sha256, len(chunks), doc_id),
            )

    # -- chunks and vectors ----------------------------------------------------

    def chunks(self, doc_id: int) -> list[StoredChunk]:
        rows = self.db.query("SELECT * FROM chunks WHERE document_id = ? ORDER BY ord", (doc_id,))
        return [_chunk(r) for r in rows]

    def chunk(self, chunk_id: int) -> StoredChunk | None:
        rows = self.db.query("SELECT * FROM chunks WHERE id = ?", (chunk_id,))
        return _chunk(rows[0]) if rows else None

    def chunks_without_vectors(self, doc_id: int, model: str) -> list[StoredChunk]:
        rows = self.db.query(
            "SELECT c.* FROM chunks c LEFT JOIN vectors v ON v.chunk_id = c.id AND v.model = ? "
            "WHERE c.document_id = ? AND v.chunk_id IS NULL ORDER BY c.ord",
            (model, doc_id),
        )
        return [_chunk(r) for r in rows]

    def store_vectors(self, model: str, items: Sequence[tuple[int, Sequence[float]]]) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (chunk_id, model, vector) VALUES (?, ?, ?)",
                [(cid, model, np.asarray(vec, dtype=np.float32).tobytes()) for cid, vec in items],
            )

    def vectors(self, collection_ids: Sequence[int], model: str) -> tuple[list[int], np.ndarray]:
        """(chunk ids, matrix of their vectors) of ready documents in these collections."""
        if not collection_ids:
            return [], np.zeros((0, 0), dtype=np.float32)
        marks = ",".join("?" * len(collection_ids))
        rows = self.db.query(
            "SELECT v.chunk_id, v.vector FROM vectors v JOIN chunks c ON c.id = v.chunk_id "
            f"JOIN documents d ON d.id = c.document_id WHERE d.collection_id IN ({marks}) AND v.model = ? "
            "AND d.state = 'ready'",
            (*collection_ids, model),
        )
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        matrix = np.vstack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows])
        return [int(r["chunk_id"]) for r in rows], matrix


def _chunk(row: sqlite3.Row) -> StoredChunk:
    return StoredChunk(
        row["id"], row["document_id"], row["ord"], row["text"], row["location"], row["start"], row["end"]
    )
