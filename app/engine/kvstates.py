"""Kept conversation states: KV-cache snapshots, in RAM and on disk, found by token prefix.

The engine keeps one llama.cpp sequence.  When a prompt would overwrite a long
evaluated conversation (the user switched chats, or regenerated far back), the
sequence is first snapshotted (``llama_state_seq_get_data``) into this store.
When a prompt starts with a kept state's tokens, the state is put back
(``llama_state_seq_set_data``) and only the new tokens are evaluated.  Returning
to a chat, or reopening Paddock (states are written to disk when the model is
unloaded and when RAM runs over its budget), costs only what is new.

A state is only valid for the same model file and the same context settings
(size, KV cache types, flash attention), so each file carries a key of those;
a file is also checked against its length and a SHA-256 of its tokens and data
before llama.cpp sees it.  Anything that does not check out (truncated,
corrupted, unreadable, claiming another key under this key's name) is ignored
with a log line and removed; a full disk skips the save.  Nothing here may stop
an answer: every failure falls back to evaluating the prompt.

File format (``<key>-<id>.kvstate``)::

    b"PDKVSTATE1\\n" | u64 header length | JSON header | state bytes

with the header ``{"key", "tokens", "size", "sha256"}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("paddock.engine.kvstates")

MAGIC = b"PDKVSTATE1\n"
SUFFIX = ".kvstate"
MIN_TOKENS = 64  # shorter conversations are cheaper to evaluate again than to keep
MAX_HEADER = 64 * 1024 * 1024


@dataclass
class KeptState:
    tokens: tuple[int, ...]
    size: int
    data: bytes | None = None  # in RAM
    path: Path | None = None  # on disk (also when in RAM, once written)
    used_at: float = field(default_factory=time.monotonic)


def state_key(model_path: str, settings: Sequence[object]) -> str:
    """What a state depends on: the model file (path, size, modification time), the
    context settings and the llama.cpp build."""
    import llama_cpp

    st = os.stat(model_path)
    raw = json.dumps([os.path.realpath(model_path), st.st_size, st.st_mtime_ns, list(map(str, settings)),
                      llama_cpp.__version__])
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def states_folder() -> Path:
    from app import paths

    return paths.cache_dir() / "kv-states"


def folder_usage(folder: Path) -> tuple[int, int]:
    """(bytes, files) of the kept states on disk."""
    sizes = []
    for path in folder.glob(f"*{SUFFIX}"):
        with contextlib.suppress(OSError):
            sizes.append(path.stat().st_size)
    return sum(sizes), len(sizes)


def clear_folder(folder: Path) -> int:
    """Remove every kept state on disk; the number removed."""
    removed = 0
    for path in [*folder.glob(f"*{SUFFIX}"), *folder.glob("*.partial")]:
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def _digest(tokens: Sequence[int], data: bytes) -> str:
    h = hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens))
    h.update(data)
    return h.hexdigest()


class StateStore:
    """The kept states of one model and setting, within a RAM and a disk budget (LRU).

    Args:
        folder: where state files live (shared by all models; files carry their key).
        key: :func:`state_key` of the loaded model and settings.
        ram_budget / disk_budget: bytes; 0 keeps nothing there.
    """

    def __init__(self, folder: Path, key: str, ram_budget: int, disk_budget: int) -> None:
        self.folder = folder
        self.key = key
        self.ram_budget = ram_budget
        self.disk_budget = disk_budget
        self.states: list[KeptState] = []
        self._scan()

    # -- finding -----------------------------------------------------------------

    def best(self, tokens: Sequence[int]) -> tuple[KeptState, int] | None:
        """The kept state sharing the longest prefix with ``tokens``, and that length."""
        found: tuple[KeptState, int] | None = None
        for state in self.states:
            n = common_prefix(state.tokens, tokens)
            if n >= MIN_TOKENS and (found is None or n > found[1]):
                found = (state, n)
        return found

    def data(self, state: KeptState) -> bytes | None:
        """The state's bytes (read and checked from disk if needed); None if unusable (then removed)."""
        state.used_at = time.monotonic()
        if state.data is not None:
            return state.data
        assert state.path is not None
        try:
            loaded = _read(state.path, self.key, with_data=True)
        except (OSError, ValueError) as exc:
            log.warning("kept state %s is unusable (%s): removed", state.path.name, exc)
            self.discard(state)
            return None
        return loaded[1]

    # -- keeping -----------------------------------------------------------------

    def put(self, tokens: Sequence[int], data: bytes) -> None:
        """Keep a snapshot in RAM; states it extends are dropped (the same chat, further on)."""
        if len(tokens) < MIN_TOKENS or not data:
            return
        tokens = tuple(tokens)
        for old in list(self.states):
            if common_prefix(old.tokens, tokens) == len(old.tokens):
                self.discard(old)
        self.states.append(KeptState(tokens, len(data), data=data))
        self._fit_ram()

    def flush(self) -> None:
        """Write every state only in RAM to disk (the model is being unloaded)."""
        for state in list(self.states):
            if state.data is not None and state.path is None:
                self._write(state)
            state.data = None
        self.states = [s for s in self.states if s.path is not None]
        self._fit_disk()

    def clear(self) -> None:
        for state in list(self.states):
            self.discard(state)

    def ram_bytes(self) -> int:
        return sum(s.size for s in self.states if s.data is not None)

    # -- internals ---------------------------------------------------------------

    def _fit_ram(self) -> None:
        in_ram = sorted((s for s in self.states if s.data is not None), key=lambda s: s.used_at)
        total = sum(s.size for s in in_ram)
        for state in in_ram:
            if total <= self.ram_budget:
                break
            if state.path is None:
                self._write(state)  # spill to disk, or lose it if the disk cannot take it
            state.data = None
            total -= state.size
            if state.path is None:
                self.states.remove(state)
        self._fit_disk()

    def _fit_disk(self) -> None:
        """Remove the least recently used files (of any model) beyond the disk budget."""
        files = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            with contextlib.suppress(OSError):
                st = path.stat()
                files.append((self._used_at(path, st.st_mtime), st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.disk_budget:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size
            for state in [s for s in self.states if s.path == path]:
                state.path = None
                if state.data is None:
                    self.states.remove(state)

    def _used_at(self, path: Path, mtime: float) -> float:
        for state in self.states:
            if state.path == path:  # this session's use, on the wall clock of file times
                return time.time() - (time.monotonic() - state.used_at)
        return mtime

    def _write(self, state: KeptState) -> None:
        assert state.data is not None
        if self.disk_budget <= 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.key}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        partial = path.with_suffix(".partial")
        header = json.dumps({"key": self.key, "tokens": list(state.tokens), "size": state.size,
                             "sha256": _digest(state.tokens, state.data)}).encode()
        try:
            with partial.open("wb") as f:
                f.write(MAGIC + struct.pack("<Q", len(header)) + header)
                f.write(state.data)
                f.flush()
                os.fsync(f.fileno())
            partial.replace(path)  # a file has its final name only when complete
        except OSError as exc:  # a full disk (ENOSPC), a read-only folder...: no kept state, no harm
            log.warning("could not keep a conversation state on disk (%s); it will be evaluated again", exc)
            with contextlib.suppress(OSError):
                partial.unlink()
            return
        state.path = path

    def discard(self, state: KeptState) -> None:
        if state.path is not None:
            with contextlib.suppress(OSError):
                state.path.unlink()
        if state in self.states:
            self.states.remove(state)

    def _scan(self) -> None:
        if not self.folder.is_dir():
            return
        for partial in self.folder.glob("*.partial"):  # a save cut short by a crash
            with contextlib.suppress(OSError):
                partial.unlink()
        for path in sorted(self.folder.glob(f"{self.key}-*{SUFFIX}")):
            try:
                tokens, _ = _read(path, self.key, with_data=False)
            except (OSError, ValueError) as exc:
                log.warning("kept state %s is unusable (%s): removed", path.name, exc)
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            st = path.stat()
            self.states.append(KeptState(tokens, st.st_size, path=path,
                                         used_at=time.monotonic() - max(0.0, time.time() - st.st_mtime)))


def _read(path: Path, key: str, with_data: bool) -> tuple[tuple[int, ...], bytes | None]:
    """A state file's tokens (and data), checked.

    Raises:
        ValueError: not a state file, another key, truncated, or corrupted.
        OSError: unreadable.
    """
    with path.open("rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("not a Paddock state file")
        raw_len = f.read(8)
        if len(raw_len) != 8:
            raise ValueError("truncated")
        (n,) = struct.unpack("<Q", raw_len)
        if n > MAX_HEADER:
            raise ValueError("impossible header size")
        raw = f.read(n)
        if len(raw) != n:
            raise ValueError("truncated")
        try:
            header = json.loads(raw)
            tokens = tuple(int(t) for t in header["tokens"])
            # (negative ids stand for an image's positions: app/engine/vision.py's placeholders)
            if any(not -(2**31) <= t < 2**31 for t in tokens):
                raise ValueError("token ids out of range")
            size = int(header["size"])
            digest = str(header["sha256"])
            file_key = str(header["key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"damaged header ({exc})") from exc
        if file_key != key:
            raise ValueError("made for another model or other settings")
        if os.fstat(f.fileno()).st_size != len(MAGIC) + 8 + n + size:
            raise ValueError("truncated or padded")
        if not with_data:
            return tokens, None
        data = f.read(size)
    if len(data) != size or _digest(tokens, data) != digest:
        raise ValueError("corrupted (checksum mismatch)")
    return tokens, data
