"""Will this model fit, and how fast will it run? For a local file or one not yet downloaded.

The tensor table comes from the file's header alone (a local file's first megabytes, or a
remote file's through Range requests), so a plan and a speed are known before a download,
for this machine or for a GPU of a given size ("what if I had 16 GB").
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import paths
from app.engine.gguf_file import SPLIT_RE, NeedMoreBytes, TensorEntry, parse_header
from app.engine.hardware import GiB, Hardware
from app.engine.placement import ExpertMode, ModelTable, Placement, plan
from app.engine.speed import DeviceSpeed, Prediction, cpu_speed, gpu_name, gpu_speed, predict
from app.errors import InvalidModelError, ModelNotFoundError

log = logging.getLogger(__name__)

_FIRST = 2 << 20
_MAX = 64 << 20


def local_header(path: Path) -> tuple[dict[str, Any], tuple[TensorEntry, ...]]:
    """Metadata and tensor table of a local GGUF from its first bytes (the data need not be there).

    Raises:
        ModelNotFoundError: no such file.
        InvalidModelError: not GGUF, or the header is cut short.
    """
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    size = _FIRST
    with path.open("rb") as fh:
        while True:
            fh.seek(0)
            data = fh.read(size)
            try:
                return parse_header(data, path.name)
            except NeedMoreBytes:
                if len(data) < size or size >= _MAX:
                    raise InvalidModelError(f"not a valid GGUF model: the header of {path.name} is cut short") \
                        from None
                size *= 2


def local_table(path: Path) -> ModelTable:
    """The planner's view of a local model; a split model's parts are read together."""
    metadata, tensors = local_header(path)
    m = SPLIT_RE.search(path.name)
    if m:
        total = int(m.group(2))
        for i in range(1, total + 1):
            part = path.with_name(SPLIT_RE.sub(f"-{i:05d}-of-{total:05d}.gguf", path.name))
            if part != path and part.is_file():
                tensors += local_header(part)[1]
    name = str(metadata.get("general.name") or path.stem)
    return ModelTable.from_header(metadata, tensors, name)


def what_if(hw: Hardware, gpu_mem_gb: float) -> Hardware:
    """This machine with a discrete GPU of ``gpu_mem_gb`` GB instead of its own (0: no GPU)."""
    if gpu_mem_gb <= 0:
        return dataclasses.replace(hw, backend="cpu", vram_total=None, unified_memory=False)
    return dataclasses.replace(hw, backend="cuda", vram_total=int(gpu_mem_gb * GiB), unified_memory=False)


@dataclass(frozen=True)
class FitReport:
    """A plan and its predicted speed."""

    table: ModelTable
    placement: Placement
    prediction: Prediction

    @property
    def line(self) -> str:
        speed = f"about {self.prediction.decode_tokens_per_s:g} tokens/s" if self.placement.fit != "too_large" else ""
        return self.placement.explain() + (f"; {speed}" if speed else "")

    def to_dict(self) -> dict[str, Any]:
        p, t = self.placement, self.table
        fits = p.fit != "too_large"
        return {
            "model": t.name,
            "architecture": t.architecture,
            "fit": p.fit,
            "plan": p.explain(),
            "n_ctx": p.n_ctx,
            "kv_cache_type": p.kv_type,
            "n_gpu_layers": p.llama_gpu_layers,
            "n_cpu_moe": p.n_cpu_moe,
            "layers": {"gpu": p.gpu_layers, "cpu": t.n_layers - p.gpu_layers,
                       "output_on_gpu": p.n_gpu_layers > t.n_layers},
            "experts": {"expert_count": t.expert_count, "expert_used_count": t.expert_used_count,
                        "gpu_layers": p.expert_layers_on_gpu,
                        "cpu_layers": t.n_layers - p.expert_layers_on_gpu if t.moe else 0},
            "gpu_bytes": p.gpu_bytes,
            "ram_bytes": p.ram_bytes,
            "total_bytes": t.total_bytes,
            "active_bytes": t.active_bytes,
            "predicted_tokens_per_s": self.prediction.decode_tokens_per_s if fits else None,
            "predicted_prompt_tokens_per_s": self.prediction.prompt_tokens_per_s if fits else None,
            "prediction_basis": self.prediction.basis,
        }


def fit(
    table: ModelTable,
    hw: Hardware,
    *,
    n_ctx: int | None = None,
    kv_type: str = "f16",
    mode: ExpertMode = "auto",
    first_n: int = 0,
    cpu: DeviceSpeed | None = None,
    gpu: DeviceSpeed | None = None,
) -> FitReport:
    """Plan ``table`` on ``hw`` and predict its speed (the CPU measured once and kept; the GPU by name,
    or pass ``gpu``: a "what if" GPU is :func:`gpu_speed` ``(None)``, a typical card)."""
    placement = plan(table, hw, n_ctx=n_ctx, kv_type=kv_type, mode=mode, first_n=first_n)
    cpu = cpu or cpu_speed(paths.cache_dir(), hw.physical_cores)
    if gpu is None and hw.backend != "cpu" and hw.gpu_budget > 0:
        gpu = gpu_speed(gpu_name(hw.backend))
    return FitReport(table, placement, predict(table, placement, cpu, gpu))
