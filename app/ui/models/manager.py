"""The model manager's work off the GUI thread, reported back as Qt signals.

Hub requests, downloads (two at a time, the rest queued), imports and
quantizations run on worker threads; every result or error arrives as a signal,
so the window never waits on the network or the disk.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.engine import hardware
from app.errors import PaddockError
from app.models.auth import SaveResult, TokenStore, token_store
from app.models.download import DownloadTask, discard_download, sweep_orphans
from app.models.hub import HubClient, RepoDetails, default_endpoint
from app.models.library import Library
from app.models.licenses import LicenseInfo, describe
from app.models.quantize import QuantizeJob, register_quantized
from app.models.registry import DownloadRecord
from app.models.variants import Variant, VariantList, list_variants

log = logging.getLogger(__name__)
MAX_PARALLEL_DOWNLOADS = 2


@dataclass(frozen=True)
class RepoView:
    """Everything the Discover pane shows for one repo."""

    details: RepoDetails
    variants: VariantList
    license: LicenseInfo
    accepted_at: float | None


class ModelManager(QObject):
    searchDone = Signal(object, str)  # list[RepoSummary], error ("" when fine)
    repoLoaded = Signal(str, object, str)  # repo_id, RepoView | None, error
    downloadsChanged = Signal()
    downloadProgress = Signal(object)  # Progress
    downloadFinished = Signal(int, str)  # download id, error ("" when done, paused or cancelled)
    libraryChanged = Signal()
    jobProgress = Signal(str, int, int)  # what, done, total (import / quantize)
    jobFinished = Signal(str, str)  # what, error

    def __init__(self, endpoint: str | None = None, tokens: TokenStore | None = None,
                 library: Library | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint or default_endpoint()
        self.tokens = tokens or token_store()
        self.library = library or Library()
        self._tasks: dict[int, DownloadTask] = {}
        self._waiting: deque[int] = deque()
        self._lock = threading.Lock()
        self._job: QuantizeJob | None = None
        self.swept = sweep_orphans(self.library.registry)

    # -- helpers -----------------------------------------------------------------

    def client(self) -> HubClient:
        return HubClient(self.endpoint, self.tokens.get())

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with self._lock:
            tasks = list(self._tasks.values())
            self._waiting.clear()
        for task in tasks:
            task.pause()  # resumable next time
        if self._job is not None:
            self._job.cancel()
        self.library.close()

    # -- discover ----------------------------------------------------------------

    def search(self, query: str, sort: str) -> None:
        def work() -> None:
            try:
                self.searchDone.emit(self.client().search(query, sort=sort), "")  # type: ignore[arg-type]
            except PaddockError as exc:
                self.searchDone.emit([], str(exc))

        self._spawn(work, "hub-search")

    def open_repo(self, repo_id: str, hw: hardware.Hardware | None = None) -> None:
        def work() -> None:
            try:
                client = self.client()
                details = client.details(repo_id)
                variants = list_variants(client, details, hw=hw)
                lic = describe(details, client)
                accepted = self.library.accepted(lic)
                view = RepoView(details, variants, lic, accepted.accepted_at if accepted else None)
                self.repoLoaded.emit(repo_id, view, "")
            except PaddockError as exc:
                self.repoLoaded.emit(repo_id, None, str(exc))

        self._spawn(work, "hub-repo")

    def accept_license(self, view: RepoView) -> RepoView:
        acc = self.library.accept(view.license)
        return RepoView(view.details, view.variants, view.license, acc.accepted_at)

    # -- downloads ---------------------------------------------------------------

    def download(self, view: RepoView, variant: Variant) -> DownloadRecord:
        acceptance = self.library.accepted(view.license)
        if acceptance is None:
            raise PaddockError("accept the model's license before downloading it")
        record = self.library.queue_download(view.details, variant, acceptance)
        self.resume(record.id)
        return record

    def downloads(self) -> list[DownloadRecord]:
        return [d for d in self.library.registry.downloads() if d.status != "cancelled"]

    def is_active(self, download_id: int) -> bool:
        with self._lock:
            return download_id in self._tasks or download_id in self._waiting

    def resume(self, download_id: int) -> None:
        task: DownloadTask | None = None
        with self._lock:
            if download_id in self._tasks or download_id in self._waiting:
                return
            if len(self._tasks) >= MAX_PARALLEL_DOWNLOADS:
                self._waiting.append(download_id)
                self.library.registry.update_download(download_id, status="queued")
            else:
                record = self.library.registry.download(download_id)
                task = DownloadTask(self.library.registry, record, self.client(),
                                    on_progress=self.downloadProgress.emit)
                self._tasks[download_id] = task
        # Emitted outside the lock: the slots ask is_active(), which takes it.
        self.downloadsChanged.emit()
        if task is not None:
            self._spawn(lambda: self._run(download_id, task), f"download-{download_id}")

    def _run(self, download_id: int, task: DownloadTask) -> None:
        error = ""
        try:
            model = task.run()
            if model is not None:
                self.libraryChanged.emit()
        except PaddockError as exc:
            error = str(exc)
        except Exception as exc:
            log.exception("download %d failed", download_id)
            error = f"Unexpected error: {exc}"
        with self._lock:
            self._tasks.pop(download_id, None)
            following = self._waiting.popleft() if self._waiting else None
        self.downloadFinished.emit(download_id, error)
        self.downloadsChanged.emit()
        if following is not None:
            self.resume(following)

    def pause(self, download_id: int) -> None:
        with self._lock:
            task = self._tasks.get(download_id)
            if download_id in self._waiting:
                self._waiting.remove(download_id)
                self.library.registry.update_download(download_id, status="paused")
        if task is not None:
            task.pause()
        self.downloadsChanged.emit()

    def cancel(self, download_id: int) -> None:
        with self._lock:
            task = self._tasks.get(download_id)
            if download_id in self._waiting:
                self._waiting.remove(download_id)
        if task is not None:
            task.cancel()
            return
        discard_download(self.library.registry.download(download_id), self.library.registry)
        self.library.registry.update_download(download_id, status="cancelled")
        self.downloadsChanged.emit()

    # -- the token -----------------------------------------------------------------

    def save_token(self, token: str) -> tuple[SaveResult, str]:
        """Save, then check the token with the hub: (where it is kept, who it belongs to or why not)."""
        result = self.tokens.save(token)
        try:
            who = f"Signed in as {HubClient(self.endpoint, token.strip()).whoami()}."
        except PaddockError as exc:
            who = str(exc)
        return result, who

    # -- library jobs --------------------------------------------------------------

    def import_file(self, path: Path, link: bool) -> None:
        def work() -> None:
            try:
                self.library.import_file(path, link=link,
                                         on_progress=lambda d, t: self.jobProgress.emit("import", d >> 20, t >> 20))
                self.jobFinished.emit("import", "")
                self.libraryChanged.emit()
            except PaddockError as exc:
                self.jobFinished.emit("import", str(exc))

        self._spawn(work, "import")

    def quantize(self, source: Path, target: str) -> None:
        def progress(done: int, total: int) -> None:
            self.jobProgress.emit("quantize", done, total)

        def work() -> None:
            try:
                job = QuantizeJob(source, target, on_progress=progress)
                self._job = job
                job.run()
                register_quantized(job)  # with its lineage, as the CLI does
                self.jobFinished.emit("quantize", "")
                self.libraryChanged.emit()
            except PaddockError as exc:
                self.jobFinished.emit("quantize", str(exc))
            finally:
                self._job = None

        self._spawn(work, "quantize")

    def cancel_job(self) -> None:
        if self._job is not None:
            self._job.cancel()

