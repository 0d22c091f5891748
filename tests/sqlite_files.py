"""What a SQLite database holds on disk, for tests that check a secret never reached it."""

from __future__ import annotations

from pathlib import Path


def stored_bytes(db: Path) -> bytes:
    """The bytes of the database file and of its write-ahead log and rollback journal, if any:
    everything SQLite may have written of ``db``."""
    parts = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-journal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())
