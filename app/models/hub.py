"""Talking to Hugging Face (or any compatible hub) through ``huggingface_hub``.

Every request passes ``endpoint=`` and ``token=`` explicitly: the library reads
``HF_ENDPOINT`` at import and would otherwise pick up a token saved by
``huggingface-cli login``; Paddock's token comes only from its own store
(:mod:`app.models.auth`). Errors are translated once, in :func:`explain`, into
:class:`~app.errors.HubError` with a message the user can act on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx2
from huggingface_hub import HfApi, ModelInfo, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from app.errors import HubError, UnsafePathError

if TYPE_CHECKING:
    from app.engine.gguf_file import TensorEntry

_Parsed = TypeVar("_Parsed")

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
TOKEN_SETTINGS_URL = "https://huggingface.co/settings/tokens"  # noqa: S105 - a web page, not a secret
Sort = Literal["downloads", "likes", "recent"]
_SORT_PARAM = {"downloads": "downloads", "likes": "likes", "recent": "lastModified"}
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# The first request for a GGUF header; doubled up to the cap until the metadata is complete.
HEADER_FIRST_BYTES = 2 << 20
HEADER_MAX_BYTES = 32 << 20


def default_endpoint() -> str:
    """The hub to talk to: ``HF_ENDPOINT`` (a mirror or a test hub) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID_RE.match(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a Hugging Face repo id (expected owner/name)", kind="not_found")
    return repo_id


def safe_relative_path(name: str) -> PurePosixPath:
    """A file name from a repo listing as a path that stays inside the destination folder.

    Raises:
        UnsafePathError: absolute paths, ``..``, drive letters, backslashes or empty parts.
    """
    bad = (
        not name
        or name.startswith(("/", "~"))
        or "\\" in name
        or re.match(r"^[A-Za-z]:", name) is not None
        or "\0" in name
    )
    parts = name.split("/")
    if bad or any(part in ("", ".", "..") for part in parts):
        raise UnsafePathError(
            f"refusing the file name {name!r} from the repo listing: it would leave the models folder"
        )
    return PurePosixPath(name)


@dataclass(frozen=True)
class RepoSummary:
    repo_id: str
    downloads: int
    likes: int
    last_modified: datetime | None
    gated: bool
    license: str | None


@dataclass(frozen=True)
class RepoFile:
    name: str
    size: int
    sha256: str | None  # the LFS sha256; None for small non-LFS files


@dataclass(frozen=True)
class RepoDetails:
    repo_id: str
    commit: str
    files: list[RepoFile]
    card: dict[str, Any] = field(default_factory=dict)
    gated: bool = False

    def file(self, name: str) -> RepoFile | None:
        return next((f for f in self.files if f.name == name), None)


@dataclass(frozen=True)
class FileMetadata:
    url: str
    size: int
    sha256: str | None
    commit: str | None


def _server_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if response is None:
        return str(exc)
    return str(response.headers.get("X-Error-Message") or getattr(exc, "server_message", "") or exc)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return int(response.status_code) if response is not None else None


def explain(exc: BaseException, repo_id: str | None, endpoint: str, signed_in: bool) -> HubError:
    """One message per failure a user can meet with a hub (RELIABILITY.md, downloads)."""
    if isinstance(exc, HubError):
        return exc
    # The library can wrap the HTTP error (LocalEntryNotFoundError from a failed HEAD): follow the cause.
    seen = exc
    while isinstance(seen, LocalEntryNotFoundError) and seen.__cause__ is not None:
        seen = seen.__cause__
    repo_url = f"{endpoint}/{repo_id}" if repo_id else endpoint
    message = _server_message(seen)
    status = _status(seen)
    if status == 401 and "invalid credentials" in message.lower():
        return HubError(
            "Your Hugging Face token is invalid or has been revoked: enter a new token "
            f"(create one at {TOKEN_SETTINGS_URL}).",
            kind="invalid_token", url=TOKEN_SETTINGS_URL,
        )
    if "fine-grained" in message.lower():
        return HubError(
            "Your fine-grained Hugging Face token cannot read gated repos: enable "
            "\"Read access to contents of all public gated repos you can access\" for this token at "
            f"{TOKEN_SETTINGS_URL}, or use a read token.",
            kind="fine_grained", url=TOKEN_SETTINGS_URL,
        )
    if isinstance(seen, GatedRepoError):
        if status == 401 or not signed_in:
            return HubError(
                f"{repo_id} is a gated model: sign in with your Hugging Face token "
                f"(Models → Hugging Face token), after accepting its license at {repo_url}.",
                kind="not_signed_in", url=repo_url,
            )
        return HubError(
            f"You have not accepted the license of {repo_id} on Hugging Face yet: accept it at {repo_url} "
            "(while signed in as the owner of your token), then try again.",
            kind="license_not_accepted", url=repo_url,
        )
    if isinstance(seen, RevisionNotFoundError):
        return HubError(f"{repo_id} has no such revision.", kind="not_found", url=repo_url)
    if isinstance(seen, EntryNotFoundError):
        return HubError(f"That file is not in {repo_id} (was it renamed? refresh the file list).", kind="not_found",
                        url=repo_url)
    if isinstance(seen, RepositoryNotFoundError):
        hint = "" if signed_in else " If it is private, sign in with a token that can read it."
        return HubError(f"No model repo {repo_id} was found on {endpoint}.{hint}", kind="not_found")
    if status == 429:
        return HubError("Hugging Face is rate-limiting requests: wait a minute and try again.", kind="rate_limited")
    if status == 403:
        return HubError(f"Hugging Face refused access to {repo_id}: {message}", kind="server", url=repo_url)
    if isinstance(seen, HfHubHTTPError) and status is not None and status >= 500:
        return HubError(f"{endpoint} had an error (HTTP {status}); try again later.", kind="server")
    if isinstance(seen, httpx2.TransportError | OSError) or isinstance(exc, LocalEntryNotFoundError):
        return HubError(
            f"Cannot reach {endpoint}: you seem to be offline (models already downloaded still work).",
            kind="offline",
        )
    if isinstance(seen, HfHubHTTPError):
        return HubError(f"{endpoint} answered HTTP {status}: {message}", kind="server")
    return HubError(f"Unexpected error talking to {endpoint}: {seen}", kind="server")


class HubClient:
    """The hub as Paddock uses it: search, repo files, small text files, metadata, GGUF headers."""

    def __init__(self, endpoint: str | None = None, token: str | None = None, timeout: float = 20.0) -> None:
        self.endpoint = (endpoint or default_endpoint()).rstrip("/")
        self.token = token
        self.timeout = timeout
        self.api = HfApi(endpoint=self.endpoint, token=self._token_arg())

    def _token_arg(self) -> str | bool:
        return self.token if self.token else False

    @contextmanager
    def _errors(self, repo_id: str | None) -> Iterator[None]:
        try:
            yield
        except HubError:
            raise
        except Exception as exc:
            raise explain(exc, repo_id, self.endpoint, signed_in=bool(self.token)) from exc

    def whoami(self) -> str:
        """The token owner's user name; HubError(invalid_token) when the token is refused."""
        with self._errors(None):
            info = self.api.whoami(token=self._token_arg())
        return str(info.get("name", "?"))

    def search(self, query: str, sort: Sort = "downloads", limit: int = 30) -> list[RepoSummary]:
        """GGUF repos matching ``query``, most downloaded (or liked, or recent) first.

        One request (the first page), without ``HfApi.list_models``'s retry loop, which keeps an
        offline search waiting for 20 seconds before it can say "offline".
        """
        params: dict[str, Any] = {"filter": "gguf", "sort": _SORT_PARAM[sort],
                                  "direction": -1, "limit": limit}
        if query:
            params["search"] = query
        with self._errors(None):
            response = get_session().get(f"{self.endpoint}/api/models", params=params, headers=self.headers(),
                                         timeout=self.timeout)
            hf_raise_for_status(response)
            items = response.json()
        found = []
        for item in items:
            m = ModelInfo(**{"siblings": None, **item})
            license_tag = next((t.split(":", 1)[1] for t in (m.tags or []) if t.startswith("license:")), None)
            found.append(RepoSummary(
                repo_id=m.id, downloads=int(m.downloads or 0), likes=int(m.likes or 0),
                last_modified=m.last_modified, gated=bool(m.gated), license=license_tag,
            ))
        return found

    def details(self, repo_id: str) -> RepoDetails:
        check_repo_id(repo_id)
        with self._errors(repo_id):
            info = self.api.model_info(repo_id, files_metadata=True, token=self._token_arg(), timeout=self.timeout)
        files = [
            RepoFile(s.rfilename, int((s.lfs.size if s.lfs else s.size) or 0), s.lfs.sha256 if s.lfs else None)
            for s in info.siblings or []
        ]
        card = info.card_data.to_dict() if info.card_data is not None else {}
        return RepoDetails(repo_id=info.id, commit=info.sha or "main", files=files, card=card,
                           gated=bool(info.gated))

    def url(self, repo_id: str, filename: str, revision: str | None = None) -> str:
        return hf_hub_url(repo_id, filename, revision=revision, endpoint=self.endpoint)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return build_hf_headers(token=self._token_arg(), library_name="paddock", headers=extra)

    def file_metadata(self, repo_id: str, filename: str, revision: str | None = None) -> FileMetadata:
        url = self.url(repo_id, filename, revision)
        with self._errors(repo_id):
            meta = get_hf_file_metadata(url, token=self._token_arg(), endpoint=self.endpoint, timeout=self.timeout,
                                        retry_on_errors=False)  # the downloader retries, with its own backoff
        sha = meta.etag if meta.etag and re.fullmatch(r"[0-9a-f]{64}", meta.etag) else None
        return FileMetadata(url=url, size=int(meta.size or 0), sha256=sha, commit=meta.commit_hash)

    def fetch_text(self, repo_id: str, filename: str, revision: str | None = None, max_bytes: int = 2 << 20) -> str:
        """A small text file (model card, license), read into memory; never into the HF cache."""
        url = self.url(repo_id, filename, revision)
        with self._errors(repo_id):
            response = get_session().get(url, headers=self.headers(), timeout=self.timeout, follow_redirects=True)
            hf_raise_for_status(response)
        return response.content[:max_bytes].decode("utf-8", errors="replace")

    def fetch_range(self, repo_id: str, filename: str, start: int, end: int, revision: str | None = None) -> bytes:
        """Bytes [start, end) of a file (the server may send the whole file: we cut it)."""
        url = self.url(repo_id, filename, revision)
        with self._errors(repo_id):
            headers = self.headers({"Range": f"bytes={start}-{end - 1}"})
            with get_session().stream("GET", url, headers=headers, timeout=self.timeout,
                                      follow_redirects=True) as response:
                hf_raise_for_status(response)
                skip = start if response.status_code == 200 else 0
                out = bytearray()
                for chunk in response.iter_bytes():
                    out += chunk
                    if len(out) >= skip + (end - start):
                        break
        return bytes(out[skip: skip + (end - start)])

    def read_gguf_metadata(self, repo_id: str, filename: str, revision: str | None = None) -> dict[str, Any]:
        """The metadata of a remote GGUF file from its first megabytes (no weights downloaded)."""
        from app.engine.gguf_file import parse_metadata

        return self._read_prefix(repo_id, filename, revision, parse_metadata)

    def read_gguf_header(self, repo_id: str, filename: str,
                         revision: str | None = None) -> tuple[dict[str, Any], tuple[TensorEntry, ...]]:
        """Metadata and tensor table of a remote GGUF file (what the placement planner needs)."""
        from app.engine.gguf_file import parse_header

        return self._read_prefix(repo_id, filename, revision, parse_header)

    def _read_prefix(self, repo_id: str, filename: str, revision: str | None,
                     parse: Callable[[bytes, str], _Parsed]) -> _Parsed:
        """Ranged GETs of a growing prefix until ``parse`` has what it needs."""
        from app.engine.gguf_file import NeedMoreBytes

        size = HEADER_FIRST_BYTES
        while True:
            data = self.fetch_range(repo_id, filename, 0, size, revision)
            try:
                return parse(data, filename)
            except NeedMoreBytes:
                if len(data) < size or size >= HEADER_MAX_BYTES:
                    raise HubError(f"the header of {filename} is larger than {HEADER_MAX_BYTES >> 20} MB or cut short",
                                   kind="server") from None
                size *= 2
