"""Downloads: the real huggingface_hub client against the local test hub, with injected faults."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import pytest

from app import paths
from app.errors import HubError, IntegrityError, LicenseNotAcceptedError
from app.models import auth
from app.models.download import DISK_MARGIN, DownloadTask, Progress, human_size, part_path, sweep_orphans
from app.models.hub import HubClient
from app.models.library import Library
from app.models.licenses import describe
from app.models.registry import DownloadRecord
from app.models.variants import list_variants
from tests.hubserver import GEMMA, LLAMA, HubServer
from tests.hubserver import GEMMA_FILE as FILE


def queue(hub: HubServer, library: Library, repo: str = GEMMA, token: str | None = None) -> tuple[HubClient,
                                                                                               DownloadRecord]:
    client = HubClient(hub.url, token)
    details = client.details(repo)
    variant = list_variants(client, details).variants[0]
    acceptance = library.accept(describe(details, client))
    return client, library.queue_download(details, variant, acceptance)


def task(library: Library, client: HubClient, record: DownloadRecord, **kw: object) -> DownloadTask:
    fresh = library.registry.download(record.id)
    return DownloadTask(library.registry, fresh, client, backoff=0.01, **kw)  # type: ignore[arg-type]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def final_path(record: DownloadRecord) -> Path:
    return record.dest_dir / record.files[0].name


def test_full_download_is_verified_and_registered(hub: HubServer, library: Library, test_model: Path) -> None:
    client, record = queue(hub, library)
    seen: list[Progress] = []
    model = task(library, client, record, on_progress=seen.append).run()
    assert model is not None
    assert model.path == final_path(record)
    assert model.path.is_relative_to(paths.models_dir() / GEMMA)
    assert sha256(model.path) == sha256(test_model) == model.sha256
    assert model.repo_id == GEMMA
    assert model.acceptance_id is not None
    assert model.meta["architecture"] == "gemma3"
    assert not part_path(model.path).exists()
    assert library.registry.download(record.id).status == "done"
    states = [p.state for p in seen]
    assert states[0] == "connecting"
    assert "downloading" in states
    assert states[-2:] == ["verifying", "done"]
    assert seen[-1].done == seen[-1].total == test_model.stat().st_size


def test_license_must_be_accepted_first(hub: HubServer, library: Library) -> None:
    client, record = queue(hub, library)
    library.registry.revoke(GEMMA)
    with pytest.raises(LicenseNotAcceptedError):
        task(library, client, record).run()
    assert not final_path(record).exists()


def test_drop_at_half_resumes_with_range(hub: HubServer, library: Library, test_model: Path) -> None:
    hub.faults[FILE] = {"drop_at": 0.5}
    client, record = queue(hub, library)
    model = task(library, client, record).run()
    assert model is not None
    assert sha256(model.path) == sha256(test_model)
    ranges = hub.ranges_for(FILE)
    assert ranges[0] == ""
    assert ranges[1].startswith("bytes=")
    assert int(ranges[1][6:].rstrip("-")) >= test_model.stat().st_size // 2 - (1 << 20)


def test_flipped_byte_is_caught_and_nothing_is_registered(hub: HubServer, library: Library) -> None:
    hub.faults[FILE] = {"flip_byte": 1234567}
    client, record = queue(hub, library)
    with pytest.raises(IntegrityError, match="sha256"):
        task(library, client, record).run()
    final = final_path(record)
    assert not final.exists()
    assert not part_path(final).exists()
    assert library.registry.models() == []
    assert library.registry.download(record.id).status == "failed"


def test_body_longer_than_the_listed_size(hub: HubServer, library: Library) -> None:
    hub.faults[FILE] = {"extra_bytes": 4096}
    client, record = queue(hub, library)
    with pytest.raises(IntegrityError, match="more than"):
        task(library, client, record).run()
    assert not part_path(final_path(record)).exists()
    assert library.registry.models() == []


def file_requests(hub: HubServer, since: int) -> list[str]:
    """The methods of the requests for the model file after the first ``since`` requests."""
    return [m for m, p, _h in hub.requests[since:] if p.endswith("/" + FILE)]


RATE_LIMITED = "Hugging Face is rate-limiting requests: wait a minute and try again."


def test_rate_limit_and_server_errors_are_retried(hub: HubServer, library: Library, test_model: Path) -> None:
    client, record = queue(hub, library)
    hub.faults[FILE] = {"status_first": [429, 503, 429]}  # (set after queueing: it reads the file's header)
    since = len(hub.requests)
    retries: list[str] = []
    model = task(library, client, record, on_progress=lambda p: retries.append(p.message) if p.state == "retrying"
                 else None).run()
    assert model is not None
    assert sha256(model.path) == sha256(test_model)
    # one retry per refused request, each saying why (with the tests' 0.01 s backoff: "0 s")
    assert retries == [f"{RATE_LIMITED} Retrying in 0 s", f"{hub.url} had an error (HTTP 503); try again later. "
                       "Retrying in 0 s", f"{RATE_LIMITED} Retrying in 0 s"]
    assert file_requests(hub, since) == ["HEAD"] * 4 + ["GET"]  # three refused, then the file


def test_persistent_server_error_gives_up_with_a_message(hub: HubServer, library: Library) -> None:
    client, record = queue(hub, library)
    hub.faults[FILE] = {"status_first": [500] * 50}
    since = len(hub.requests)
    with pytest.raises(HubError) as err:
        task(library, client, record, retries=2).run()
    assert str(err.value) == f"{hub.url} had an error (HTTP 500); try again later."
    assert err.value.kind == "server"
    assert file_requests(hub, since) == ["HEAD"] * 3  # the first try and two retries, then it gave up
    assert library.registry.models() == []
    assert library.registry.download(record.id).status == "failed"


def test_pause_then_resume_even_if_the_server_ignores_range(hub: HubServer, library: Library,
                                                           test_model: Path) -> None:
    hub.faults[FILE] = {"delay": 0.002}
    client, record = queue(hub, library)
    first = task(library, client, record)
    thread = threading.Thread(target=first.run)
    thread.start()
    part = part_path(final_path(record))
    _wait_for(lambda: part.exists() and part.stat().st_size > 20_000_000)
    first.pause()
    thread.join(30)
    assert not thread.is_alive()
    assert library.registry.download(record.id).status == "paused"
    kept = part.stat().st_size
    assert 0 < kept < test_model.stat().st_size
    hub.faults[FILE] = {"ignore_range": True}
    model = task(library, client, record).run()
    assert model is not None
    assert sha256(model.path) == sha256(test_model)
    assert hub.ranges_for(FILE)[-1] == f"bytes={kept}-"  # asked to resume; the server sent it all


def test_cancel_stops_removes_the_partial_file_and_other_downloads_go_on(hub: HubServer, library: Library,
                                                                         test_model: Path) -> None:
    hub.faults[FILE] = {"delay": 0.002}
    client, record = queue(hub, library)
    client2, record2 = queue(hub, library, LLAMA, token="hf_good_token")
    doomed = task(library, client, record)
    other = task(library, client2, record2)
    results: dict[str, object] = {}
    t1 = threading.Thread(target=lambda: results.setdefault("doomed", doomed.run()))
    t2 = threading.Thread(target=lambda: results.setdefault("other", other.run()))
    t1.start()
    t2.start()
    part = part_path(final_path(record))
    _wait_for(lambda: part.exists() and part.stat().st_size > 5_000_000)
    doomed.cancel()
    t1.join(30)
    assert not t1.is_alive()
    assert results["doomed"] is None
    assert not part.exists()
    assert library.registry.download(record.id).status == "cancelled"
    t2.join(120)
    assert results["other"] is not None
    assert sha256(final_path(record2)) == sha256(test_model)


def test_not_enough_disk_is_refused_before_starting(hub: HubServer, paddock_home: Path) -> None:
    """A real full disk: `paddock models pull` runs with the models folder on a 1 MB tmpfs in its own
    mount namespace (as tests/cli does for kept states), against the local test hub."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("a private tmpfs needs unshare and root")
    models = paths.models_dir()
    wrap = ["unshare", "--mount", "sh", "-c", f'mount -t tmpfs -o size=1m none "{models}" && exec "$@"', "sh"]
    pulled = subprocess.run([*wrap, sys.executable, "-m", "app.cli", "models", "pull", GEMMA, "--accept-license",
                             "--endpoint", hub.url], env={**os.environ, "PADDOCK_HOME": str(paddock_home)},
                            capture_output=True, text=True, timeout=300, check=False)
    assert pulled.returncode == 1, pulled.stderr
    assert pulled.stderr.endswith(  # the DiskSpaceError, as the CLI tells it
        f"paddock: error: Not enough disk space for {FILE}: it needs 253.1 MB free on {models / GEMMA} "
        f"(plus {human_size(DISK_MARGIN)} to spare) but only 1.0 MB is available. Free some space or choose a "
        "smaller quantization.\n")
    assert hub.ranges_for(FILE) == []  # the download never started (only the header was read, for the listing)
    assert list(models.iterdir()) == []  # outside the namespace: nothing was written here


