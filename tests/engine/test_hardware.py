"""The memory estimate and offload plan (pure functions of the model shape and the machine)."""

from __future__ import annotations

from pathlib import Path

from app.engine.gguf_file import read_gguf
from app.engine.hardware import GiB, Hardware, ModelShape, detect, plan_load

# Llama 3.1 8B at Q4_K_M: 4.9 GB of weights, 32 layers, 8 KV heads of 128.
LLAMA_8B = ModelShape(weights_bytes=int(4.9e9), n_layers=32, n_head_kv=8, key_length=128, value_length=128,
                      n_ctx_train=131072)


def machine(backend: str = "cpu", ram: float = 16, free: float = 12, vram: float | None = None,
            unified: bool = False) -> Hardware:
    return Hardware(backend=backend, physical_cores=4, ram_total=int(ram * GiB), ram_available=int(free * GiB),  # type: ignore[arg-type]
                    vram_total=int(vram * GiB) if vram else None, unified_memory=unified)


def test_kv_cache_size_matches_llama_cpp_formula() -> None:
    # 32 layers x 8 heads x (128 + 128) x 2 bytes = 128 KiB per token
    assert LLAMA_8B.kv_bytes(8192) == 32 * 8 * 256 * 2 * 8192 == 1 * GiB


def test_laptop_cpu_plan() -> None:
    plan = plan_load(LLAMA_8B, machine())
    assert plan.n_ctx == 8192  # capped default, model trained for 128k
    assert plan.n_gpu_layers == 0
    assert plan.fit == "ram"
    assert plan.notices == ()


def test_too_little_free_memory_is_warned_with_numbers() -> None:
    plan = plan_load(LLAMA_8B, machine(ram=8, free=3))
    assert plan.n_ctx == 2048  # shrunk while it did not fit, down to the floor
    assert any("GB" in n and "free" in n for n in plan.notices)


def test_model_larger_than_ram_is_too_large() -> None:
    plan = plan_load(LLAMA_8B, machine(ram=4, free=3))
    assert plan.fit == "too_large"


def test_cuda_partial_offload_and_full_offload() -> None:
    partial = plan_load(LLAMA_8B, machine("cuda", vram=4))
    assert partial.fit == "partial"
    assert 0 < partial.n_gpu_layers < 32
    full = plan_load(LLAMA_8B, machine("cuda", vram=24))
    assert full.fit == "gpu"
    assert full.n_gpu_layers == -1


def test_apple_silicon_offloads_everything_that_fits() -> None:
    plan = plan_load(LLAMA_8B, machine("metal", ram=32, free=20, unified=True))
    assert plan.n_gpu_layers == -1
    assert plan.fit == "gpu"


def test_this_machine_and_the_test_model(test_model: Path) -> None:
    info = read_gguf(test_model)
    shape = ModelShape(info.tensor_bytes, info.block_count, info.head_count_kv, info.key_length,
                       info.value_length, info.context_length)
    hw = detect()
    assert hw.backend == "cpu"
    assert hw.physical_cores >= 1
    plan = plan_load(shape, hw)
    assert plan.fit == "ram"
    assert plan.n_gpu_layers == 0
    assert plan.n_ctx == 8192


def test_mixture_of_experts_fits_by_total_size_and_says_speed_follows_active() -> None:
    """Llama 4 Scout (109B total, 17B active, 16 experts, 1 routed per token) at Q4_K_M."""
    from app.engine.gguf_file import shape_from_metadata
    from app.engine.hardware import moe_note
    from app.models.catalog import STARTERS

    scout = shape_from_metadata({
        "general.architecture": "llama4", "llama4.block_count": 48, "llama4.attention.head_count": 40,
        "llama4.attention.head_count_kv": 8, "llama4.embedding_length": 5120, "llama4.context_length": 10485760,
        "llama4.expert_count": 16, "llama4.expert_used_count": 1,
    }, int(65.4e9))
    assert scout.moe
    assert plan_load(scout, machine("metal", ram=128, free=110, unified=True)).fit == "gpu"
    assert plan_load(scout, machine("metal", ram=36, free=30, unified=True)).fit == "too_large"  # memory: all 109B
    note = moe_note(scout)
    assert note is not None
    assert "1 of its 16 experts" in note
    assert moe_note(LLAMA_8B) is None
    starter = next(s for s in STARTERS if "Scout" in s.title)
    assert starter.moe
    assert "17B active" in starter.summary()
