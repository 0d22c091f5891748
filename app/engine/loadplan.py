"""The placement of a model about to be loaded: GPU layers and MoE experts in RAM, refused when it fits nowhere.

The context length comes from :func:`app.engine.hardware.plan_load` as before; the placement
planner (:mod:`app.engine.placement`) then decides, on a GPU, how many layers go there (from the
exact bytes of each layer, not an average) and, for a mixture-of-experts model, how many layers'
experts stay in RAM so that every layer can go to the GPU; the user's ``n_cpu_moe`` /
``n_gpu_layers`` settings override it.
"""

from __future__ import annotations

from dataclasses import dataclass

from app import paths
from app.engine.gguf_file import GGUFInfo
from app.engine.hardware import Fit, Hardware, Plan
from app.engine.placement import ExpertMode, ModelTable, Placement, plan, usage
from app.engine.speed import DeviceSpeed, cpu_speed, gpu_name, gpu_speed, predict
from app.engine.types import LoadSettings
from app.errors import ModelTooLargeError


@dataclass(frozen=True)
class LoadPlan:
    table: ModelTable | None  # None: the tensor table says nothing usable (then plan_load's choice stands)
    n_gpu_layers: int  # as llama.cpp takes it (-1: all)
    n_cpu_moe: int
    n_ctx: int
    kv_type: str
    hw: Hardware
    n_threads: int

    @property
    def moe(self) -> bool:
        return self.table is not None and self.table.moe

    def placement(self, n_gpu_layers: int, n_cpu_moe: int) -> Placement | None:
        """What a load with these values puts where (the plan, or a fallback after a failure)."""
        t = self.table
        if t is None:
            return None
        ngl = t.n_layers + 1 if n_gpu_layers < 0 else n_gpu_layers
        gpu, ram = usage(t, self.n_ctx, ngl, n_cpu_moe, self.kv_type)
        fit: Fit = "ram" if ngl == 0 else "gpu" if ngl > t.n_layers and (n_cpu_moe == 0 or not t.moe) else "partial"
        return Placement(self.n_ctx, ngl, n_cpu_moe if t.moe else 0, gpu, ram, fit, t.n_layers, t.moe, self.kv_type)

    def line(self, n_gpu_layers: int, n_cpu_moe: int) -> str:
        p = self.placement(n_gpu_layers, n_cpu_moe)
        return p.explain() if p is not None else ""

    def predicted(self, n_gpu_layers: int, n_cpu_moe: int) -> float | None:
        """Decode tokens/s predicted for this placement (None without a tensor table)."""
        p = self.placement(n_gpu_layers, n_cpu_moe)
        if p is None or self.table is None:
            return None
        gpu: DeviceSpeed | None = None
        if self.hw.backend != "cpu" and p.gpu_layers:
            gpu = gpu_speed(gpu_name(self.hw.backend))
        return predict(self.table, p, cpu_speed(paths.cache_dir(), self.n_threads), gpu).decode_tokens_per_s


def place_for_load(info: GGUFInfo, hw: Hardware, load_plan: Plan, settings: LoadSettings, n_threads: int) -> LoadPlan:
    """GPU layers and experts in RAM for this load.

    Raises:
        ModelTooLargeError: the model does not fit this machine's memory at this context, with the numbers.
    """
    table = ModelTable.from_info(info) if info.tensors and info.block_count else None
    ngl = load_plan.n_gpu_layers if settings.n_gpu_layers is None else settings.n_gpu_layers
    ncm = 0
    if table is None:
        return LoadPlan(None, ngl, 0, load_plan.n_ctx, settings.kv_cache_type, hw, n_threads)
    mode: ExpertMode = "auto"
    first_n = 0
    if settings.n_cpu_moe is not None and table.moe:
        mode = "all" if settings.n_cpu_moe < 0 or settings.n_cpu_moe >= table.n_layers else "first"
        first_n = table.n_layers if mode == "all" else settings.n_cpu_moe
        mode = "none" if settings.n_cpu_moe == 0 else mode
        ncm = first_n if mode != "none" else 0
    placed = plan(table, hw, n_ctx=load_plan.n_ctx, kv_type=settings.kv_cache_type, mode=mode, first_n=first_n,
                  n_gpu_layers=settings.n_gpu_layers)
    # With workers the model's layers go to their memory too, which this machine's plan does not
    # count: llama.cpp spreads them by each device's free memory and fails the load if they do not fit.
    if placed.fit == "too_large" and not settings.workers:
        raise ModelTooLargeError(
            f"{info.name} {placed.explain()}. Choose a smaller quantization "
            "or a shorter context, or close other programs."
        )
    if settings.n_gpu_layers is None and hw.backend != "cpu" and hw.gpu_budget > 0:
        ngl, ncm = placed.llama_gpu_layers, placed.n_cpu_moe
    return LoadPlan(table, ngl, ncm, load_plan.n_ctx, settings.kv_cache_type, hw, n_threads)