def test_killed_download_resumes_in_a_new_process(hub: HubServer, test_model: Path, paddock_home: Path) -> None:
    hub.faults[FILE] = {"delay": 0.004}
    env = {**os.environ, "PADDOCK_HOME": str(paddock_home)}
    cmd = [sys.executable, "-m", "app.cli", "models", "pull", GEMMA, "--accept-license", "--endpoint", hub.url]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = part_path(paths.models_dir() / GEMMA / FILE)
    _wait_for(lambda: part.exists() and part.stat().st_size > 30_000_000)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    kept = part.stat().st_size
    assert 0 < kept < test_model.stat().st_size
    hub.faults.pop(FILE)
    # At the next start the interrupted download is found paused, and its partial file is kept.
    library = Library()
    try:
        assert sweep_orphans(library.registry) == []
        assert [d.status for d in library.registry.downloads()] == ["paused"]
    finally:
        library.close()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "Added to your library" in done.stdout
    resumed_from = int(hub.ranges_for(FILE)[-1].removeprefix("bytes=").rstrip("-"))
    assert resumed_from >= kept
    assert sha256(paths.models_dir() / GEMMA / FILE) == sha256(test_model)


def test_orphaned_partial_files_are_swept(library: Library) -> None:
    stray = paths.models_dir() / "someone" / "repo" / "old.gguf.part"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x" * 100)
    assert sweep_orphans(library.registry) == [stray]
    assert not stray.exists()


