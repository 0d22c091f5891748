"""Run extraction in a worker process under a memory and time limit.

A hostile file (a PDF bomb, a zip bomb, a parser bug that loops) must cost one
file, not the app: the worker has an address-space limit (``RLIMIT_AS`` on
Linux and macOS) and each file a deadline; a worker that dies or runs over is
killed and replaced, and that file gets its own error.  The worker is reused
across files, so a folder of documents does not pay a Python start per file.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from app.docs.extract import Extracted, extract
from app.errors import DocumentError

log = logging.getLogger(__name__)

MEMORY_LIMIT_BYTES = 2 * 1024**3
BASE_TIMEOUT_S = 60.0
TIMEOUT_PER_MB_S = 2.0


def _limit_memory(limit: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the deadline still holds
        return
    with contextlib.suppress(ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        new = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (new, hard))


def _worker(conn: Connection, memory_limit: int) -> None:
    _limit_memory(memory_limit)
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            return
        if path is None:
            return
        try:
            conn.send(("ok", extract(Path(path))))
        except DocumentError as exc:
            conn.send(("error", str(exc)))
        except MemoryError:
            conn.send(("error", f"{Path(path).name} needs too much memory to read (a compressed 'bomb'?)"))
        except Exception as exc:
            conn.send(("error", f"{Path(path).name} could not be read: {type(exc).__name__}: {exc}"))


class Extractor:
    """Extraction in a reusable child process.  Thread-safe (one file at a time)."""

    def __init__(self, memory_limit: int = MEMORY_LIMIT_BYTES, base_timeout_s: float = BASE_TIMEOUT_S) -> None:
        self.memory_limit = memory_limit
        self.base_timeout_s = base_timeout_s
        self._lock = threading.Lock()
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            return self._conn
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker, args=(child, self.memory_limit), name="paddock-extract", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        return parent

    def _kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.kill()
                self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def timeout_for(self, path: Path) -> float:
        try:
            size_mb = path.stat().st_size / 1024**2
        except OSError:
            size_mb = 0
        return self.base_timeout_s + TIMEOUT_PER_MB_S * size_mb

    def extract(self, path: Path) -> Extracted:
        """Extract one file.

        Raises:
            DocumentError: unreadable, refused, out of memory, or over its deadline.
        """
        timeout = self.timeout_for(path)
        with self._lock:
            conn = self._start()
            try:
                conn.send(str(path))
                if not conn.poll(timeout):
                    self._kill()
                    raise DocumentError(
                        f"{path.name} took longer than {timeout:.0f} s to read and was skipped "
                        "(a damaged or hostile file?)"
                    )
                status, payload = conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                code = self._proc.exitcode if self._proc is not None else None
                self._kill()
                raise DocumentError(
                    f"reading {path.name} needed more than {self.memory_limit // 1024**3} GB of memory or crashed "
                    f"the reader (exit code {code}); it was skipped (a PDF or zip bomb?)"
                ) from exc
        if status == "error":
            raise DocumentError(str(payload))
        assert isinstance(payload, Extracted)
        return payload

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._proc is not None and self._proc.is_alive():
                with contextlib.suppress(Exception):
                    self._conn.send(None)
                self._proc.join(2)
            self._kill()
