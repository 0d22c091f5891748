"""LoRA adapters written by tests with the gguf package, as llama.cpp's convert_lora_to_gguf.py writes them,
and the bad variants that llama.cpp refuses or aborts on."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from tests.gguf_files import copy_truncated

Fault = Literal["float64_alpha", "other_arch", "wrong_shape", "missing_half", "truncated"]


def base_shapes(base: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    """(architecture, tensor dims in ggml order) of a model file (Paddock's checker reads them the same way;
    the gguf package's reader would take about 20 s on SmolLM2's vocabulary)."""
    from app.engine.lora import _read

    header, tensors = _read(base, "model")
    return str(header["general.architecture"]), tensors


def write_lora(
    path: Path, base: Path, *, rank: int = 4, alpha: float = 8.0, target: str = "attn_q", seed: int = 0,
    std: float = 0.2, zero: bool = False, fault: Fault | None = None,
) -> Path:
    """A rank-``rank`` LoRA adapter on every layer's ``target`` weight of ``base``.

    ``A`` (ne = [n_in, r]) and ``B`` (ne = [r, n_out]) are random with ``seed``; ``zero`` makes ``B`` zero
    (an adapter that changes nothing).  ``fault`` writes one of the bad files Paddock must refuse.
    """
    import gguf

    arch, shapes = base_shapes(base)
    writer = gguf.GGUFWriter(str(path), "qwen2" if fault == "other_arch" else arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_string("general.name", path.stem)
    if fault == "float64_alpha":
        writer.add_float64("adapter.lora.alpha", alpha)
    else:
        writer.add_float32("adapter.lora.alpha", alpha)
    rng = np.random.default_rng(seed)
    names = sorted(n for n in shapes if n.endswith(f".{target}.weight"))
    assert names, f"{base.name} has no {target} tensors"
    for i, name in enumerate(names):
        n_in, n_out = shapes[name][:2]
        if fault == "wrong_shape":
            n_out -= 8
        # numpy shapes are ggml's ne reversed
        a = rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(rank, n_in)).astype(np.float32)
        b = (np.zeros((n_out, rank)) if zero else rng.normal(0.0, std, size=(n_out, rank))).astype(np.float32)
        writer.add_tensor(f"{name}.lora_a", a)
        if not (fault == "missing_half" and i == len(names) // 2):
            writer.add_tensor(f"{name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if fault == "truncated":
        whole = path.with_name(path.name + ".whole")
        path.rename(whole)
        copy_truncated(whole, path, whole.stat().st_size * 2 // 3)
        whole.unlink()
    return path
