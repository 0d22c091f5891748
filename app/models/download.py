"""Resumable, verified model downloads.

``huggingface_hub`` gives the URL, the auth headers, the file metadata (size,
sha256 from ``X-Linked-Etag``, commit) and the error types; the bytes are fetched
here, because its own download step neither resumes across runs nor checks the
sha256 (DESIGN.md). Each file goes to a stable ``<name>.part`` next to its final
place, with its progress in the library database, so a download paused, dropped
or killed with the app resumes with ``Range`` where it stopped. The sha256 is
computed while writing (after re-reading what a previous run wrote) and checked
before the file is renamed into place and registered; a mismatch deletes it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx2
from huggingface_hub.utils import get_session, hf_raise_for_status

from app import paths
from app.engine.gguf_file import read_gguf
from app.engine.projectors import is_projector_name
from app.errors import (
    DiskSpaceError,
    DownloadError,
    HubError,
    IntegrityError,
    InvalidModelError,
    LicenseNotAcceptedError,
    PaddockError,
)
from app.models.hub import HubClient, explain, safe_relative_path
from app.models.registry import DownloadRecord, LibraryModel, Registry, RemoteFile, model_meta

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CHUNK = 1 << 20
PART_SUFFIX = ".part"
# Room left free on the disk besides the model (the OS and the database need some).
DISK_MARGIN = 256 * 1024 * 1024
SAVE_EVERY_S = 1.0
PROGRESS_EVERY_S = 0.2


@dataclass(frozen=True)
class Progress:
    download_id: int
    name: str
    done: int
    total: int
    speed: float  # bytes per second, smoothed
    state: str  # connecting, downloading, checking, verifying, retrying, paused, cancelled, done, failed
    message: str = ""

    @property
    def eta(self) -> float | None:
        if self.speed <= 0 or self.total <= self.done:
            return None
        return (self.total - self.done) / self.speed

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class _Stopped(Exception):
    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


def part_path(final: Path) -> Path:
    return final.with_name(final.name + PART_SUFFIX)


def final_path(record: DownloadRecord, f: RemoteFile) -> Path:
    """Where a file of a download goes; never outside the download's folder."""
    final = (record.dest_dir / safe_relative_path(f.name)).resolve()
    if not final.is_relative_to(record.dest_dir.resolve()):
        raise DownloadError(f"refusing {f.name!r}: it would leave the models folder")
    return final


