"""GGUF headers (metadata and tensor table, no tensor data) with the real shapes and quant types
of popular models, for the placement planner: a plan needs only the header, as Discover has it
from a Range request before a download.

Quant types follow llama.cpp's Q4_K_M rules (``llama_tensor_get_type``): Q4_K by default, Q6_K for
the output head and for ``attn_v`` / ``ffn_down`` in the "more bits" layers (the first and last
eighth and every third layer between), F32 for norms, biases and routers. gpt-oss-20b is as
ggml-org publishes it: MXFP4 experts, Q8_0 for the rest.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

Q = gguf.GGMLQuantizationType


@dataclass
class Header:
    name: str
    arch: str
    metadata: dict[str, Any]
    tensors: list[tuple[str, tuple[int, ...], Q]] = field(default_factory=list)

    def add(self, name: str, shape: tuple[int, ...], qtype: Q) -> None:
        self.tensors.append((name, shape, qtype))


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _common(name: str, arch: str, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, ctx: int,
            head_dim: int | None = None, **extra: Any) -> Header:
    md: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": name,
        "general.file_type": 15,  # MOSTLY_Q4_K_M
        f"{arch}.block_count": n_layer,
        f"{arch}.context_length": ctx,
        f"{arch}.embedding_length": n_embd,
        f"{arch}.attention.head_count": n_head,
        f"{arch}.attention.head_count_kv": n_head_kv,
    }
    if head_dim is not None:
        md[f"{arch}.attention.key_length"] = head_dim
        md[f"{arch}.attention.value_length"] = head_dim
    md.update({f"{arch}.{k}": v for k, v in extra.items()})
    return Header(name, arch, md)


def _attention(h: Header, i: int, n: int, n_embd: int, q_dim: int, kv_dim: int) -> None:
    h.add(f"blk.{i}.attn_norm.weight", (n_embd,), Q.F32)
    h.add(f"blk.{i}.attn_q.weight", (n_embd, q_dim), Q.Q4_K)
    h.add(f"blk.{i}.attn_k.weight", (n_embd, kv_dim), Q.Q4_K)
    h.add(f"blk.{i}.attn_v.weight", (n_embd, kv_dim), Q.Q6_K if _more_bits(i, n) else Q.Q4_K)
    h.add(f"blk.{i}.attn_output.weight", (q_dim, n_embd), Q.Q4_K)
    h.add(f"blk.{i}.ffn_norm.weight", (n_embd,), Q.F32)


def _dense(name: str, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int, vocab: int,
           ctx: int, head_dim: int) -> Header:
    h = _common(name, "llama", n_layer, n_embd, n_head, n_head_kv, ctx, head_dim, feed_forward_length=n_ff)
    h.add("token_embd.weight", (n_embd, vocab), Q.Q4_K)
    for i in range(n_layer):
        _attention(h, i, n_layer, n_embd, n_head * head_dim, n_head_kv * head_dim)
        h.add(f"blk.{i}.ffn_gate.weight", (n_embd, n_ff), Q.Q4_K)
        h.add(f"blk.{i}.ffn_up.weight", (n_embd, n_ff), Q.Q4_K)
        h.add(f"blk.{i}.ffn_down.weight", (n_ff, n_embd), Q.Q6_K if _more_bits(i, n_layer) else Q.Q4_K)
    h.add("output_norm.weight", (n_embd,), Q.F32)
    h.add("output.weight", (n_embd, vocab), Q.Q6_K)
    return h


def llama31_8b() -> Header:
    """Meta-Llama-3.1-8B-Instruct Q4_K_M (published file: 4,920,739,232 bytes)."""
    h = _dense("Llama 3.1 8B Instruct", 32, 4096, 32, 8, 14336, 128256, 131072, 128)
    h.add("rope_freqs.weight", (64,), Q.F32)
    return h


def mistral_small_24b() -> Header:
    """Mistral-Small-24B-Instruct-2501 Q4_K_M (published file: 14.3 GB)."""
    return _dense("Mistral Small 24B Instruct 2501", 40, 5120, 32, 8, 32768, 131072, 32768, 128)


def _moe(name: str, arch: str, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, head_dim: int,
         vocab: int, ctx: int, n_expert: int, n_used: int, n_ff_exp: int, shared_ff: int = 0,
         qk_norm: bool = False) -> Header:
    h = _common(name, arch, n_layer, n_embd, n_head, n_head_kv, ctx, head_dim, expert_count=n_expert,
                expert_used_count=n_used, expert_feed_forward_length=n_ff_exp)
    h.add("token_embd.weight", (n_embd, vocab), Q.Q4_K)
    for i in range(n_layer):
        _attention(h, i, n_layer, n_embd, n_head * head_dim, n_head_kv * head_dim)
        if qk_norm:
            h.add(f"blk.{i}.attn_q_norm.weight", (head_dim,), Q.F32)
            h.add(f"blk.{i}.attn_k_norm.weight", (head_dim,), Q.F32)
        h.add(f"blk.{i}.ffn_gate_inp.weight", (n_embd, n_expert), Q.F32)
        h.add(f"blk.{i}.ffn_gate_exps.weight", (n_embd, n_ff_exp, n_expert), Q.Q4_K)
        h.add(f"blk.{i}.ffn_up_exps.weight", (n_embd, n_ff_exp, n_expert), Q.Q4_K)
        h.add(f"blk.{i}.ffn_down_exps.weight", (n_ff_exp, n_embd, n_expert),
              Q.Q6_K if _more_bits(i, n_layer) else Q.Q4_K)
        if shared_ff:
            h.add(f"blk.{i}.ffn_gate_shexp.weight", (n_embd, shared_ff), Q.Q4_K)
            h.add(f"blk.{i}.ffn_up_shexp.weight", (n_embd, shared_ff), Q.Q4_K)
            h.add(f"blk.{i}.ffn_down_shexp.weight", (shared_ff, n_embd), Q.Q6_K if _more_bits(i, n_layer) else Q.Q4_K)
    h.add("output_norm.weight", (n_embd,), Q.F32)
    h.add("output.weight", (n_embd, vocab), Q.Q6_K)
    return h


def qwen3_30b_a3b() -> Header:
    """Qwen3-30B-A3B Q4_K_M (published file: 18.6 GB): 128 experts, 8 used, no shared expert."""
    return _moe("Qwen3 30B A3B", "qwen3moe", 48, 2048, 32, 4, 128, 151936, 40960, 128, 8, 768, qk_norm=True)


def llama4_scout() -> Header:
    """Llama-4-Scout-17B-16E-Instruct Q4_K_M (109B parameters, 17B active): 16 experts, 1 used, one shared."""
    return _moe("Llama 4 Scout 17B 16E Instruct", "llama4", 48, 5120, 40, 8, 128, 202048, 10485760, 16, 1, 8192,
                shared_ff=8192)


def gpt_oss_20b() -> Header:
    """gpt-oss-20b as ggml-org publishes it (MXFP4 experts, Q8_0 elsewhere; file 12.1 GB): 32 experts, 4 used."""
    n_layer, n_embd, n_head, n_kv, hd, vocab, n_exp, n_ff = 24, 2880, 64, 8, 64, 201088, 32, 2880
    h = _common("gpt-oss-20b", "gpt-oss", n_layer, n_embd, n_head, n_kv, 131072, hd, expert_count=n_exp,
                expert_used_count=4, expert_feed_forward_length=n_ff)
    h.metadata["gpt-oss.attention.sliding_window"] = 128
    h.add("token_embd.weight", (n_embd, vocab), Q.Q8_0)
    for i in range(n_layer):
        h.add(f"blk.{i}.attn_norm.weight", (n_embd,), Q.F32)
        for part, shape in (("q", (n_embd, n_head * hd)), ("k", (n_embd, n_kv * hd)), ("v", (n_embd, n_kv * hd))):
            h.add(f"blk.{i}.attn_{part}.weight", shape, Q.Q8_0)
            h.add(f"blk.{i}.attn_{part}.bias", (shape[1],), Q.F32)
        h.add(f"blk.{i}.attn_output.weight", (n_head * hd, n_embd), Q.Q8_0)
        h.add(f"blk.{i}.attn_output.bias", (n_embd,), Q.F32)
        h.add(f"blk.{i}.attn_sinks.weight", (n_head,), Q.F32)
        h.add(f"blk.{i}.post_attention_norm.weight", (n_embd,), Q.F32)
        h.add(f"blk.{i}.ffn_gate_inp.weight", (n_embd, n_exp), Q.F32)
        h.add(f"blk.{i}.ffn_gate_inp.bias", (n_exp,), Q.F32)
        for part in ("gate", "up", "down"):
            h.add(f"blk.{i}.ffn_{part}_exps.weight", (n_embd, n_ff, n_exp), Q.MXFP4)
            h.add(f"blk.{i}.ffn_{part}_exps.bias", (n_ff if part != "down" else n_embd, n_exp), Q.F32)
    h.add("output_norm.weight", (n_embd,), Q.F32)
    h.add("output.weight", (n_embd, vocab), Q.Q8_0)
    return h


ALL = {"llama31_8b": llama31_8b, "llama4_scout": llama4_scout, "qwen3_30b_a3b": qwen3_30b_a3b,
       "gpt_oss_20b": gpt_oss_20b, "mistral_small_24b": mistral_small_24b}


def _string(s: str) -> bytes:
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def _value(v: Any) -> bytes:
    if isinstance(v, bool):
        return struct.pack("<I?", 7, v)
    if isinstance(v, int):
        return struct.pack("<II", 4, v) if 0 <= v < 2**32 else struct.pack("<Iq", 11, v)
    if isinstance(v, float):
        return struct.pack("<If", 6, v)
    if isinstance(v, str):
        return struct.pack("<I", 8) + _string(v)
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return struct.pack("<IIQ", 9, 4, len(v)) + b"".join(struct.pack("<I", x) for x in v)
    raise TypeError(f"cannot write {v!r}")


def write_header(h: Header, path: Path) -> Path:
    """The header alone (GGUF v3): metadata and tensor infos with aligned offsets, no tensor data."""
    out = [b"GGUF", struct.pack("<IQQ", 3, len(h.tensors), len(h.metadata))]
    for key, value in h.metadata.items():
        out.append(_string(key) + _value(value))
    offset = 0
    for name, shape, qtype in h.tensors:
        out.append(_string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape))
        out.append(struct.pack("<IQ", int(qtype), offset))
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        elements = 1
        for d in shape:
            elements *= d
        offset += (elements // block * size + 31) // 32 * 32
    path.write_bytes(b"".join(out))
    return path
