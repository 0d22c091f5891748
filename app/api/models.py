"""Which models the API serves, and the engines that run them.

* :class:`LoadedModelSource`: the app's window serves the model loaded in it (the
  window owns the engine; a request for another model is refused, not switched).
* :class:`ModelPool`: ``paddock serve`` serves one model (``--model``) or the whole
  library, loading a requested model on demand in an engine of its own, within a
  memory budget and ``--max-models``; the least recently used idle one is unloaded
  to make room.  An engine that dies for any reason (a crash in native code, an
  out-of-memory kill, killed by hand) is started again and its model reloaded by
  itself; while that runs, requests for it get 503 with ``Retry-After``.

Model ids are stable slugs of the file name (``smollm2-135m-instruct.q4_1``),
also accepted as Ollama names (``…:latest``), file names, stems or library ids.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from app.api.errors import ApiError
from app.engine.client import Engine
from app.engine.types import LoadedModel, LoadSettings
from app.errors import EngineCrashedError, PaddockError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
WATCH_INTERVAL_S = 0.5


def slug(path: Path) -> str:
    """A model id that stays the same across restarts: the file name's stem, lower case."""
    name = re.sub(r"[^a-z0-9._-]+", "-", path.name.lower().removesuffix(".gguf")).strip("-.")
    return name or "model"


@dataclass(frozen=True)
class ModelEntry:
    id: str
    path: Path
    size: int
    modified: float
    library_id: int | None = None
    sha256: str | None = None

    def matches(self, requested: str) -> bool:
        wanted = requested.strip().lower()
        wanted = wanted.removesuffix(":latest")
        return wanted in {self.id, self.path.name.lower(), self.path.stem.lower(), str(self.library_id)}


def entries_for(paths: Sequence[tuple[Path, int | None, str | None]]) -> list[ModelEntry]:
    """Entries with unique ids (a second file with the same stem gets ``-2``)."""
    seen: dict[str, int] = {}
    out = []
    for path, library_id, sha in paths:
        base = slug(path)
        seen[base] = seen.get(base, 0) + 1
        ident = base if seen[base] == 1 else f"{base}-{seen[base]}"
        try:
            stat = path.stat()
            size, modified = stat.st_size, stat.st_mtime
        except OSError:
            size, modified = 0, 0.0
        out.append(ModelEntry(ident, path, size, modified, library_id, sha))
    return out


def library_entries() -> list[ModelEntry]:
    """Every model in the library whose file is there (and whose license is still accepted)."""
    from app.models.library import Library

    library = Library()
    try:
        found = []
        for model in library.models():
            if not model.path.exists():
                continue
            try:
                library.check_loadable(model.path)
            except PaddockError:
                continue
            found.append((model.path, model.id, model.sha256))
        return entries_for(found)
    finally:
        library.close()


class Lease:
    """An engine lent to one request; :meth:`release` when the request is done with it."""

    def __init__(self, entry: ModelEntry, engine: Engine, loaded: LoadedModel, release: object = None) -> None:
        self.entry = entry
        self.engine = engine
        self.loaded = loaded
        self._release = release
        self._released = False

    def release(self) -> None:
        if not self._released and callable(self._release):
            self._released = True
            self._release()


class ModelSource(Protocol):
    def entries(self) -> list[ModelEntry]: ...

    def running(self) -> list[tuple[ModelEntry, LoadedModel]]: ...

    def lease(self, requested: str | None) -> Lease: ...

    def close(self) -> None: ...


def _find(entries: Sequence[ModelEntry], requested: str | None) -> ModelEntry:
    if not requested:
        if len(entries) == 1:
            return entries[0]
        raise ApiError(400, "name the model to use ('model'): GET /v1/models lists them", param="model")
    for entry in entries:
        if entry.matches(requested):
            return entry
    known = ", ".join(e.id for e in entries[:8]) or "none"
    raise ApiError(404, f"The model '{requested}' does not exist in Paddock's library (models: {known}).",
                   code="model_not_found", param="model")


