"""This machine: backend, memory, cores; and how much of a model fits where.

The memory estimate (weights + KV cache at the chosen context + compute
buffers) is the single estimator used both by the engine (to choose context
length and GPU layers) and by the model library (to label quant variants with
"fits in GPU" / "fits in RAM" / "too large").
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import psutil

log = logging.getLogger(__name__)

Backend = Literal["cpu", "cuda", "metal", "vulkan", "gpu"]
GiB = 1024**3
DEFAULT_CTX = 8192
MIN_CTX = 2048
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class Hardware:
    backend: Backend
    physical_cores: int
    ram_total: int
    ram_available: int
    vram_total: int | None  # None: unknown or no discrete GPU
    unified_memory: bool  # Apple Silicon: the GPU uses system RAM

    @property
    def gpu_budget(self) -> int:
        """Bytes the GPU can hold for a model (0 on CPU)."""
        if self.backend == "cpu":
            return 0
        if self.unified_memory:
            # macOS lets Metal wire about 2/3 (<= 36 GB) to 3/4 of RAM by default.
            return int(self.ram_total * (0.66 if self.ram_total <= 36 * GiB else 0.75))
        return int((self.vram_total or 0) * 0.9)


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def detect_backend() -> Backend:
    """The backend llama.cpp was built with, from llama.cpp's own queries."""
    try:
        import llama_cpp
    except ImportError:  # pragma: no cover - llama-cpp-python is a hard dependency
        return "cpu"
    if not llama_cpp.llama_supports_gpu_offload():
        return "cpu"
    info = llama_cpp.llama_print_system_info().decode(errors="replace").upper()
    if "CUDA" in info:
        return "cuda"
    if "METAL" in info or sys.platform == "darwin":
        return "metal"
    if "VULKAN" in info:
        return "vulkan"
    if any(name in info for name in ("SYCL", "HIP", "ROCM", "MUSA", "CANN", "OPENCL")):
        return "gpu"
    # The RPC backend (workers on other machines) makes llama.cpp report GPU offload too; this machine
    # itself has no GPU backend.
    return "cpu"


def _nvidia_vram() -> int | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout
        return max(int(line.strip()) for line in out.splitlines() if line.strip()) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def detect(backend: Backend | None = None) -> Hardware:
    vm = psutil.virtual_memory()
    backend = backend or detect_backend()
    unified = sys.platform == "darwin" and platform.machine() == "arm64"
    vram = _nvidia_vram() if backend == "cuda" else None
    return Hardware(
        backend=backend,
        physical_cores=physical_cores(),
        ram_total=vm.total,
        ram_available=vm.available,
        vram_total=vram,
        unified_memory=unified,
    )


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a GGUF header (see ``GGUFInfo``)."""

    weights_bytes: int
    n_layers: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_ctx_train: int
    # Mixture of experts (``expert_count`` / ``expert_used_count`` in the GGUF header).
    expert_count: int = 0
    expert_used_count: int = 0

    @property
    def moe(self) -> bool:
        return self.expert_count > 1 and 0 < self.expert_used_count < self.expert_count

    def kv_bytes(self, n_ctx: int, kv_type: str = "f16") -> int:
        per_token = self.n_layers * self.n_head_kv * (self.key_length + self.value_length)
        return int(per_token * n_ctx * KV_BYTES.get(kv_type, 2.0))


def moe_note(shape: ModelShape) -> str | None:
    """For a mixture-of-experts model: memory follows all its weights, speed the active ones."""
    if not shape.moe:
        return None
    return (
        f"A mixture of experts: {shape.expert_used_count} of its {shape.expert_count} experts work on each "
        "token, so it needs memory for the whole model (as estimated here) but generates about as fast "
        "as a model a fraction of its size."
    )


def compute_overhead(shape: ModelShape) -> int:
    """Scratch buffers: grows with model size; 256 MiB floor measured on small models."""
    return int(256 * 1024 * 1024 + 0.05 * shape.weights_bytes)


def estimate_total(shape: ModelShape, n_ctx: int, kv_type: str = "f16") -> int:
    return shape.weights_bytes + shape.kv_bytes(n_ctx, kv_type) + compute_overhead(shape)


Fit = Literal["gpu", "partial", "ram", "too_large"]
FIT_LABELS: dict[str, str] = {
    "gpu": "fits in GPU",
    "partial": "fits in RAM, partly on GPU",
    "ram": "fits in RAM",
    "too_large": "too large",
}


@dataclass(frozen=True)
class Plan:
    """How a model will be loaded on this machine, and why."""

    n_ctx: int
    n_gpu_layers: int  # -1: all layers
    fit: Fit
    total_bytes: int
    notices: tuple[str, ...]


def plan_load(
    shape: ModelShape,
    hw: Hardware,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    kv_type: str = "f16",
) -> Plan:
    """Choose context length and GPU layers for this machine.

    The context defaults to the model's training context capped at 8192, halved
    (down to 2048) while the model would not fit in available memory.
    """
    notices: list[str] = []
    train = shape.n_ctx_train or DEFAULT_CTX
    if n_ctx is None:
        n_ctx = min(train, DEFAULT_CTX)
        budget = hw.ram_available + hw.gpu_budget if not hw.unified_memory else hw.ram_available
        while n_ctx > MIN_CTX and estimate_total(shape, n_ctx, kv_type) > budget:
            n_ctx //= 2
    elif n_ctx > train > 0:
        notices.append(
            f"Context length {n_ctx} is above the {train} tokens this model was trained for; "
            "answers may degrade past that."
        )
    total = estimate_total(shape, n_ctx, kv_type)

    gpu = hw.gpu_budget
    if n_gpu_layers is None:
        if hw.backend == "cpu" or gpu <= 0:
            n_gpu_layers = 0
        elif total <= gpu:
            n_gpu_layers = -1
        else:
            per_layer = max(1, (shape.weights_bytes + shape.kv_bytes(n_ctx, kv_type)) // max(1, shape.n_layers))
            n_gpu_layers = max(0, int((gpu - compute_overhead(shape)) // per_layer))
    if hw.backend != "cpu" and n_gpu_layers != 0:
        fit: Fit = "gpu" if n_gpu_layers < 0 or n_gpu_layers >= shape.n_layers else "partial"
    else:
        fit = "ram"
    ram_needed = total if fit in ("ram",) or hw.unified_memory else max(0, total - gpu)
    if ram_needed > hw.ram_total:
        fit = "too_large"
    if ram_needed > hw.ram_available:
        notices.append(
            f"This model needs about {total / GiB:.1f} GB "
            f"(weights {shape.weights_bytes / GiB:.1f} GB + context {shape.kv_bytes(n_ctx, kv_type) / GiB:.1f} GB) "
            f"but only {hw.ram_available / GiB:.1f} GB of memory is free: close other programs, "
            "choose a smaller quantization, or lower the context length."
        )
    return Plan(n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, fit=fit, total_bytes=total, notices=tuple(notices))
