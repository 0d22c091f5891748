"""Speed before download: tokens per second predicted from a plan and the machine.

Decode is memory-bound: each token reads the active weights (routed experts at
``expert_used_count / expert_count``, shared experts in full, one embedding row, the output
head) and the KV cache filled so far, from wherever the plan put them. Time per token is the
bytes on each device over that device's memory bandwidth, plus a small fixed cost per layer
(graph build, thread sync; measured on this machine's CPU, see the README's benchmark table).
Prompt processing is compute-bound: about 2 FLOPs per active weight per token, over the
device's throughput on quantized matrix products.

This machine's memory bandwidth and matrix throughput are measured once (about a second)
and kept in the cache folder; a GPU's come from a table by device name.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from app.engine.placement import ModelTable, Placement

log = logging.getLogger(__name__)

GB = 1e9
CACHE_FILE = "machine_speed.json"
CACHE_VERSION = 1
# Fixed cost per token and per layer on the CPU (graph build, thread barriers, sampling): fitted on this
# project's 2-core machine, quiet, to Gemma 3 270M, SmolLM2-135M and the tiny MoE of the tests (18, 30 and
# 2 layers: 0.2 ms a layer explains all three within 25 %; README, "Predicted against measured speed").
CPU_TOKEN_OVERHEAD_S = 0.0
CPU_LAYER_OVERHEAD_S = 0.0002
# Likewise per layer for each prompt token (batches of small matrices do not reach the FLOP rate).
CPU_PROMPT_LAYER_OVERHEAD_S = 0.0000077
GPU_TOKEN_OVERHEAD_S = 0.0003
GPU_LAYER_OVERHEAD_S = 0.00001
# llama.cpp's quantized matrix products reach about this share of numpy's float32 matmul rate
# on the CPU, and GPUs about this share of their dense FP16 peak on prompt batches.
CPU_PROMPT_EFFICIENCY = 0.35
GPU_PROMPT_EFFICIENCY = 0.35
# Decode on a GPU reaches about this share of the memory's peak bandwidth (llama.cpp's CUDA and Metal decode
# are commonly reported at 60-80 % of the data sheet; not measured by this project, which has no GPU).
GPU_BANDWIDTH_EFFICIENCY = 0.7
# A GPU not in the table (or a "what if" plan with --gpu-mem): a typical 16 GB card's figures.
DEFAULT_GPU = ("a typical 16 GB GPU (assumed)", 450.0, 40.0)

# Memory bandwidth (GB/s) and dense FP16 tensor throughput (TFLOPS) by device name.
GPU_TABLE: tuple[tuple[str, float, float], ...] = (
    ("H200", 4800, 990), ("H100", 3350, 990), ("A100", 1935, 312), ("L40S", 864, 362), ("A6000", 768, 155),
    ("RTX 5090", 1792, 210), ("RTX 5080", 960, 113), ("RTX 5070 Ti", 896, 88), ("RTX 5070", 672, 62),
    ("RTX 4090", 1008, 165), ("RTX 4080", 717, 97), ("RTX 4070 Ti", 504, 80), ("RTX 4070", 504, 58),
    ("RTX 4060 Ti", 288, 44), ("RTX 4060", 272, 30), ("RTX 3090", 936, 71), ("RTX 3080", 760, 59),
    ("RTX 3070", 448, 40), ("RTX 3060", 360, 25), ("RX 7900 XTX", 960, 123), ("RX 7900 XT", 800, 103),
    ("M4 Max", 546, 34), ("M4 Pro", 273, 17), ("M4", 120, 8.5), ("M3 Max", 400, 28), ("M3 Pro", 150, 14),
    ("M3", 100, 7), ("M2 Ultra", 800, 54), ("M2 Max", 400, 27), ("M2 Pro", 200, 13.6), ("M2", 100, 7),
    ("M1 Ultra", 800, 42), ("M1 Max", 400, 21), ("M1 Pro", 200, 10.4), ("M1", 68, 5.2),
)


@dataclass(frozen=True)
class DeviceSpeed:
    name: str
    bandwidth: float  # bytes/s
    flops: float  # FLOP/s on prompt batches (already scaled by efficiency)


@dataclass(frozen=True)
class Prediction:
    decode_tokens_per_s: float
    prompt_tokens_per_s: float
    gpu_bytes_per_token: int
    cpu_bytes_per_token: int
    basis: str  # the devices' figures the prediction rests on

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def gpu_speed(device_name: str | None) -> DeviceSpeed:
    """A GPU's figures by name (the longest table entry in the name), else a typical card's."""
    name = (device_name or "").upper()
    best = None
    for entry, bw, tflops in GPU_TABLE:
        if entry.upper() in name and (best is None or len(entry) > len(best[0])):
            best = (entry, bw, tflops)
    label, bw, tflops = best if best else DEFAULT_GPU  # bandwidth in the data sheet's GB/s
    return DeviceSpeed(label, bw * GB * GPU_BANDWIDTH_EFFICIENCY, tflops * 1e12 * GPU_PROMPT_EFFICIENCY)


def gpu_name(backend: str) -> str | None:
    """The GPU's name as the bandwidth table knows it (NVIDIA: nvidia-smi; Apple: the chip)."""
    try:
        if backend == "cuda" and (exe := shutil.which("nvidia-smi")):
            out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=5, check=True).stdout
            return out.splitlines()[0].strip() if out.strip() else None
        if backend == "metal" and sys.platform == "darwin":
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
    return None


