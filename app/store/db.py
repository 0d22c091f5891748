"""SQLite behind a small transaction manager, with versioned migrations.

- WAL journal, ``synchronous=FULL`` (a committed message survives power loss),
  foreign keys on, a busy timeout; ``quick_check`` at open.
- Schema version in ``PRAGMA user_version``; one migration per version, each in
  its own transaction, a backup copy taken before migrating an existing file.
- A file from a newer Paddock is refused and left untouched; a corrupt file is
  moved aside and a fresh database opened (``Database.recovery_notice`` says so).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from app.errors import NewerDatabaseError, StoreError

log = logging.getLogger(__name__)

Migration = Callable[[sqlite3.Connection], None]

# SQLite primary result codes we tell apart (sqlite3.Error.sqlite_errorcode & 0xFF).
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26


def describe_sqlite_error(error: sqlite3.Error, path: Path) -> str:
    """A sentence a user can act on for the SQLite errors users actually meet."""
    code = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF
    if code == SQLITE_FULL:
        return f"the disk holding {path.parent} is full: free some space; nothing already saved was lost"
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return f"the chat database {path} is in use by another program (is Paddock already running?)"
    if code == SQLITE_READONLY:
        return f"the chat database {path} is read-only: check the folder's permissions"
    if code == SQLITE_CANTOPEN:
        return f"cannot open the chat database {path}: check that the folder exists and is writable"
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return f"the chat database {path} is damaged"
    if code == SQLITE_IOERR:
        return f"a disk error occurred while saving to {path}"
    return f"database error: {error}"


class Database:
    """One SQLite file, shared by threads through a lock.

    Args:
        path: the database file (created if missing).
        migrations: ``migrations[i]`` upgrades version ``i`` to ``i + 1``.
    """

    def __init__(self, path: Path, migrations: list[Migration]) -> None:
        self.path = path
        self.migrations = migrations
        self.recovery_notice: str | None = None
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._refuse_newer()
        try:
            self.conn = self._connect()
            self._check_integrity()
        except sqlite3.DatabaseError as exc:
            code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
            if code not in (SQLITE_CORRUPT, SQLITE_NOTADB) and "malformed" not in str(exc):
                raise StoreError(describe_sqlite_error(exc, path)) from exc
            self._move_aside(str(exc))
            self.conn = self._connect()
        self._migrate()

    # -- opening ---------------------------------------------------------------

    def _refuse_newer(self) -> None:
        """Read user_version without writing anything: a newer file stays byte-identical."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        try:
            ro = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
            try:
                version = int(ro.execute("PRAGMA user_version").fetchone()[0])
            finally:
                ro.close()
        except sqlite3.DatabaseError:
            return  # damaged or not a database: handled (moved aside) by the normal open path
        if version > len(self.migrations):
            raise NewerDatabaseError(
                f"the chat database {self.path} was written by a newer version of Paddock "
                f"(schema {version}, this version knows {len(self.migrations)}). "
                "Update Paddock; the file has not been changed."
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 5000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("SQLite refused WAL mode (%s); continuing with %s", self.path, mode)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _check_integrity(self) -> None:
        result = self.conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {result}")

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        with contextlib.suppress(Exception):
            self.conn.close()
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.rename(Path(str(aside) + suffix))
        backup = self.latest_backup()
        if backup is not None:
            shutil.copy2(backup, self.path)
            self.recovery_notice = (
                f"The chat database was damaged ({reason}). It was moved to {aside} "
                f"and the backup {backup.name} was restored."
            )
        else:
            self.recovery_notice = (
                f"The chat database was damaged ({reason}). It was moved to {aside} "
                "and a new, empty one was created."
            )
        log.error(self.recovery_notice)

    def latest_backup(self) -> Path | None:
        backups = sorted(self.path.parent.glob(self.path.name + ".bak-v*"), key=lambda p: p.stat().st_mtime)
        return backups[-1] if backups else None

    # -- migrations ------------------------------------------------------------

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        target = len(self.migrations)
        if current > target:  # raced with a newer Paddock between the check and the open
            raise NewerDatabaseError(f"the chat database {self.path} was written by a newer version of Paddock")
        if current == target:
            return
        if current > 0:
            backup = self.path.with_name(f"{self.path.name}.bak-v{current}")
            dest = sqlite3.connect(backup)
            try:
                self.conn.backup(dest)
            finally:
                dest.close()
            log.info("backed up %s to %s before migrating", self.path, backup)
        for version in range(current, target):
            with self.transaction() as conn:
                self.migrations[version](conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            log.info("migrated %s to schema %d", self.path, version + 1)

    # -- use -------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception.

        Raises:
            StoreError: for SQLite failures a user can meet (disk full, locked, read-only).
        """
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(describe_sqlite_error(exc, self.path)) from exc
            try:
                yield self.conn
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(describe_sqlite_error(exc, self.path)) from exc
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise StoreError(describe_sqlite_error(exc, self.path)) from exc

    def query(self, sql: str, params: tuple[object, ...] | dict[str, object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self.conn.execute(sql, params))
            except sqlite3.Error as exc:
                raise StoreError(describe_sqlite_error(exc, self.path)) from exc

    def integrity_check(self) -> str:
        with self._lock:
            return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self.conn.close()