class LoadedModelSource:
    """The window's API: the model loaded in the window's engine, and only that one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _current(self) -> tuple[ModelEntry, LoadedModel] | None:
        loaded = self.engine.loaded if self.engine.is_alive() else None
        if loaded is None:
            return None
        return entries_for([(Path(loaded.path), None, None)])[0], loaded

    def entries(self) -> list[ModelEntry]:
        current = self._current()
        return [current[0]] if current else []

    def running(self) -> list[tuple[ModelEntry, LoadedModel]]:
        current = self._current()
        return [current] if current else []

    def lease(self, requested: str | None) -> Lease:
        current = self._current()
        if current is None:
            raise ApiError(503, "no model is loaded in Paddock: choose one in the app's window (the window's API "
                                "serves the model loaded there; `paddock serve` serves the whole library)",
                           code="model_not_loaded", retry_after=RETRY_AFTER_S)
        entry, loaded = current
        if requested and not entry.matches(requested):
            raise ApiError(404, f"The model '{requested}' is not the one loaded in Paddock's window ({entry.id}): "
                                "load it there, or use `paddock serve`, which loads any model on request.",
                           code="model_not_found", param="model")
        return Lease(entry, self.engine, loaded)

    def close(self) -> None:
        pass


@dataclass
class _Slot:
    entry: ModelEntry
    engine: Engine
    loaded: LoadedModel | None = None
    users: int = 0
    last_used: float = 0.0
    recovering: bool = False
    failure: str = ""  # why the last reload failed
    lock: threading.Lock = field(default_factory=threading.Lock)  # one load at a time


class ModelPool:
    """``paddock serve``'s models: loaded on request, each in an engine of its own.

    Args:
        entries: the models served.
        settings: how each is loaded (context, threads, GPU layers).
        max_models: at most this many loaded at once (None: as many as memory allows).
    """

    def __init__(self, entries: Sequence[ModelEntry], settings: LoadSettings | None = None, *,
                 max_models: int | None = None) -> None:
        self._entries = list(entries)
        self.settings = settings or LoadSettings()
        self.max_models = max_models
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.recoveries = 0  # engines started again after dying
        self._watcher = threading.Thread(target=self._watch, name="api-engine-watch", daemon=True)
        self._watcher.start()

    def entries(self) -> list[ModelEntry]:
        return list(self._entries)

    def running(self) -> list[tuple[ModelEntry, LoadedModel]]:
        with self._lock:
            return [(s.entry, s.loaded) for s in self._slots.values() if s.loaded is not None and not s.recovering]

    def lease(self, requested: str | None) -> Lease:
        entry = _find(self._entries, requested)
        with self._lock:
            slot = self._slots.get(entry.id)
            if slot is not None and slot.recovering:
                why = f" (the last try failed: {slot.failure})" if slot.failure else ""
                raise ApiError(503, f"the engine running {entry.id} stopped and is being restarted{why}; "
                                    "try again shortly", code="model_reloading", retry_after=RETRY_AFTER_S)
            if slot is None:
                slot = _Slot(entry, Engine(on_crash=functools.partial(self._crashed, entry.id)))
                self._slots[entry.id] = slot
            slot.users += 1
            slot.last_used = time.monotonic()
        try:
            with slot.lock:
                if slot.loaded is None or not slot.engine.is_alive():
                    self._make_room(slot)
                    log.info("loading %s for the API", entry.id)
                    slot.loaded = slot.engine.load(str(entry.path), self.settings)
        except BaseException:
            with self._lock:
                slot.users -= 1
            raise
        return Lease(entry, slot.engine, slot.loaded, lambda: self._release(slot))

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            slot.users -= 1
            slot.last_used = time.monotonic()

    def _make_room(self, wanted: _Slot) -> None:
        """Unload the least recently used idle models until ``wanted`` fits the count and memory."""
        need = int(wanted.entry.size * 1.2)
        while True:
            with self._lock:
                loaded = [s for s in self._slots.values() if s is not wanted and s.loaded is not None]
                idle = sorted((s for s in loaded if s.users == 0 and not s.recovering), key=lambda s: s.last_used)
                too_many = self.max_models is not None and len(loaded) >= self.max_models
                short = psutil.virtual_memory().available < need and bool(loaded)
                if not (too_many or short) or not idle:
                    if too_many:
                        raise ApiError(503, f"{len(loaded)} models are loaded and busy (--max-models "
                                            f"{self.max_models}); try again when one is free",
                                       code="model_busy", retry_after=RETRY_AFTER_S)
                    return
                victim = idle[0]
                victim.loaded = None
            log.info("unloading %s to make room for %s", victim.entry.id, wanted.entry.id)
            with victim.lock:
                victim.engine.close()

    def unload(self, model_id: str) -> None:
        """Unload a model now if no request uses it (Ollama's ``keep_alive: 0``)."""
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None or slot.users or slot.recovering or slot.loaded is None:
                return
            slot.loaded = None
        with slot.lock:
            slot.engine.close()

    # -- recovery --------------------------------------------------------------------

    def _crashed(self, model_id: str, error: EngineCrashedError) -> None:
        log.error("the engine serving %s died: %s", model_id, error)
        self._recover(model_id)

    def _recover(self, model_id: str) -> None:
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None or slot.recovering or self._closed.is_set():
                return
            slot.recovering = True
            slot.loaded = None
        threading.Thread(target=self._reload, args=(slot,), name="api-engine-restart", daemon=True).start()

    def _reload(self, slot: _Slot) -> None:
        delay = 1.0
        while not self._closed.is_set():
            try:
                with slot.lock:
                    slot.engine.close()
                    slot.loaded = slot.engine.load(str(slot.entry.path), self.settings)
                self.recoveries += 1
                log.warning("the engine for %s was restarted and the model reloaded", slot.entry.id)
                with self._lock:
                    slot.recovering, slot.failure = False, ""
                return
            except PaddockError as exc:
                slot.failure = str(exc)
                log.error("restarting the engine for %s failed: %s; trying again in %.0f s", slot.entry.id, exc,
                          delay)
                self._closed.wait(delay)
                delay = min(delay * 2, 60.0)

    def _watch(self) -> None:
        """Notice an engine that died while idle (no request saw it happen)."""
        while not self._closed.wait(WATCH_INTERVAL_S):
            with self._lock:
                dead = [s for s in self._slots.values()
                        if s.loaded is not None and not s.recovering and not s.engine.is_alive()]
            for slot in dead:
                code = slot.engine.exitcode
                log.error("the engine serving %s exited while idle (%s); restarting it", slot.entry.id,
                          "exit code " + str(code) if code is not None else "unknown cause")
                self._recover(slot.entry.id)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            with contextlib.suppress(Exception):
                slot.engine.close()


@contextlib.contextmanager
def leased(source: ModelSource, requested: str | None) -> Iterator[Lease]:
    lease = source.lease(requested)
    try:
        yield lease
    finally:
        lease.release()
