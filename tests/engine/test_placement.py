"""The placement planner on the tensor tables of real popular models (headers written here with their
real shapes and Q4_K_M quant types, no tensor data), for 8, 16 and 24 GB GPUs and a 64 GB Mac.

Expected figures are worked out by hand below (quant block sizes: Q4_K 144 bytes per 256 weights,
Q6_K 210 per 256, Q8_0 34 per 32, MXFP4 17 per 32, F32 4 bytes), not taken from the planner.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.gguf_file import NeedMoreBytes, parse_header
from app.engine.hardware import Hardware
from app.engine.placement import ModelTable, plan, usage
from tests import model_headers as mh

GiB = 1024**3


def q4k(n: int) -> int:
    return n // 256 * 144


def q6k(n: int) -> int:
    return n // 256 * 210


def more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def gpu(gb: int) -> Hardware:
    return Hardware("cuda", 8, 64 * GiB, 56 * GiB, gb * GiB, False)


MAC64 = Hardware("metal", 12, 64 * GiB, 56 * GiB, None, True)
MACHINES = {"8GB": gpu(8), "16GB": gpu(16), "24GB": gpu(24), "mac64": MAC64}


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelTable]:
    folder = tmp_path_factory.mktemp("headers")
    out = {}
    for key, make in mh.ALL.items():
        path = mh.write_header(make(), folder / f"{key}.gguf")
        metadata, tensors = parse_header(path.read_bytes(), path.name)
        out[key] = ModelTable.from_header(metadata, tensors)
    return out


# Published Q4_K_M (gpt-oss: MXFP4) file sizes: the header's tensor table adds up to them.
PUBLISHED = {"llama31_8b": 4.92e9, "qwen3_30b_a3b": 18.6e9, "gpt_oss_20b": 12.1e9, "mistral_small_24b": 14.3e9,
             "llama4_scout": 65.4e9}


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_tensor_table_adds_up_to_the_published_file(tables: dict[str, ModelTable], key: str) -> None:
    assert tables[key].total_bytes == pytest.approx(PUBLISHED[key], rel=0.01)


def test_layer_parts_by_hand(tables: dict[str, ModelTable]) -> None:
    llama = tables["llama31_8b"]
    # layer 0 is a "more bits" layer: attn_v and ffn_down in Q6_K; two F32 norms of 4096
    assert llama.layers[0].attention == q4k(4096 * 4096) + q4k(4096 * 1024) + q6k(4096 * 1024) \
        + q4k(4096 * 4096) + 4096 * 4
    assert llama.layers[0].ffn == 2 * q4k(4096 * 14336) + q6k(14336 * 4096) + 4096 * 4
    assert llama.layers[0].experts == 0
    assert not llama.moe
    assert llama.embeddings == q4k(4096 * 128256)
    assert llama.embedding_row == q4k(4096 * 128256) // 128256

    qwen = tables["qwen3_30b_a3b"]
    assert qwen.layers[0].experts == 128 * (2 * q4k(2048 * 768) + q6k(768 * 2048)) == 391_643_136
    assert qwen.layers[6].experts == 128 * 3 * q4k(2048 * 768) == 339_738_624
    assert qwen.layers[0].ffn == 2048 * 128 * 4 + 2048 * 4  # the router and the FFN norm stay with the layer
    assert qwen.layers[0].shared == 0
    assert qwen.moe
    assert qwen.used_fraction == 8 / 128

    scout = tables["llama4_scout"]
    assert scout.layers[0].shared == 2 * q4k(5120 * 8192) + q6k(8192 * 5120)
    assert scout.layers[0].experts == 16 * (2 * q4k(5120 * 8192) + q6k(8192 * 5120))

    oss = tables["gpt_oss_20b"]
    # three MXFP4 expert matrices of 32 x 2880 x 2880 (17 bytes per 32) and their F32 biases
    assert oss.layers[0].experts == 3 * 32 * 2880 * 2880 // 32 * 17 + 3 * 2880 * 32 * 4
    # K and V of 8 heads x 64 per layer
    assert oss.kv_elements[0] == 8 * (64 + 64)


def test_active_bytes_count_routed_experts_at_used_over_total(tables: dict[str, ModelTable]) -> None:
    qwen = tables["qwen3_30b_a3b"]
    dense = sum(layer.attention + layer.ffn for layer in qwen.layers)
    experts = sum(layer.experts for layer in qwen.layers)
    head = q6k(2048 * 151936) + 2048 * 4
    row = q4k(2048 * 151936) // 151936
    assert qwen.active_bytes == int(dense + experts * 8 / 128 + row + head)
    assert qwen.active_bytes < qwen.total_bytes / 9  # "30B-A3B": about a tenth of the weights per token
    scout = tables["llama4_scout"]
    assert 0.14 < scout.active_bytes / scout.total_bytes < 0.17  # 17B of 109B active


def qwen_expert_layers_in_ram(gb: int) -> int:
    """By hand: every layer and the head on the GPU at 32k; experts of the first N layers in RAM."""
    n = 48
    experts = [128 * (2 * q4k(2048 * 768) + (q6k if more_bits(i, n) else q4k)(768 * 2048)) for i in range(n)]
    attention = [q4k(2048 * 4096) + q4k(2048 * 512) + (q6k if more_bits(i, n) else q4k)(2048 * 512)
                 + q4k(4096 * 2048) + 2 * 2048 * 4 + 2 * 128 * 4 for i in range(n)]
    router = 2048 * 128 * 4
    head = q6k(2048 * 151936) + 2048 * 4
    kv = 48 * 4 * (128 + 128) * 2 * 32768  # f16 K and V: 3 GiB at 32k
    compute = 64 * 2**20 + 512 * 4 * (2 * 768 + 4 * 2048) + 512 * 4 * 151936  # scratch + logits
    fixed = sum(attention) + n * router + head + kv + compute
    budget = int(gb * GiB * 0.9)
    return next(k for k in range(n + 1) if fixed + sum(experts[k:]) <= budget)


# (model, machine) -> (n_gpu_layers as llama.cpp counts them (layers + 1 for the head), expert layers in RAM,
#                      context, fit)
EXPECTED = {
    # 4.6 GB of weights on the GPU; KV 128 KiB/token: 4 GiB at 32k is too much for 7.2 GiB, 2 GiB at 16k fits
    ("llama31_8b", "8GB"): (33, 0, 16384, "gpu"),
    ("llama31_8b", "16GB"): (33, 0, 32768, "gpu"),
    ("llama31_8b", "24GB"): (33, 0, 32768, "gpu"),
    ("llama31_8b", "mac64"): (33, 0, 32768, "gpu"),
    ("qwen3_30b_a3b", "8GB"): (49, qwen_expert_layers_in_ram(8), 32768, "partial"),
    ("qwen3_30b_a3b", "16GB"): (49, qwen_expert_layers_in_ram(16), 32768, "partial"),
    ("qwen3_30b_a3b", "24GB"): (49, 0, 32768, "gpu"),
    ("qwen3_30b_a3b", "mac64"): (49, 0, 32768, "gpu"),
    # 12.1 GB: whole on 16 GB; on 8 GB the 1.2 GB non-expert part + 0.75 GiB KV fits with 10 layers of experts
    ("gpt_oss_20b", "8GB"): (25, 14, 32768, "partial"),
    ("gpt_oss_20b", "16GB"): (25, 0, 32768, "gpu"),
    ("gpt_oss_20b", "mac64"): (25, 0, 32768, "gpu"),
    # 357 MB per layer + 160 KiB KV/token: 20 layers at 8k on 7.2 GiB; on 14.4 GiB all 40 but not the 0.55 GB head
    ("mistral_small_24b", "8GB"): (20, 0, 8192, "partial"),
    ("mistral_small_24b", "16GB"): (40, 0, 8192, "partial"),
    ("mistral_small_24b", "24GB"): (41, 0, 32768, "gpu"),
    # 65 GB of weights, 63 of them experts: all experts in RAM; the rest (2.9 GB + KV) on the GPU
    ("llama4_scout", "8GB"): (48, 48, 8192, "partial"),
    ("llama4_scout", "16GB"): (49, 47, 32768, "partial"),
    ("llama4_scout", "24GB"): (49, 41, 32768, "partial"),
}


@pytest.mark.parametrize(("key", "machine"), sorted(EXPECTED))
def test_plan_by_hand(tables: dict[str, ModelTable], key: str, machine: str) -> None:
    table, hw = tables[key], MACHINES[machine]
    p = plan(table, hw)
    assert (p.n_gpu_layers, p.n_cpu_moe, p.n_ctx, p.fit) == EXPECTED[key, machine]
    assert p.gpu_bytes <= hw.gpu_budget
    assert p.ram_bytes + (p.gpu_bytes if hw.unified_memory else 0) <= hw.ram_total
    if p.fit == "partial" and p.n_cpu_moe > 0 and p.n_gpu_layers > table.n_layers:
        # the fewest expert layers in RAM: one fewer would not fit
        assert usage(table, p.n_ctx, p.n_gpu_layers, p.n_cpu_moe - 1)[0] > hw.gpu_budget


def test_expert_offload_frees_what_the_experts_weigh(tables: dict[str, ModelTable]) -> None:
    qwen = tables["qwen3_30b_a3b"]
    none_gpu, none_ram = usage(qwen, 8192, 49, 0)
    all_gpu, all_ram = usage(qwen, 8192, 49, 48)
    experts = sum(layer.experts for layer in qwen.layers)
    assert none_gpu - all_gpu == experts
    # RAM gains the experts; the CPU also gets a compute buffer for them
    assert all_ram - none_ram >= experts


def test_modes_override_auto(tables: dict[str, ModelTable]) -> None:
    qwen = tables["qwen3_30b_a3b"]
    assert plan(qwen, gpu(24), mode="all").n_cpu_moe == 48
    assert plan(qwen, gpu(24), mode="first", first_n=5).n_cpu_moe == 5
    none = plan(qwen, gpu(16), mode="none")
    assert none.n_cpu_moe == 0
    assert none.n_gpu_layers < 48
    cpu = Hardware("cpu", 2, 64 * GiB, 56 * GiB, None, False)
    on_cpu = plan(qwen, cpu)
    assert (on_cpu.n_gpu_layers, on_cpu.fit, on_cpu.gpu_bytes) == (0, "ram", 0)


def test_explanation_line(tables: dict[str, ModelTable]) -> None:
    p = plan(tables["qwen3_30b_a3b"], gpu(16))
    n = qwen_expert_layers_in_ram(16)
    assert p.explain() == (f"48 of 48 layers on the GPU, experts of {n} layers in RAM, context 32k: "
                           f"{p.gpu_bytes / GiB:.1f} GB GPU + {p.ram_bytes / GiB:.1f} GB RAM")
    assert plan(tables["mistral_small_24b"], gpu(16)).explain().startswith(
        "40 of 40 layers on the GPU (the output head in RAM), context 8k")


def test_a_model_too_large_for_the_mac_is_refused_with_numbers(tables: dict[str, ModelTable]) -> None:
    scout = tables["llama4_scout"]
    p = plan(scout, MAC64)
    # 65.3 GB (60.9 GiB) of weights alone exceed the 57.6 GiB a 64 GiB Mac leaves for models
    assert p.fit == "too_large"
    assert p.ram_bytes > scout.total_bytes
    assert "57.6 GB of RAM for models" in p.explain()
    assert f"{p.ram_bytes / GiB:.1f} GB" in p.explain()


def test_header_prefix_too_short_asks_for_more(tmp_path: Path) -> None:
    data = mh.write_header(mh.gpt_oss_20b(), tmp_path / "oss.gguf").read_bytes()
    with pytest.raises(NeedMoreBytes):
        parse_header(data[: len(data) - 10])
    metadata, tensors = parse_header(data)
    assert metadata["general.architecture"] == "gpt-oss"
    assert len(tensors) == 3 + 24 * 19


def test_the_load_takes_the_plan_on_a_gpu(tmp_path: Path) -> None:
    """What the engine passes to llama.cpp on a 16 GB GPU (this machine has none: the Hardware is described)."""
    from app.engine.gguf_file import GGUFInfo
    from app.engine.hardware import plan_load
    from app.engine.loadplan import place_for_load
    from app.engine.types import LoadSettings

    path = mh.write_header(mh.qwen3_30b_a3b(), tmp_path / "qwen.gguf")
    metadata, tensors = parse_header(path.read_bytes())
    info = GGUFInfo(path, path.stat().st_size, 3, len(tensors), metadata, 0, 0, tensors)
    hw = gpu(16)

    def placed(settings: LoadSettings) -> tuple[int, int]:
        load = place_for_load(info, hw, plan_load(info.shape, hw, n_ctx=settings.n_ctx), settings, 8)
        return load.n_gpu_layers, load.n_cpu_moe

    assert placed(LoadSettings(n_ctx=32768)) == (-1, qwen_expert_layers_in_ram(16))
    assert placed(LoadSettings(n_ctx=32768, n_cpu_moe=-1)) == (-1, 48)
    assert placed(LoadSettings(n_ctx=32768, n_cpu_moe=0))[1] == 0  # experts stay: whole layers leave instead
    assert placed(LoadSettings(n_ctx=32768, n_cpu_moe=0))[0] < 48
    assert placed(LoadSettings(n_ctx=32768, n_gpu_layers=10, n_cpu_moe=4)) == (10, 4)  # the user's, as given
