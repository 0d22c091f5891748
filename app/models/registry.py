"""The model library's database: registered models, license acceptances, the download queue.

A separate SQLite file from the chats (``library.sqlite3``), with the same
guarantees (:class:`app.store.db.Database`: WAL, ``synchronous=FULL``, checked
at open, backed up before a migration).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.engine.gguf_file import GGUFInfo
from app.errors import ModelNotFoundError
from app.store.db import Database, Migration

Source = Literal["download", "import", "link", "quantize", "found"]
DownloadStatus = Literal["queued", "running", "paused", "failed", "done", "cancelled"]


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE acceptances (
            id INTEGER PRIMARY KEY,
            repo_id TEXT NOT NULL,
            license_id TEXT NOT NULL,
            license_name TEXT NOT NULL,
            text_sha256 TEXT NOT NULL,
            accepted_at REAL NOT NULL,
            UNIQUE (repo_id, text_sha256)
        )"""
    )
    conn.execute(
        """CREATE TABLE models (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL UNIQUE,
            parts TEXT NOT NULL DEFAULT '[]',
            name TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('download', 'import', 'link', 'quantize', 'found')),
            repo_id TEXT,
            revision TEXT,
            quant TEXT,
            size INTEGER NOT NULL DEFAULT 0,
            sha256 TEXT,
            parent_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
            license_id TEXT,
            acceptance_id INTEGER REFERENCES acceptances(id) ON DELETE SET NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            added_at REAL NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE downloads (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            repo_id TEXT NOT NULL,
            revision TEXT NOT NULL,
            name TEXT NOT NULL,
            files TEXT NOT NULL,
            dest_dir TEXT NOT NULL,
            total INTEGER NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'failed', 'done', 'cancelled')),
            error TEXT,
            acceptance_id INTEGER REFERENCES acceptances(id) ON DELETE SET NULL,
            model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )


MIGRATIONS: list[Migration] = [_v1]


@dataclass(frozen=True)
class Acceptance:
    id: int
    repo_id: str
    license_id: str
    license_name: str
    text_sha256: str
    accepted_at: float


@dataclass(frozen=True)
class LibraryModel:
    id: int
    path: Path
    parts: list[Path]
    name: str
    source: Source
    repo_id: str | None
    revision: str | None
    quant: str | None
    size: int
    sha256: str | None
    parent_id: int | None
    license_id: str | None
    acceptance_id: int | None
    meta: dict[str, Any] = field(default_factory=dict)
    added_at: float = 0.0

    @property
    def files(self) -> list[Path]:
        return self.parts or [self.path]


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class DownloadRecord:
    id: int
    repo_id: str
    revision: str
    name: str
    files: list[RemoteFile]
    dest_dir: Path
    total: int
    done: int
    status: DownloadStatus
    error: str | None
    acceptance_id: int | None
    model_id: int | None
    created_at: float
    updated_at: float


def _model(row: sqlite3.Row) -> LibraryModel:
    return LibraryModel(
        id=row["id"], path=Path(row["path"]), parts=[Path(p) for p in json.loads(row["parts"])],
        name=row["name"], source=row["source"], repo_id=row["repo_id"], revision=row["revision"],
        quant=row["quant"], size=row["size"], sha256=row["sha256"], parent_id=row["parent_id"],
        license_id=row["license_id"], acceptance_id=row["acceptance_id"], meta=json.loads(row["meta"]),
        added_at=row["added_at"],
    )


def _download(row: sqlite3.Row) -> DownloadRecord:
    return DownloadRecord(
        id=row["id"], repo_id=row["repo_id"], revision=row["revision"], name=row["name"],
        files=[RemoteFile(**f) for f in json.loads(row["files"])], dest_dir=Path(row["dest_dir"]),
        total=row["total"], done=row["done"], status=row["status"], error=row["error"],
        acceptance_id=row["acceptance_id"], model_id=row["model_id"], created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class Registry:
    """SQL for the library; thread-safe through :class:`Database`'s lock."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path, MIGRATIONS)

    def close(self) -> None:
        self.db.close()

    # -- acceptances -----------------------------------------------------------

    def accept(self, repo_id: str, license_id: str, license_name: str, text_sha256: str) -> Acceptance:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO acceptances (repo_id, license_id, license_name, text_sha256, accepted_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (repo_id, text_sha256) DO NOTHING",
                (repo_id, license_id, license_name, text_sha256, now),
            )
        found = self.acceptance(repo_id, text_sha256)
        assert found is not None
        return found

    def acceptance(self, repo_id: str, text_sha256: str | None = None) -> Acceptance | None:
        """The acceptance of exactly that text (or, without a hash, the latest for the repo)."""
        if text_sha256 is None:
            rows = self.db.query("SELECT * FROM acceptances WHERE repo_id = ? ORDER BY accepted_at DESC LIMIT 1",
                                 (repo_id,))
        else:
            rows = self.db.query("SELECT * FROM acceptances WHERE repo_id = ? AND text_sha256 = ?",
                                 (repo_id, text_sha256))
        return Acceptance(**dict(rows[0])) if rows else None

    def acceptance_by_id(self, acceptance_id: int) -> Acceptance | None:
        rows = self.db.query("SELECT * FROM acceptances WHERE id = ?", (acceptance_id,))
        return Acceptance(**dict(rows[0])) if rows else None

    def revoke(self, repo_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM acceptances WHERE repo_id = ?", (repo_id,))

    # -- models ----------------------------------------------------------------

    def add_model(self, path: Path, name: str, source: Source, *, parts: list[Path] | None = None,
                  repo_id: str | None = None, revision: str | None = None, quant: str | None = None,
                  size: int = 0, sha256: str | None = None, parent_id: int | None = None,
                  license_id: str | None = None, acceptance_id: int | None = None,
                  meta: dict[str, Any] | None = None) -> LibraryModel:
        with self.db.transaction() as conn:
            conn.execute(
                """INSERT INTO models (path, parts, name, source, repo_id, revision, quant, size, sha256, parent_id,
                                       license_id, acceptance_id, meta, added_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (path) DO UPDATE SET
                     parts = excluded.parts, name = excluded.name, source = excluded.source,
                     repo_id = excluded.repo_id, revision = excluded.revision, quant = excluded.quant,
                     size = excluded.size, sha256 = excluded.sha256, parent_id = excluded.parent_id,
                     license_id = excluded.license_id, acceptance_id = excluded.acceptance_id,
                     meta = excluded.meta""",
                (str(path), json.dumps([str(p) for p in parts or []]), name, source, repo_id, revision, quant,
                 size, sha256, parent_id, license_id, acceptance_id, json.dumps(meta or {}), time.time()),
            )
        found = self.model_by_path(path)
        assert found is not None
        return found

    def models(self) -> list[LibraryModel]:
        return [_model(r) for r in self.db.query("SELECT * FROM models ORDER BY added_at DESC, id DESC")]

    def model(self, model_id: int) -> LibraryModel:
        rows = self.db.query("SELECT * FROM models WHERE id = ?", (model_id,))
        if not rows:
            raise ModelNotFoundError(f"no model with id {model_id} in the library (see `paddock models list`)")
        return _model(rows[0])

    def model_by_path(self, path: Path) -> LibraryModel | None:
        rows = self.db.query("SELECT * FROM models WHERE path = ?", (str(path),))
        return _model(rows[0]) if rows else None

    def update_meta(self, model_id: int, meta: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE models SET meta = ? WHERE id = ?", (json.dumps(meta), model_id))

    def remove_model(self, model_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM models WHERE id = ?", (model_id,))

    # -- downloads -------------------------------------------------------------

    def add_download(self, repo_id: str, revision: str, name: str, *, files: list[RemoteFile], dest_dir: Path,
                     acceptance_id: int | None) -> DownloadRecord:
        now = time.time()
        with self.db.transaction() as conn:
            cur = conn.execute(
                """INSERT INTO downloads (repo_id, revision, name, files, dest_dir, total, status, acceptance_id,
                                          created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)""",
                (repo_id, revision, name, json.dumps([f.to_dict() for f in files]), str(dest_dir),
                 sum(f.size for f in files), acceptance_id, now, now),
            )
            new_id = int(cur.lastrowid or 0)
        return self.download(new_id)

    def download(self, download_id: int) -> DownloadRecord:
        rows = self.db.query("SELECT * FROM downloads WHERE id = ?", (download_id,))
        if not rows:
            raise KeyError(download_id)
        return _download(rows[0])

    def downloads(self, statuses: tuple[DownloadStatus, ...] | None = None) -> list[DownloadRecord]:
        rows = self.db.query("SELECT * FROM downloads ORDER BY id")
        found = [_download(r) for r in rows]
        return [d for d in found if statuses is None or d.status in statuses]

    def find_download(self, repo_id: str, name: str) -> DownloadRecord | None:
        rows = self.db.query(
            "SELECT * FROM downloads WHERE repo_id = ? AND name = ? AND status NOT IN ('done', 'cancelled') "
            "ORDER BY id DESC LIMIT 1", (repo_id, name))
        return _download(rows[0]) if rows else None

    def update_download(self, download_id: int, **fields: Any) -> None:
        allowed = {"done", "status", "error", "model_id", "revision", "files", "total"}
        assert set(fields) <= allowed, fields
        if "files" in fields:
            fields["files"] = json.dumps([f.to_dict() for f in fields["files"]])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE downloads SET {sets}, updated_at = ? WHERE id = ?",
                         (*fields.values(), time.time(), download_id))

    def delete_download(self, download_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM downloads WHERE id = ?", (download_id,))


def model_meta(info: GGUFInfo) -> dict[str, Any]:
    """What the registry keeps of a model's GGUF header (shown in My models without reading the file).
    A LoRA adapter is marked ``kind: adapter`` (listed under its base model, never loaded as a model)."""
    meta = {
        "architecture": info.architecture,
        "display_name": info.name,
        "n_params": info.n_params,
        "context_length": info.context_length,
        "license": info.license,
        "has_template": info.chat_template is not None,
        "quant": info.quantization,
    }
    if info.get("general.type") == "adapter":
        meta["kind"] = "adapter"
    return meta


def is_adapter(model: LibraryModel) -> bool:
    return model.meta.get("kind") == "adapter"
