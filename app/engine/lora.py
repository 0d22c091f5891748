"""LoRA adapters: checked in the parent before the engine child ever sees one.

llama.cpp applies a LoRA adapter (a small GGUF of low-rank ``A``/``B`` pairs) on
top of a loaded model at run time.  It trusts the file: an ``adapter.lora.alpha``
stored as FLOAT64 (a common converter slip), or a metadata string stored as
another type, trips an assertion (``GGML_ASSERT``) and the whole process dies
with exit 134.  Other faults (another architecture, wrong shapes, half of a pair
missing, data past the end of the file) make ``llama_adapter_lora_init`` return
NULL with the reason only in its log.  So every adapter is read here first, with
the same rules llama.cpp applies (``llama-adapter.cpp``), and refused with a
sentence the user can act on.

What llama.cpp needs (vendored commit 0c1e570):

- ``general.type = "adapter"``, ``adapter.type = "lora"`` and
  ``general.architecture`` equal to the base model's, all strings;
- ``adapter.lora.alpha`` absent or FLOAT32;
- tensors named ``<base tensor>.lora_a`` / ``.lora_b`` (``*_norm.weight`` is
  ignored), each pair complete, its base tensor present, and the shapes
  ``A.ne = [n_in, r]``, ``B.ne = [r, n_out]`` against the base ``[n_in, n_out]``
  (``token_embd`` is the other way round);
- every tensor's data inside the file.
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine.gguf_file import _ARRAY, SPLIT_RE, _Cursor, _read_value, read_gguf
from app.engine.types import LoraAdapter
from app.errors import InvalidAdapterError, InvalidModelError, ModelNotFoundError

_STRING_KEYS = ("general.type", "general.architecture", "adapter.type")
ALPHA_KEY = "adapter.lora.alpha"
ALORA_KEY = "adapter.alora.invocation_tokens"


@dataclass(frozen=True)
class AdapterInfo:
    """What Paddock knows about a checked adapter."""

    path: Path
    name: str
    architecture: str
    alpha: float | None
    rank: int
    targets: tuple[str, ...]  # the base tensors it changes
    file_size: int
    mtime_ns: int
    base_model: str = ""  # the base model the adapter names (``general.base_model.0.name``), if any

    @property
    def fingerprint(self) -> tuple[int, int]:
        return (self.file_size, self.mtime_ns)

    def use(self, scale: float = 1.0) -> LoraAdapter:
        """This adapter at ``scale``, as a request carries it (with the fingerprint it was checked at)."""
        return LoraAdapter(str(self.path), float(scale), self.fingerprint)


def fingerprint(path: str | Path) -> tuple[int, int]:
    """(size, modification time in ns) of a file: what a check holds for."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns)


def parse_lora_arg(text: str) -> tuple[str, float]:
    """``FILE[:SCALE]`` as the command line takes it (a Windows path keeps its drive's ``:``).

    Raises:
        ValueError: the part after the last ``:`` is not a number, and the file without it exists.
    """
    path, sep, scale = text.rpartition(":")
    if sep and path:
        try:
            return path, float(scale)
        except ValueError:
            if os.path.exists(path) and not os.path.exists(text):
                raise ValueError(f"the scale in {text!r} is not a number (FILE[:SCALE], e.g. tune.gguf:0.5)") from None
    return text, 1.0


def check_adapter(path: str | Path, base: str | Path) -> AdapterInfo:
    """Check a LoRA adapter against the base model it is to be applied to.

    Raises:
        InvalidAdapterError: with the reason, for anything llama.cpp would refuse or abort on.
    """
    p = Path(path)
    try:
        size, mtime = fingerprint(p)
    except OSError as exc:
        raise InvalidAdapterError(f"LoRA adapter not found: {p} ({exc.strerror or exc})") from exc
    base_p = Path(base)
    try:
        base_fp = fingerprint(base_p)
    except OSError as exc:
        raise InvalidAdapterError(f"the base model {base_p} cannot be read ({exc.strerror or exc})") from exc
    return _check((str(p), size, mtime), (str(base_p), *base_fp))


@functools.lru_cache(maxsize=64)
def _check(adapter: tuple[str, int, int], base_id: tuple[str, int, int]) -> AdapterInfo:
    """Cached per (adapter, base) file identity (path, size, mtime): a changed file is checked again."""
    path, size, mtime = adapter
    base = base_id[0]
    p = Path(path)
    header, tensors = _read(p, "LoRA adapter")
    name = p.name
    gtype = header.get("general.type")
    if gtype != "adapter":
        what = "a model" if gtype in (None, "model") else f"of type {gtype!r}"
        raise InvalidAdapterError(
            f"{name} is not a LoRA adapter (it is {what}, general.type is not 'adapter'): "
            "add it as a model instead, or convert the adapter with llama.cpp's convert_lora_to_gguf.py"
        )
    if header.get("adapter.type") != "lora":
        raise InvalidAdapterError(f"{name} is an adapter of type {header.get('adapter.type')!r}, not a LoRA "
                                  "adapter: Paddock applies LoRA adapters only")
    alpha_type = header.get(f"{ALPHA_KEY}:type")
    if alpha_type is not None and alpha_type != "FLOAT32":
        raise InvalidAdapterError(
            f"{name} stores {ALPHA_KEY} as {alpha_type}, but llama.cpp reads it only as FLOAT32 (anything else "
            "would crash the engine): convert the adapter again with llama.cpp's convert_lora_to_gguf.py"
        )
    alora = header.get(f"{ALORA_KEY}:type")
    if alora is not None and alora != "ARRAY[UINT32]":
        raise InvalidAdapterError(f"{name} has {ALORA_KEY} of type {alora}; llama.cpp needs an array of UINT32")
    base_header, base_tensors = _base_tensors(*base_id)
    arch, base_arch = header.get("general.architecture"), base_header.get("general.architecture")
    if arch != base_arch:
        raise InvalidAdapterError(
            f"{name} was made for a {arch!r} model, but {Path(base).name} is {base_arch!r}: "
            "use the adapter with the base model it was trained on"
        )
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for tname, dims in tensors.items():
        for half in ("lora_a", "lora_b"):
            if tname.endswith("." + half):
                pairs.setdefault(tname[: -len(half) - 1], {})[half] = dims
                break
        else:
            if not tname.endswith("_norm.weight"):  # llama.cpp skips these
                raise InvalidAdapterError(f"{name} has a tensor {tname!r} that is neither .lora_a nor .lora_b")
    if not pairs:
        raise InvalidAdapterError(f"{name} has no LoRA tensors (.lora_a / .lora_b)")
    ranks = set()
    for target, halves in sorted(pairs.items()):
        if len(halves) != 2:
            missing = "lora_b" if "lora_a" in halves else "lora_a"
            raise InvalidAdapterError(f"{name} is incomplete: {target}.{missing} is missing (the pair needs both "
                                      "halves; the file may be damaged)")
        wanted = base_tensors.get(target)
        if wanted is None:
            raise InvalidAdapterError(f"{name} changes {target!r}, which {Path(base).name} does not have: "
                                      "it was made for another base model")
        a, b = halves["lora_a"], halves["lora_b"]
        if len(a) != 2 or len(b) != 2 or len(wanted) < 2:
            raise InvalidAdapterError(f"{name}: the pair for {target!r} is not two matrices")
        if target.startswith("token_embd"):
            ok, rank = wanted[0] == b[1] and wanted[1] == a[1], a[0]
        else:
            ok, rank = wanted[0] == a[0] and wanted[1] == b[1] and a[1] == b[0], a[1]
        if not ok:
            raise InvalidAdapterError(
                f"{name} does not fit {Path(base).name}: {target} is {_shape(wanted)} in the model, but the "
                f"adapter's pair is {_shape(a)} and {_shape(b)} (made for another base model?)"
            )
        ranks.add(rank)
    alpha = header.get(ALPHA_KEY)
    base_name = header.get("general.base_model.0.name") or header.get("general.basename") or ""
    return AdapterInfo(
        path=p, name=str(header.get("general.name") or p.stem), architecture=str(arch),
        alpha=float(alpha) if isinstance(alpha, (int, float)) else None, rank=max(ranks),
        targets=tuple(sorted(pairs)), file_size=size, mtime_ns=mtime, base_model=str(base_name),
    )


def _shape(dims: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, dims)) + "]"


@functools.lru_cache(maxsize=8)
def _base_tensors(base: str, size: int, mtime: int) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The base model's header and tensor shapes (every part of a split model)."""
    first = Path(base)
    header, tensors = _read(first, "model")
    m = SPLIT_RE.search(first.name)
    if m:
        count, stem = int(m.group(2)), first.name[: m.start()]
        for i in range(2, count + 1):
            _, more = _read(first.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf"), "model")
            tensors.update(more)
    return header, tensors


def _read(p: Path, what: str) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """(header, tensor dims in ggml order) of a GGUF file, validated first by the bounded reader.

    The header maps each scalar or string key to its value, and ``key:type`` to its GGUF type name
    (``FLOAT32``, ``STRING``, ``ARRAY[UINT32]``...).  The walk reuses gguf_file's bounds-checked cursor
    over a file :func:`read_gguf` has just validated (the gguf package's own reader takes about 20 s
    on a 49k-token vocabulary).

    Raises:
        InvalidAdapterError: not a readable, complete GGUF file.
    """
    try:
        read_gguf(p)  # magic, version, every length and tensor bound against the file's size
    except (InvalidModelError, ModelNotFoundError) as exc:
        message = str(exc).replace("not a valid GGUF model", f"not a valid {what}")
        raise InvalidAdapterError(message) from exc
    try:
        with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            header, tensors = _walk(_Cursor(buf, len(buf)))
    except (OSError, InvalidModelError) as exc:
        raise InvalidAdapterError(f"not a valid {what}: {p.name} cannot be read ({exc})") from exc
    for key in _STRING_KEYS:
        kind = header.get(f"{key}:type")
        if kind is not None and kind != "STRING":
            # llama.cpp reads these with gguf_get_val_str, which asserts the type: the process would abort
            raise InvalidAdapterError(f"not a valid {what}: {p.name} stores {key} as {kind}, not as a string")
    return header, tensors


def _walk(cur: _Cursor) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    cur.pos = 8  # magic, version
    n_tensors = cur.u64("the header")
    n_kv = cur.u64("the header")
    header: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string("a metadata key") or ""
        vtype = cur.u32(f"the type of {key!r}")
        if vtype == _ARRAY:
            itype = struct.unpack_from("<I", cur.buf, cur.pos)[0] if cur.pos + 4 <= cur.size else -1
            header[f"{key}:type"] = f"ARRAY[{_type_name(itype)}]"
            _read_value(cur, vtype, key)  # skipped: no array matters here
        else:
            header[f"{key}:type"] = _type_name(vtype)
            header[key] = _read_value(cur, vtype, key)
    tensors: dict[str, tuple[int, ...]] = {}
    for _ in range(n_tensors):
        name = cur.string("a tensor name") or "?"
        n_dims = cur.u32(f"tensor {name!r}")
        tensors[name] = tuple(cur.u64(f"tensor {name!r}") for _ in range(n_dims))
        cur.u32(f"tensor {name!r}")  # type
        cur.u64(f"tensor {name!r}")  # offset
    return header, tensors


def _type_name(vtype: int) -> str:
    import gguf

    try:
        return gguf.GGUFValueType(vtype).name
    except ValueError:
        return f"type {vtype}"
