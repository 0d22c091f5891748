"""A bounded GGUF header reader: validation and metadata before llama.cpp sees a file.

llama.cpp trusts a GGUF header a great deal; a crafted file (a huge ``n_kv``, a
string whose length is 2**63, tensors pointing past the end of the file) can
crash it or make it allocate without bound.  This module reads the header with
every length checked against the bytes actually present, so a bad file gets a
message the user can act on ("not a valid GGUF model: ...") instead of a crash.
It also gives the metadata the rest of Paddock needs (architecture, context
length, layer and head counts for the memory estimate, the chat template, the
license) without loading the weights.

The format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from app.engine.hardware import ModelShape
from app.errors import InvalidModelError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Far above any real model (the largest have a few thousand tensors and ~50 keys,
# plus tokenizer arrays), far below what would exhaust memory.
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_DIMS = 8
# Keep scalar strings up to this size (chat templates are a few KB; 1 MiB is generous).
MAX_KEPT_STRING = 1 << 20
# Arrays with at most this many items are kept in the metadata; longer ones
# (tokenizer vocabularies) are checked and skipped, their length recorded.
MAX_KEPT_ARRAY = 64

SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING = 8
_ARRAY = 9


@dataclass(frozen=True)
class TensorEntry:
    """One row of a GGUF tensor table: what the placement planner needs (no data)."""

    name: str
    shape: tuple[int, ...]  # ggml order: ne[0] is the row length
    ggml_type: int
    nbytes: int


@dataclass(frozen=True)
class GGUFInfo:
    """What Paddock knows about a GGUF file from its header alone."""

    path: Path
    file_size: int
    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(repr=False)
    n_params: int
    tensor_bytes: int
    # The tensor table (names, shapes, types, sizes): the placement planner's input.
    tensors: tuple[TensorEntry, ...] = field(default=(), repr=False)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_get(self, key: str, default: Any = None) -> Any:
        """A key under the architecture's prefix, e.g. ``context_length``."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        name = self.metadata.get("general.name")
        return str(name) if name else self.path.stem

    @property
    def context_length(self) -> int:
        return int(self.arch_get("context_length", 0) or 0)

    @property
    def block_count(self) -> int:
        return int(self.arch_get("block_count", 0) or 0)

    @property
    def embedding_length(self) -> int:
        return int(self.arch_get("embedding_length", 0) or 0)

    @property
    def head_count(self) -> int:
        return _first_int(self.arch_get("attention.head_count", 0))

    @property
    def head_count_kv(self) -> int:
        return _first_int(self.arch_get("attention.head_count_kv", self.head_count)) or self.head_count

    @property
    def key_length(self) -> int:
        default = self.embedding_length // self.head_count if self.head_count else 0
        return int(self.arch_get("attention.key_length", default) or default)

    @property
    def value_length(self) -> int:
        return int(self.arch_get("attention.value_length", self.key_length) or self.key_length)

    @property
    def sliding_window(self) -> int:
        return int(self.arch_get("attention.sliding_window", 0) or 0)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def license(self) -> str | None:
        value = self.metadata.get("general.license")
        return str(value) if value else None

    @property
    def quantization(self) -> str:
        """The file type as people name it: ``Q4_K_M``, ``F16``, ``BF16``..."""
        ftype = self.metadata.get("general.file_type")
        if isinstance(ftype, int):
            try:
                return gguf.LlamaFileType(ftype).name.removeprefix("MOSTLY_").replace("ALL_", "")
            except ValueError:
                return f"type {ftype}"
        return quant_from_filename(self.path.name) or "unknown"

    @property
    def shape(self) -> ModelShape:
        """What the memory estimate needs (weights: the tensor bytes, else the file size)."""
        return ModelShape(
            weights_bytes=self.tensor_bytes or self.file_size,
            n_layers=self.block_count,
            n_head_kv=self.head_count_kv,
            key_length=self.key_length,
            value_length=self.value_length,
            n_ctx_train=self.context_length,
            expert_count=int(self.arch_get("expert_count", 0) or 0),
            expert_used_count=int(self.arch_get("expert_used_count", 0) or 0),
        )

    @property
    def split_count(self) -> int:
        return int(self.metadata.get("split.count", 1) or 1)


def _first_int(value: Any) -> int:
    """Per-layer arrays (some architectures vary heads by layer): take the largest."""
    if isinstance(value, list):
        return max((int(v) for v in value), default=0)
    return int(value or 0)


_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|MXFP4(?:_MOE)?|TQ\d_\d)(?![A-Za-z0-9])",
    re.IGNORECASE,
)


# Unquantized file types: the right source for a quantization.
FULL_PRECISION = ("F32", "F16", "BF16")


def quant_from_filename(filename: str) -> str | None:
    """``Llama-3.2-1B-Instruct-Q4_K_M.gguf`` -> ``Q4_K_M`` (None when the name says nothing)."""
    stem = SPLIT_RE.sub(".gguf", filename)
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    matches = _QUANT_RE.findall(stem)
    return matches[-1].upper() if matches else None