def discard_download(record: DownloadRecord, registry: Registry) -> None:
    """Delete what a download wrote: partial files, and finished files of a model not in the library."""
    for f in record.files:
        final = final_path(record, f)
        part_path(final).unlink(missing_ok=True)
        if registry.model_by_path(final) is None:
            final.unlink(missing_ok=True)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_disk_space(folder: Path, needed: int, what: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        raise DiskSpaceError(
            f"Not enough disk space for {what}: it needs {human_size(needed)} free on {folder} "
            f"(plus {human_size(DISK_MARGIN)} to spare) but only {human_size(free)} is available. "
            "Free some space or choose a smaller quantization."
        )


class DownloadTask:
    """One download (a model, possibly in several split files), run on the calling thread."""

    def __init__(
        self,
        registry: Registry,
        record: DownloadRecord,
        client: HubClient,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        retries: int = 8,
        backoff: float = 1.0,
        read_timeout: float = 0.5,
    ) -> None:
        self.registry = registry
        self.record = record
        self.client = client
        self.on_progress = on_progress or (lambda p: None)
        self.retries = retries
        self.backoff = backoff
        self.read_timeout = read_timeout
        self._stop = threading.Event()
        self._how = "pause"
        self._speed = 0.0
        self._last_progress = 0.0

    # -- control from other threads -------------------------------------------

    def pause(self) -> None:
        self._how = "pause"
        self._stop.set()

    def cancel(self) -> None:
        self._how = "cancel"
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the work --------------------------------------------------------------

    def _emit(self, done: int, state: str, message: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        self.on_progress(Progress(self.record.id, self.record.name, done, self.record.total, self._speed, state,
                                  message))

    def run(self) -> LibraryModel | None:
        """Download, verify and register; None when paused or cancelled.

        Raises:
            DownloadError / IntegrityError / DiskSpaceError / HubError: with the partial file kept
            when the download can be resumed (``DownloadError.resumable``).
        """
        rec = self.record
        if rec.acceptance_id is None or self.registry.acceptance_by_id(rec.acceptance_id) is None:
            raise LicenseNotAcceptedError(f"accept the license of {rec.repo_id} before downloading it")
        self.registry.update_download(rec.id, status="running", error=None)
        finals = [final_path(rec, f) for f in rec.files]
        try:
            remaining = sum(
                0 if final.exists() else f.size - (part_path(final).stat().st_size if part_path(final).exists() else 0)
                for f, final in zip(rec.files, finals, strict=True)
            )
            check_disk_space(rec.dest_dir, max(0, remaining), rec.name)
            base = 0
            for f, final in zip(rec.files, finals, strict=True):
                if not final.exists():
                    self._download_file(f, final, base)
                base += f.size
            model = self._register(finals)
        except _Stopped as stop:
            if stop.how == "cancel":
                discard_download(rec, self.registry)
                self.registry.update_download(rec.id, status="cancelled", error=None)
                self._emit(0, "cancelled", force=True)
            else:
                self.registry.update_download(rec.id, status="paused", error=None)
                self._emit(self._done_on_disk(finals), "paused", force=True)
            return None
        except DownloadError as exc:
            self.registry.update_download(rec.id, status="paused" if exc.resumable else "failed", error=str(exc))
            self._emit(self._done_on_disk(finals), "failed", str(exc), force=True)
            raise
        except PaddockError as exc:
            self.registry.update_download(rec.id, status="failed", error=str(exc))
            self._emit(self._done_on_disk(finals), "failed", str(exc), force=True)
            raise
        self.registry.update_download(rec.id, status="done", done=rec.total, model_id=model.id, error=None)
        self._emit(rec.total, "done", force=True)
        return model

    def _done_on_disk(self, finals: list[Path]) -> int:
        done = 0
        for f, final in zip(self.record.files, finals, strict=True):
            if final.exists():
                done += f.size
            elif part_path(final).exists():
                done += part_path(final).stat().st_size
        return done

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped(self._how)

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopped(self._how)

    def _download_file(self, f: RemoteFile, final: Path, base: int) -> None:
        rec = self.record
        part = part_path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._emit(base, "connecting", force=True)
        meta = self._with_retries(lambda: self.client.file_metadata(rec.repo_id, f.name, rec.revision), base)
        if f.sha256 and meta.sha256 and meta.sha256 != f.sha256:
            # The file changed on the hub since the download was queued: what is on disk is of the old one.
            log.info("%s changed on the hub; restarting", f.name)
            part.unlink(missing_ok=True)
        sha256 = meta.sha256 or f.sha256
        size = meta.size or f.size
        state = _FileState()
        if part.exists():
            state.offset = part.stat().st_size
            if state.offset > size:
                part.unlink()
                state.offset = 0
            elif state.offset:
                self._emit(base + state.offset, "checking", "reading what was already downloaded", force=True)
                with part.open("rb") as fh:
                    while block := fh.read(CHUNK):
                        self._check_stop()
                        state.hasher.update(block)
        failures = 0
        while state.offset < size:
            self._check_stop()
            before = state.offset
            problem: str
            try:
                self._fetch(meta.url, part, state, size, base)
                if state.offset >= size:
                    break
                if state.offset > before:
                    failures = 0  # progress, then a stall or an early end: reconnect at once
                    continue
                problem = "the server sent no data"
            except _Retryable as exc:
                problem = str(exc)
                if failures >= self.retries:
                    raise exc.error from None
            except httpx2.TransportError as exc:
                problem = f"network error ({type(exc).__name__})"
                if state.offset > before:
                    failures = 0
            failures += 1
            if failures > self.retries:
                raise DownloadError(
                    f"Downloading {f.name} from {self.client.endpoint} keeps failing ({problem}); the "
                    f"{human_size(state.offset)} already downloaded are kept: resume when the network is back.",
                    resumable=True)
            wait = self.backoff * 2 ** min(failures - 1, 5)
            self._emit(base + state.offset, "retrying", f"{problem}; retrying in {wait:.0f} s", force=True)
            log.info("download of %s: %s; retry %d in %.1f s", f.name, problem, failures, wait)
            self._sleep(wait)
        offset, hasher = state.offset, state.hasher
        self._emit(base + offset, "verifying", force=True)
        if offset != size:
            part.unlink(missing_ok=True)
            raise IntegrityError(f"{f.name}: got {offset:,} bytes, the hub lists {size:,}; the file was deleted.")
        if sha256 and hasher.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            raise IntegrityError(
                f"{f.name} is damaged: its sha256 does not match the one the hub published, so it was deleted "
                "and not added to your library. Download it again."
            )
        with part.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(part, final)

    def _with_retries(self, call: Callable[[], _T], done: int) -> _T:
        failures = 0
        while True:
            self._check_stop()
            try:
                return call()
            except HubError as exc:
                if exc.kind not in ("rate_limited", "server", "offline") or failures >= self.retries:
                    raise
                failures += 1
                wait = self.backoff * 2 ** min(failures - 1, 5)
                self._emit(done, "retrying", f"{exc} Retrying in {wait:.0f} s", force=True)
                self._sleep(wait)

    def _fetch(self, url: str, part: Path, state: _FileState, size: int, base: int) -> None:
        """One GET from ``state.offset``, appending to ``part`` and the hash as bytes arrive."""
        headers = self.client.headers({"Accept-Encoding": "identity"})
        if state.offset:
            headers["Range"] = f"bytes={state.offset}-"
        timeout = httpx2.Timeout(connect=15.0, read=self.read_timeout, write=15.0, pool=15.0)
        with get_session().stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
            if response.status_code == 429 or response.status_code >= 500:
                error = explain(_http_error(response), self.record.repo_id, self.client.endpoint,
                                bool(self.client.token))
                raise _Retryable(str(error), error)
            if response.status_code >= 400:
                raise explain(_http_error(response), self.record.repo_id, self.client.endpoint,
                              bool(self.client.token))
            mode = "ab"
            if state.offset and response.status_code == 200:
                log.warning("%s ignored the Range request: downloading %s again from the start",
                            self.client.endpoint, part.name)
                self._emit(base, "downloading", "the server cannot resume: starting this file again", force=True)
                state.offset, state.hasher, mode = 0, hashlib.sha256(), "wb"
            elif state.offset and not response.headers.get("Content-Range", "").startswith(f"bytes {state.offset}-"):
                raise DownloadError(f"the server answered a different range than asked "
                                    f"({response.headers.get('Content-Range')!r}); resume later", resumable=True)
            last_save = time.monotonic()
            window_start, window_bytes = time.monotonic(), 0
            try:
                with part.open(mode) as fh:
                    stream = response.iter_bytes(CHUNK)
                    while True:
                        if self._stop.is_set():
                            fh.flush()
                            raise _Stopped(self._how)
                        try:
                            chunk = next(stream)
                        except StopIteration:
                            break
                        except httpx2.ReadTimeout:
                            # The short read timeout keeps pause and cancel within a second; a stalled
                            # connection is dropped and the caller reconnects from the current offset.
                            break
                        if state.offset + len(chunk) > size:
                            fh.close()
                            part.unlink(missing_ok=True)
                            raise IntegrityError(
                                f"{part.name[:-len(PART_SUFFIX)]}: the server sent more than the {size:,} bytes the "
                                "hub lists; the file was deleted and not added to your library.")
                        fh.write(chunk)
                        state.hasher.update(chunk)
                        state.offset += len(chunk)
                        window_bytes += len(chunk)
                        now = time.monotonic()
                        if now - window_start >= 0.5:
                            rate = window_bytes / (now - window_start)
                            self._speed = rate if self._speed == 0 else 0.7 * self._speed + 0.3 * rate
                            window_start, window_bytes = now, 0
                        self._emit(base + state.offset, "downloading")
                        if now - last_save >= SAVE_EVERY_S:
                            last_save = now
                            fh.flush()
                            self.registry.update_download(self.record.id, done=base + state.offset)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    part.unlink(missing_ok=True)
                    raise DiskSpaceError(
                        f"The disk filled up while downloading {self.record.name}; the partial file was deleted. "
                        f"Free at least {human_size(size)} on {part.parent} and download again."
                    ) from exc
                raise
        self.registry.update_download(self.record.id, done=base + state.offset)

    def _register(self, finals: list[Path]) -> LibraryModel:
        rec = self.record
        finals = [p for p in finals if not is_projector_name(p.name)]  # the projector stays beside the model
        try:
            info = read_gguf(finals[0])
        except InvalidModelError as exc:
            discard_download(rec, self.registry)
            raise IntegrityError(f"{rec.name} downloaded but is not a usable GGUF model ({exc}); it was deleted.") \
                from exc
        accepted = self.registry.acceptance_by_id(rec.acceptance_id) if rec.acceptance_id else None
        return self.registry.add_model(
            finals[0], name=Path(rec.name).stem, source="download", parts=finals if len(finals) > 1 else None,
            repo_id=rec.repo_id, revision=rec.revision, quant=info.quantization,
            size=sum(p.stat().st_size for p in finals), sha256=rec.files[0].sha256,
            license_id=accepted.license_id if accepted else info.license, acceptance_id=rec.acceptance_id,
            meta=model_meta(info),
        )


class _FileState:
    """Bytes on disk of the file being downloaded and their running sha256."""

    def __init__(self) -> None:
        self.offset = 0
        self.hasher = hashlib.sha256()


class _Retryable(Exception):
    def __init__(self, message: str, error: HubError) -> None:
        super().__init__(message)
        self.error = error


def _http_error(response: httpx2.Response) -> Exception:
    try:
        response.read()
        hf_raise_for_status(response)
    except Exception as exc:
        return exc
    return DownloadError(f"unexpected HTTP {response.status_code}")


def sweep_orphans(registry: Registry, root: Path | None = None) -> list[Path]:
    """At start: downloads left 'running' by a killed app become 'paused'; stray .part files are deleted."""
    for rec in registry.downloads(("running",)):
        registry.update_download(rec.id, status="paused", error="Interrupted when Paddock stopped; resume to continue.")
    keep = set()
    for rec in registry.downloads(("queued", "paused", "failed", "running")):
        for f in rec.files:
            try:
                keep.add(part_path(final_path(rec, f)))
            except PaddockError:
                continue
    removed = []
    for part in (root or paths.models_dir()).rglob("*" + PART_SUFFIX):
        if part.resolve() not in keep:
            log.info("removing an orphaned partial download: %s", part)
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed
