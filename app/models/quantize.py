"""Quantize or requantize a GGUF with llama.cpp's own API, in a child process.

``llama_model_quantize`` runs for minutes on big models and cannot be
interrupted, so it runs in a spawned process: cancel terminates it, a crash
cannot take the app down, and the output is written to a ``.part`` file that is
renamed only when llama.cpp reports success. Progress comes from llama.cpp's log
lines (``[ 12/ 236] blk.0.attn_q.weight ...``), parsed in the child and sent
over a pipe.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from app import paths
from app.engine.gguf_file import FULL_PRECISION, read_gguf
from app.errors import PaddockError
from app.models.download import check_disk_space, part_path
from app.models.registry import LibraryModel

log = logging.getLogger(__name__)

# Bits per weight as llama.cpp's quantize tool lists them (for the disk-space estimate).
TARGETS: dict[str, float] = {
    "Q8_0": 8.50, "Q6_K": 6.56, "Q5_K_M": 5.69, "Q5_K_S": 5.54, "Q5_0": 5.50, "Q5_1": 6.00,
    "Q4_K_M": 4.89, "Q4_K_S": 4.58, "Q4_0": 4.50, "Q4_1": 5.00, "Q3_K_L": 4.27, "Q3_K_M": 3.91,
    "Q3_K_S": 3.50, "Q2_K": 3.35, "F16": 16.0, "BF16": 16.0,
}
_PROGRESS_RE = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\]")


@dataclass(frozen=True)
class QuantizeAdvice:
    """What the UI says before a quantization."""

    estimated_bytes: int
    warnings: tuple[str, ...]


def advise(source_quant: str, target: str, n_params: int) -> QuantizeAdvice:
    target = target.upper()
    if target not in TARGETS:
        raise PaddockError(f"unknown quantization type {target!r}; choose one of {', '.join(TARGETS)}")
    warnings = []
    src = source_quant.upper()
    if src not in FULL_PRECISION:
        warnings.append(
            f"The source is already quantized ({src}): requantizing to {target} loses more quality than "
            "quantizing from the original F16/BF16 weights. Use an F16 or BF16 GGUF when you can."
        )
        src_bits = TARGETS.get(src)
        if src_bits is not None and TARGETS[target] >= src_bits:
            warnings.append(f"{target} cannot restore what {src} already lost: the file gets bigger, not better.")
    return QuantizeAdvice(int(n_params * TARGETS[target] / 8) + (16 << 20), tuple(warnings))


def _child(src: str, dst: str, ftype: int, nthread: int, conn: Connection) -> None:
    import llama_cpp

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        m = _PROGRESS_RE.search(text.decode("utf-8", errors="replace"))
        if m:
            conn.send(("progress", int(m.group(1)), int(m.group(2))))

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = nthread
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    conn.send(("done", rc, 0))


class QuantizeJob:
    """One quantization; :meth:`run` blocks, :meth:`cancel` may be called from another thread."""

    def __init__(self, source: Path, target: str, out: Path | None = None,
                 on_progress: Callable[[int, int], None] | None = None, threads: int = 0) -> None:
        self.source = source
        self.target = target.upper()
        self.info = read_gguf(source)
        self.advice = advise(self.info.quantization, self.target, self.info.n_params)  # checks the type
        stem = re.sub(r"[-_.]?(I?Q\d\w*|BF16|F16|F32)$", "", source.stem, flags=re.IGNORECASE) or source.stem
        self.out = out or paths.models_dir() / "local" / f"{stem}-{self.target}.gguf"
        self.on_progress = on_progress or (lambda done, total: None)
        self.threads = threads
        self._process: mp.process.BaseProcess | None = None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        if self._process is not None and self._process.is_alive():
            self._process.terminate()

    def run(self) -> Path:
        """Quantize to ``self.out``. Raises PaddockError (cancelled, failed, no disk space)."""
        if self.out.exists():
            raise PaddockError(f"{self.out} already exists: choose another output name or delete it first")
        if self.source.resolve() == self.out.resolve():
            raise PaddockError("the output must be a different file from the source")
        check_disk_space(self.out.parent, self.advice.estimated_bytes, self.out.name)
        from app.engine.hardware import physical_cores

        ftype = getattr(__import__("llama_cpp"), f"LLAMA_FTYPE_MOSTLY_{self.target}")
        tmp = part_path(self.out)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_child, args=(str(self.source), str(tmp), ftype, self.threads or physical_cores(), child),
            name="paddock-quantize", daemon=True,
        )
        self._process.start()
        child.close()
        rc: int | None = None
        try:
            while True:
                if self._cancelled.is_set():
                    break
                if parent.poll(0.2):
                    try:
                        kind, a, b = parent.recv()
                    except EOFError:
                        break
                    if kind == "progress":
                        self.on_progress(a, b)
                    else:
                        rc = a
                        break
                elif not self._process.is_alive() and not parent.poll():
                    break
            self._process.join(10)
        finally:
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
            parent.close()
        if self._cancelled.is_set():
            tmp.unlink(missing_ok=True)
            raise PaddockError("quantization cancelled; nothing was written")
        if rc != 0:
            tmp.unlink(missing_ok=True)
            code = self._process.exitcode
            raise PaddockError(
                f"llama.cpp could not quantize {self.source.name} to {self.target} "
                + (f"(it returned {rc})" if rc is not None else f"(the process ended with code {code})")
                + "; nothing was written."
            )
        tmp.replace(self.out)
        read_gguf(self.out)  # the result is a valid GGUF before it is registered
        return self.out


def register_quantized(job: QuantizeJob) -> LibraryModel:
    """Add a finished quantization to the library with its lineage (the source model's library id)."""
    from app.models.library import Library
    from app.models.registry import model_meta

    library = Library()
    try:
        source = job.source
        parent = library.registry.model_by_path(source.resolve()) or library.registry.model_by_path(source)
        info = read_gguf(job.out)
        return library.registry.add_model(
            job.out, name=job.out.stem, source="quantize", quant=info.quantization, size=job.out.stat().st_size,
            parent_id=parent.id if parent else None, license_id=info.license,
            repo_id=parent.repo_id if parent else None,
            acceptance_id=parent.acceptance_id if parent else None,
            meta={**model_meta(info), "quantized_from": str(source), "quantized_from_quant": job.info.quantization},
        )
    finally:
        library.close()


def quantize_into_library(source: Path, target: str, out: Path | None = None,
                          on_progress: Callable[[int, int], None] | None = None) -> tuple[LibraryModel, QuantizeJob]:
    """Quantize and register the result."""
    job = QuantizeJob(source, target, out, on_progress)
    job.run()
    return register_quantized(job), job