def measure_cpu(threads: int, seconds: float = 0.15) -> DeviceSpeed:
    """This machine's memory read bandwidth (threads each reading their own 64 MB with a BLAS dot
    product, the fastest read numpy has) and float32 matmul rate."""
    import numpy as np

    n = max(1, threads)
    arrays = [np.ones(16 << 20, dtype=np.float32) for _ in range(n)]  # 64 MB each: past any cache
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 3:
        workers = [threading.Thread(target=np.dot, args=(a, a)) for a in arrays]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        samples.append(sum(a.nbytes for a in arrays) / (time.perf_counter() - start))
    # the median, not the best: on a busy machine decode gets the CPU share a typical read gets
    best = statistics.median(samples)
    m = np.ones((512, 512), dtype=np.float32)
    rates = []
    for _ in range(5):
        start = time.perf_counter()
        m @ m
        rates.append(2 * 512**3 / (time.perf_counter() - start))
    flops = statistics.median(rates)
    return DeviceSpeed("this machine's CPU", best, flops * CPU_PROMPT_EFFICIENCY)


def cpu_speed(cache_dir: Path, threads: int) -> DeviceSpeed:
    """The measured CPU figures, measured on first use and kept in ``cache_dir``."""
    path = cache_dir / CACHE_FILE
    try:
        data = json.loads(path.read_text())
        if data.get("version") == CACHE_VERSION and data.get("threads") == threads:
            return DeviceSpeed(str(data["name"]), float(data["bandwidth"]), float(data["flops"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    speed = measure_cpu(threads)
    log.info("measured this machine: %.1f GB/s memory read, %.0f GFLOPS (%d threads)",
             speed.bandwidth / GB, speed.flops / 1e9, threads)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "threads": threads, **asdict(speed)}))
        tmp.replace(path)
    except OSError as exc:  # a cache: measured again next time
        log.info("could not keep the machine's speed in %s: %s", path, exc)
    return speed


def predict(table: ModelTable, placement: Placement, cpu: DeviceSpeed, gpu: DeviceSpeed | None = None,
            kv_tokens: int = 256) -> Prediction:
    """Decode and prompt tokens/s of ``table`` placed as ``placement``, the KV cache filled to ``kv_tokens``."""
    n = table.n_layers
    first_gpu = n - placement.gpu_layers
    frac = table.used_fraction
    gpu_bytes = cpu_bytes = 0.0
    gpu_params = cpu_params = 0.0
    for i, layer in enumerate(table.layers):
        kv = table.kv_bytes(kv_tokens, placement.kv_type, range(i, i + 1))
        dense = layer.attention + layer.ffn + layer.shared + kv
        experts = layer.experts * frac
        on_gpu = i >= first_gpu and gpu is not None
        if on_gpu:
            gpu_bytes += dense
            gpu_params += dense - kv
        else:
            cpu_bytes += dense
            cpu_params += dense - kv
        if on_gpu and i >= placement.n_cpu_moe:
            gpu_bytes += experts
            gpu_params += experts
        else:
            cpu_bytes += experts
            cpu_params += experts
    # The output head is read for every generated token, but a prompt needs logits only for its last
    # token: it counts in decode bytes, not in prompt FLOPs.
    head = table.head_bytes
    if placement.n_gpu_layers > n and gpu is not None:
        gpu_bytes += head
    else:
        cpu_bytes += head
    cpu_bytes += table.embedding_row
    gpu_layers = placement.gpu_layers if gpu is not None else 0
    t = cpu_bytes / cpu.bandwidth + CPU_TOKEN_OVERHEAD_S + CPU_LAYER_OVERHEAD_S * (n - gpu_layers)
    if gpu is not None and gpu_layers:
        t += gpu_bytes / gpu.bandwidth + GPU_TOKEN_OVERHEAD_S + GPU_LAYER_OVERHEAD_S * gpu_layers
    # A prompt token costs 2 FLOPs per active weight; weights from bytes at the file's mean bytes/weight.
    per_weight = table.total_bytes / max(1, table.n_params)
    prompt_t = 2 * cpu_params / per_weight / cpu.flops + CPU_PROMPT_LAYER_OVERHEAD_S * (n - gpu_layers)
    if gpu is not None and gpu_layers:
        prompt_t += 2 * gpu_params / per_weight / gpu.flops
    basis = f"{cpu.name}: {cpu.bandwidth / GB:.0f} GB/s"
    if gpu is not None and gpu_layers:
        basis += f"; {gpu.name}: {gpu.bandwidth / GB:.0f} GB/s in practice"
    return Prediction(
        decode_tokens_per_s=round(1 / t, 1),
        prompt_tokens_per_s=round(1 / prompt_t, 1) if prompt_t > 0 else 0.0,
        gpu_bytes_per_token=int(gpu_bytes),
        cpu_bytes_per_token=int(cpu_bytes),
        basis=basis,
    )
