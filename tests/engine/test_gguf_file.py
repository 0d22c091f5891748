"""The GGUF header check that runs before llama.cpp sees a file."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from app.engine.gguf_file import quant_from_filename, read_gguf
from app.errors import InvalidModelError, ModelNotFoundError
from tests.gguf_files import copy_truncated, gguf_string, write_gguf_header


def test_reads_the_real_test_model(test_model: Path) -> None:
    info = read_gguf(test_model)
    assert info.architecture == "gemma3"
    assert info.quantization == "Q4_K_M"
    assert info.context_length == 32768
    assert info.block_count == 18
    assert info.head_count_kv == 1
    assert info.key_length == 256
    assert info.chat_template is None  # a base model: the engine must fall back
    assert info.license == "gemma"
    assert 260e6 < info.n_params < 280e6
    assert info.tensor_bytes <= info.file_size


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.touch()
    with pytest.raises(InvalidModelError, match="empty"):
        read_gguf(empty)


def test_not_a_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(InvalidModelError, match="GGUF signature"):
        read_gguf(fake)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        read_gguf(tmp_path / "nope.gguf")


@pytest.mark.parametrize("keep", [100, 5_000_000, 200_000_000])
def test_truncated_model(test_model: Path, tmp_path: Path, keep: int) -> None:
    cut = copy_truncated(test_model, tmp_path / "cut.gguf", keep)
    with pytest.raises(InvalidModelError, match="truncated|ends inside"):
        read_gguf(cut)


def test_unsupported_version(tmp_path: Path) -> None:
    path = write_gguf_header(tmp_path / "v9.gguf", 0, [], version=9)
    with pytest.raises(InvalidModelError, match="version 9"):
        read_gguf(path)


def test_huge_kv_count(tmp_path: Path) -> None:
    path = tmp_path / "kv.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2**62) + b"\x00" * 64)
    with pytest.raises(InvalidModelError, match="metadata"):
        read_gguf(path)


def test_string_length_2_pow_63(tmp_path: Path) -> None:
    key = struct.pack("<Q", 2**63) + b"general.name"
    path = write_gguf_header(tmp_path / "str.gguf", 0, [key])
    with pytest.raises(InvalidModelError, match="ends inside"):
        read_gguf(path)


def test_huge_array(tmp_path: Path) -> None:
    kv = gguf_string(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2**60)
    path = write_gguf_header(tmp_path / "arr.gguf", 0, [kv])
    with pytest.raises(InvalidModelError, match="ends inside"):
        read_gguf(path)


def test_tensor_past_end_of_file(tmp_path: Path) -> None:
    kv = gguf_string(b"general.architecture") + struct.pack("<I", 8) + gguf_string(b"llama")
    tensor = gguf_string(b"w") + struct.pack("<I", 1) + struct.pack("<Q", 1024) + struct.pack("<IQ", 0, 0)
    path = write_gguf_header(tmp_path / "t.gguf", 1, [kv], tensors=[tensor])
    with pytest.raises(InvalidModelError, match="truncated or damaged"):
        read_gguf(path)


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("model-IQ2_XXS.gguf", "IQ2_XXS"),
        ("gemma-3-27b-it-BF16-00001-of-00002.gguf", "BF16"),
        ("phi-4.Q8_0.gguf", "Q8_0"),
        ("mystery.gguf", None),
    ],
)
def test_quant_from_filename(name: str, quant: str | None) -> None:
    assert quant_from_filename(name) == quant
