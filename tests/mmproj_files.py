"""Image projectors (mmproj GGUFs) made by tests and benchmarks, for a text model of their choice.

No vision model is on PyPI, so the tests build a real projector with the ``gguf`` package: a
LLaVA-1.5-type clip GGUF (``clip.projector_type = mlp``) with no vision transformer blocks and
14-pixel patches, whose patch embedding and two-layer MLP map a patch of pure red, green or blue
to the text model's own input embedding of the token " red", " green" or " blue" (read from its
``token_embd.weight``).  A 28 x 28 picture is 2 x 2 patches: a red square then acts on the model
exactly like the text " red red red red" at its place in the prompt.

The arithmetic is exact, so the equality is too:

- pixels are normalised with mean 0 and std 1, so a channel is 0.0 or 1.0;
- the patch embedding (F16, which mtmd uses for it) weighs each pixel of channel c by 2**-8 into
  feature c: a full patch gives 196 / 256 = 0.765625, exact in fp16;
- ``mm.0`` maps feature c to hidden unit c as 64 * f - 33: +16 for the patch's own colour, -33
  for the others (exact); ggml's GELU returns x unchanged at or above +10 and 0 at or below -10;
- ``mm.2`` holds each colour's embedding divided by 16 (a power of two: exact), times 16 again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PATCH = 14
IMAGE_SIZE = 28  # 2 x 2 patches: four image tokens
COLOURS = ("red", "green", "blue")
N_EMBD_V = 4  # three colour features and one unused (the head size must divide it)
_FEATURE_WEIGHT = 2.0**-8
_ACTIVE, _SCALE, _BIAS = 16.0, 64.0, -33.0  # 64 * 0.765625 - 33 == 16


def colour_token_ids(model: Path, words: Sequence[str] = COLOURS) -> list[int]:
    """The ids of " red", " green", " blue" (one token each) in ``model``'s vocabulary."""
    from gguf import GGUFReader

    reader = GGUFReader(str(model))
    field = reader.fields["tokenizer.ggml.tokens"]
    vocab = {bytes(field.parts[i]).decode("utf-8", errors="replace"): n for n, i in enumerate(field.data)}
    ids = []
    for word in words:
        for spelling in ("\u0120" + word, "\u2581" + word):  # GPT-2 BPE and SentencePiece spellings of " word"
            if spelling in vocab:
                ids.append(vocab[spelling])
                break
        else:
            raise ValueError(f"{model.name} has no single token for ' {word}'")
    return ids


def token_embeddings(model: Path, ids: Sequence[int]) -> np.ndarray:
    """Rows ``ids`` of the model's ``token_embd.weight``, dequantized to float32 (shape (len(ids), n_embd))."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(model))
    tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
    rows = dequantize(tensor.data, tensor.tensor_type)
    return np.asarray(rows[list(ids)], dtype=np.float32)


def write_colour_projector(model: Path, dest: Path, *, n_embd: int | None = None,
                           targets: np.ndarray | None = None) -> Path:
    """A working LLaVA-style projector for ``model`` that sees pure red, green and blue.

    Args:
        n_embd: write another output size than the model's (a projector for another model).
        targets: the three output vectors (default: the model's embeddings of " red", " green", " blue").
    """
    import gguf

    if targets is None:
        targets = token_embeddings(model, colour_token_ids(model))
    if n_embd is not None and n_embd != targets.shape[1]:
        targets = np.resize(targets, (3, n_embd)).astype(np.float32)
    out_dim = int(targets.shape[1])
    n_patches = (IMAGE_SIZE // PATCH) ** 2

    writer = gguf.GGUFWriter(str(dest), "clip")
    writer.add_string("general.name", f"colour projector for {model.stem}")
    writer.add_uint32("general.file_type", 1)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH)
    writer.add_uint32("clip.vision.embedding_length", N_EMBD_V)
    writer.add_uint32("clip.vision.feed_forward_length", N_EMBD_V)
    writer.add_uint32("clip.vision.projection_dim", out_dim)
    writer.add_uint32("clip.vision.block_count", 0)
    writer.add_uint32("clip.vision.attention.head_count", 1)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.0, 0.0, 0.0])
    writer.add_array("clip.vision.image_std", [1.0, 1.0, 1.0])

    patch = np.zeros((N_EMBD_V, 3, PATCH, PATCH), dtype=np.float16)  # ggml ne [14, 14, 3, n_embd_v]
    for c in range(3):
        patch[c, c] = _FEATURE_WEIGHT
    writer.add_tensor("v.patch_embd.weight", patch)
    writer.add_tensor("v.position_embd.weight", np.zeros((n_patches, N_EMBD_V), dtype=np.float32))
    mm0 = np.zeros((3, N_EMBD_V), dtype=np.float32)  # ggml ne [n_embd_v, 3]
    for c in range(3):
        mm0[c, c] = _SCALE
    writer.add_tensor("mm.0.weight", mm0)
    writer.add_tensor("mm.0.bias", np.full(3, _BIAS, dtype=np.float32))
    writer.add_tensor("mm.2.weight", np.ascontiguousarray((targets / _ACTIVE).T.astype(np.float32)))  # ne [3, out]
    writer.add_tensor("mm.2.bias", np.zeros(out_dim, dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dest


def solid_png(dest: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> Path:
    """A PNG of one colour, written with Qt (QtGui only)."""
    from PySide6.QtGui import QColor, QImage

    image = QImage(size[0], size[1], QImage.Format.Format_RGB888)
    image.fill(QColor(*rgb))
    if not image.save(str(dest)):  # (the format from the name: .png)
        raise OSError(f"could not write {dest}")
    return dest


def model_with_projector(text_model: Path, folder: Path) -> Path:
    """The model in a folder of its own with its colour projector beside it, as LM Studio lays models out
    (a hard link where the disk allows, else a copy)."""
    folder.mkdir(parents=True)
    model = folder / text_model.name
    try:
        os.link(text_model, model)
    except OSError:
        shutil.copyfile(text_model, model)
    write_colour_projector(text_model, folder / "mmproj-SmolLM2-F16.gguf")
    return model
