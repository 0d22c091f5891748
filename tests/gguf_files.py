"""GGUF files made by tests: a copy with another chat template, hostile headers, truncated copies."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type: bytes
_STRING, _ARRAY = 8, 9
TEMPLATE_KEY = b"tokenizer.chat_template"


def gguf_with_template(src: Path, dest: Path, template: str) -> Path:
    """A copy of ``src`` with ``tokenizer.chat_template`` set: the header rewritten with every other key and
    tensor info as it was, the tensor data copied after it at the file's alignment (what the gguf package's
    ``gguf_new_metadata`` writes, in a fraction of the time: that tool decodes the whole vocabulary)."""
    with src.open("rb") as f:
        head = f.read(64 << 20)  # the header of a small model (vocabulary included) is well inside this
    view = memoryview(head)
    pos = 4 + 4
    n_tensors, n_kv = struct.unpack_from("<QQ", head, pos)
    pos += 16

    def string_end(at: int) -> int:
        return at + 8 + int(struct.unpack_from("<Q", head, at)[0])

    def value_end(vtype: int, at: int) -> int:
        if vtype == _STRING:
            return string_end(at)
        if vtype == _ARRAY:
            etype, count = struct.unpack_from("<IQ", head, at)
            at += 12
            if etype in _FIXED:
                return int(at + count * _FIXED[etype])
            for _ in range(count):
                at = value_end(etype, at)
            return at
        return at + _FIXED[vtype]

    kvs: list[bytes] = []
    alignment = 32
    for _ in range(n_kv):
        start = pos
        key = bytes(view[pos + 8:string_end(pos)])
        pos = string_end(pos)
        vtype = struct.unpack_from("<I", head, pos)[0]
        end = value_end(vtype, pos + 4)
        if key == b"general.alignment":
            alignment = struct.unpack_from("<I", head, pos + 4)[0]
        if key != TEMPLATE_KEY:
            kvs.append(bytes(view[start:end]))
        pos = end
    encoded = template.encode("utf-8")
    kvs.append(gguf_string(TEMPLATE_KEY) + struct.pack("<I", _STRING) + gguf_string(encoded))
    infos_start = pos
    for _ in range(n_tensors):
        pos = string_end(pos)
        n_dims = struct.unpack_from("<I", head, pos)[0]
        pos += 4 + 8 * n_dims + 4 + 8
    infos = bytes(view[infos_start:pos])
    data_start = -(-pos // alignment) * alignment
    header = head[:8] + struct.pack("<QQ", n_tensors, len(kvs)) + b"".join(kvs) + infos
    header += b"\0" * (-len(header) % alignment)
    with src.open("rb") as fin, dest.open("wb") as fout:
        fout.write(header)
        fin.seek(data_start)
        while chunk := fin.read(8 << 20):
            fout.write(chunk)
    return dest


def write_gguf_header(
    path: Path, n_tensors: int, kvs: list[bytes], version: int = 3, tensors: list[bytes] | None = None
) -> Path:
    """A raw GGUF header (for crafted, hostile files)."""
    body = b"".join(kvs) + b"".join(tensors or [])
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + body)
    return path


def gguf_string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def copy_truncated(src: Path, dest: Path, size: int) -> Path:
    with src.open("rb") as fin, dest.open("wb") as fout:
        fout.write(fin.read(size))
    return dest


def tiny_moe(tokenizer_src: Path, dest: Path, seed: int = 7) -> Path:
    """A tiny mixture-of-experts GGUF (architecture ``llama``, 2 layers, 4 experts of which 2 work per
    token, random weights) with the tokenizer of ``tokenizer_src`` copied in: a few MB, loads and decodes."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(tokenizer_src)
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    n_embd, n_ff, n_head, n_head_kv, n_layer, n_expert = 64, 128, 4, 2, 2, 4
    writer = gguf.GGUFWriter(dest, "llama")
    writer.add_name("tiny-moe")
    writer.add_block_count(n_layer)
    writer.add_context_length(2048)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_expert_count(n_expert)
    writer.add_expert_used_count(2)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for field in reader.fields.values():
        if field.name.startswith("tokenizer."):
            sub = field.types[1] if len(field.types) > 1 else None
            writer.add_key_value(field.name, field.contents(), field.types[0], sub)
    rng = np.random.default_rng(seed)

    def weights(*shape: int, dtype: type = np.float32) -> Any:
        return (rng.standard_normal(shape) * 0.08).astype(dtype)

    writer.add_tensor("token_embd.weight", weights(n_vocab, n_embd, dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    head_dim = n_embd // n_head
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weights(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weights(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate_inp.weight", weights(n_expert, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_gate_exps.weight", weights(n_expert, n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up_exps.weight", weights(n_expert, n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down_exps.weight", weights(n_expert, n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dest