class _Cursor:
    """Bounds-checked little-endian reads over a memory map."""

    def __init__(self, buf: mmap.mmap | bytes, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise InvalidModelError(f"not a valid GGUF model: the file ends inside {what} (truncated?)")

    def unpack(self, fmt: str, n: int, what: str) -> Any:
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", 4, what))

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", 8, what))

    def string(self, what: str, keep: bool = True) -> str | None:
        length = self.u64(what)
        self.need(length, what)
        start = self.pos
        self.pos += length
        if not keep or length > MAX_KEPT_STRING:
            return None
        return bytes(self.buf[start : start + length]).decode("utf-8", errors="replace")


def _read_value(cur: _Cursor, vtype: int, key: str) -> Any:
    if vtype in _SCALARS:
        fmt, n = _SCALARS[vtype]
        return cur.unpack(fmt, n, f"the value of {key!r}")
    if vtype == _STRING:
        return cur.string(f"the value of {key!r}")
    if vtype == _ARRAY:
        itype = cur.u32(f"the array type of {key!r}")
        count = cur.u64(f"the array length of {key!r}")
        if itype in _SCALARS:
            fmt, n = _SCALARS[itype]
            cur.need(count * n, f"the array {key!r}")
            if count <= MAX_KEPT_ARRAY:
                values = list(struct.unpack_from("<" + fmt[1] * count, cur.buf, cur.pos))
                cur.pos += count * n
                return values
            cur.pos += count * n
            return _SkippedArray(count)
        if itype == _STRING:
            # each string needs at least its 8-byte length
            cur.need(count * 8, f"the array {key!r}")
            if count <= MAX_KEPT_ARRAY:
                return [cur.string(f"an item of {key!r}") for _ in range(count)]
            _skip_strings(cur, count, key)
            return _SkippedArray(count)
        raise InvalidModelError(f"not a valid GGUF model: unsupported array type {itype} in {key!r}")
    raise InvalidModelError(f"not a valid GGUF model: unknown value type {vtype} for {key!r}")


_LENGTH = struct.Struct("<Q")


def _skip_strings(cur: _Cursor, count: int, key: str) -> None:
    """Step over ``count`` strings (a vocabulary: 49,152 to 262,144 of them) reading only their lengths:
    a tight loop, since the header is read while the user waits (the chat's model menu, a load)."""
    unpack, buf, end, pos = _LENGTH.unpack_from, cur.buf, cur.size, cur.pos
    done = 0
    while done < count and pos + 8 <= end:
        after = pos + 8 + unpack(buf, pos)[0]
        if after > end:
            break
        pos = after
        done += 1
    cur.pos = pos
    for _ in range(count - done):  # the bytes end inside the array: the cursor says so (a truncated file,
        cur.string(f"an item of {key!r}", keep=False)  # or a remote prefix that needs more bytes)


class _SkippedArray(int):
    """Length of an array too long to keep (e.g. a 262k-token vocabulary)."""


def read_gguf(path: str | Path) -> GGUFInfo:
    """Validate ``path`` as a GGUF file and return its header information.

    Raises:
        ModelNotFoundError: the path does not exist or is not a file.
        InvalidModelError: the file is not GGUF, is truncated, or has an impossible header.
    """
    from app.errors import ModelNotFoundError

    p = Path(path)
    if not p.exists():
        raise ModelNotFoundError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelNotFoundError(f"not a file: {p}")
    size = p.stat().st_size
    if size == 0:
        raise InvalidModelError(f"not a valid GGUF model: {p.name} is empty (0 bytes)")
    with p.open("rb") as fh:
        head = fh.read(4)
        if head != GGUF_MAGIC:
            raise InvalidModelError(
                f"not a valid GGUF model: {p.name} does not start with the GGUF signature "
                "(is it a .safetensors, .bin or partial download?)"
            )
        if size < 24:
            raise InvalidModelError(f"not a valid GGUF model: {p.name} is only {size} bytes (truncated)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(p, buf, size)


def _parse(p: Path, buf: mmap.mmap, size: int) -> GGUFInfo:
    cur = _Cursor(buf, size)
    cur.pos = 4
    version = cur.u32("the header")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidModelError(
            f"not a valid GGUF model: GGUF version {version} is not supported (expected 2 or 3)"
        )
    n_tensors = cur.u64("the header")
    n_kv = cur.u64("the header")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise InvalidModelError(
            f"not a valid GGUF model: the header claims {n_tensors} tensors and {n_kv} metadata keys"
        )
    # every key/value needs at least 8 (key length) + 4 (type) + 1 bytes
    if n_kv * 13 > size:
        raise InvalidModelError(
            "not a valid GGUF model: the header claims more metadata than the file holds (truncated?)"
        )

    metadata = _read_metadata(cur, n_kv)

    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise InvalidModelError("not a valid GGUF model: bad general.alignment")

    tensors: list[tuple[int, int]] = []
    entries = _read_tensor_table(cur, n_tensors)
    n_params = 0
    for entry, offset in entries:
        tensors.append((offset, entry.nbytes))
        n_params += _elements(entry.shape)

    data_start = (cur.pos + alignment - 1) // alignment * alignment
    data_size = size - data_start
    tensor_bytes = 0
    for offset, nbytes in tensors:
        if offset % alignment or offset + nbytes > data_size:
            raise InvalidModelError(
                f"not a valid GGUF model: {p.name} is truncated or damaged "
                f"(tensor data runs past the end of the {size:,}-byte file)"
            )
        tensor_bytes += nbytes
    return GGUFInfo(
        path=p,
        file_size=size,
        version=version,
        tensor_count=n_tensors,
        metadata=metadata,
        n_params=n_params,
        tensor_bytes=tensor_bytes,
        tensors=tuple(entry for entry, _ in entries),
    )


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def _read_tensor_table(cur: _Cursor, n_tensors: int) -> list[tuple[TensorEntry, int]]:
    """The tensor infos after the metadata, each with its data offset (checked by the caller)."""
    entries: list[tuple[TensorEntry, int]] = []
    for _ in range(n_tensors):
        name = cur.string("a tensor name") or "?"
        n_dims = cur.u32(f"tensor {name!r}")
        if n_dims == 0 or n_dims > MAX_DIMS:
            raise InvalidModelError(f"not a valid GGUF model: tensor {name!r} has {n_dims} dimensions")
        dims = []
        for _ in range(n_dims):
            dim = cur.u64(f"tensor {name!r}")
            if dim == 0 or dim > (1 << 40):
                raise InvalidModelError(f"not a valid GGUF model: tensor {name!r} has dimension {dim}")
            dims.append(dim)
        ttype = cur.u32(f"tensor {name!r}")
        offset = cur.u64(f"tensor {name!r}")
        shape = tuple(dims)
        entries.append((TensorEntry(name, shape, ttype, _tensor_bytes(ttype, _elements(shape), name)), offset))
    return entries


def _read_metadata(cur: _Cursor, n_kv: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string("a metadata key") or ""
        vtype = cur.u32(f"the type of {key!r}")
        metadata[key] = _read_value(cur, vtype, key)
    return metadata


class NeedMoreBytes(Exception):
    """The prefix ended inside the metadata: fetch more bytes and parse again."""


class _PrefixCursor(_Cursor):
    def need(self, n: int, what: str) -> None:
        if n < 0:
            raise InvalidModelError(f"not a valid GGUF model: bad length in {what}")
        if self.pos + n > self.size:
            raise NeedMoreBytes(what)


def parse_metadata(prefix: bytes, name: str = "the file") -> dict[str, Any]:
    """The metadata of a GGUF file from the first bytes of it (a remote file's ranged prefix).

    Raises:
        NeedMoreBytes: the prefix ends before the metadata does.
        InvalidModelError: not a GGUF file, or an impossible header.
    """
    return _parse_prefix(prefix, name)[0]


def parse_header(prefix: bytes, name: str = "the file") -> tuple[dict[str, Any], tuple[TensorEntry, ...]]:
    """Metadata and tensor table of a GGUF file from its first bytes (no tensor data needed).

    Raises:
        NeedMoreBytes: the prefix ends before the tensor table does.
        InvalidModelError: not a GGUF file, or an impossible header.
    """
    metadata, cur, n_tensors = _parse_prefix(prefix, name)
    return metadata, tuple(entry for entry, _ in _read_tensor_table(cur, n_tensors))


def _parse_prefix(prefix: bytes, name: str) -> tuple[dict[str, Any], _Cursor, int]:
    if len(prefix) >= 4 and prefix[:4] != GGUF_MAGIC:
        raise InvalidModelError(f"not a valid GGUF model: {name} does not start with the GGUF signature")
    cur = _PrefixCursor(prefix, len(prefix))
    cur.pos = 4
    cur.need(20, "the header")
    version = cur.u32("the header")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidModelError(f"not a valid GGUF model: GGUF version {version} is not supported")
    n_tensors = cur.u64("the header")
    n_kv = cur.u64("the header")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise InvalidModelError(f"not a valid GGUF model: the header claims {n_tensors} tensors and {n_kv} keys")
    return _read_metadata(cur, n_kv), cur, n_tensors


def shape_from_metadata(metadata: dict[str, Any], weights_bytes: int) -> ModelShape:
    """The memory estimate's input from GGUF metadata (a local file's, or a remote prefix's)."""
    info = GGUFInfo(path=Path("remote.gguf"), file_size=weights_bytes, version=3, tensor_count=0,
                    metadata=metadata, n_params=0, tensor_bytes=weights_bytes)
    return info.shape


def _tensor_bytes(ttype: int, elements: int, name: str) -> int:
    try:
        qtype = gguf.GGMLQuantizationType(ttype)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        # A type newer than our gguf package: cannot size it, only bound it by the file.
        return 0
    if elements % block:
        raise InvalidModelError(f"not a valid GGUF model: tensor {name!r} does not fill its blocks")
    return elements // block * type_size