def test_gated_download_needs_the_right_token(hub: HubServer, library: Library) -> None:
    for token, kind in ((None, "not_signed_in"), ("hf_not_accepted", "license_not_accepted")):
        client, record = queue(hub, library, LLAMA, token=token)
        with pytest.raises(HubError) as err:
            task(library, client, record).run()
        assert err.value.kind == kind
        assert library.registry.download(record.id).status == "failed"
        library.registry.delete_download(record.id)


def _wait_for(condition: object, limit: float = 120.0) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


# -- the token ---------------------------------------------------------------------------------


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


class DroppingKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        pass  # accepts the write and keeps nothing, like some misconfigured backends


@pytest.fixture
def keyring_backend() -> Iterator[None]:
    # The OS keyring is a boundary this machine does not have (no Secret Service on CI): each test sets a backend.
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


def test_token_in_a_working_keyring(keyring_backend: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    store = auth.TokenStore()
    result = store.save("hf_secret_value")
    assert result.persistent
    assert backend.store[(auth.SERVICE, auth.ACCOUNT)] == "hf_secret_value"
    assert auth.TokenStore().get() == "hf_secret_value"  # a new session reads it back
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert store.get() == "hf_from_env"
    assert store.source() == "environment"
    store.clear()
    monkeypatch.delenv("HF_TOKEN")
    assert store.get() is None


@pytest.mark.parametrize("backend", [keyring.backends.fail.Keyring(), DroppingKeyring()])
def test_token_without_a_working_keyring_is_kept_for_the_session(
    keyring_backend: None, backend: keyring.backend.KeyringBackend, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, paddock_home: Path,
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    keyring.set_keyring(backend)
    store = auth.TokenStore()
    result = store.save("hf_secret_value")
    assert not result.persistent
    assert "this session" in result.message or "until you quit" in result.message
    assert store.get() == "hf_secret_value"
    assert store.source() == "session"
    assert auth.TokenStore().get() is None  # not written anywhere else
    assert "hf_secret_value" not in caplog.text
    for file in paddock_home.rglob("*"):
        if file.is_file():
            assert b"hf_secret_value" not in file.read_bytes()
