"""Image projectors (``mmproj-*.gguf``): found beside their model, checked before anything loads.

A model that sees is two files: the language model and its projector (the vision encoder and the
layers that turn a picture into the model's own embeddings).  Hugging Face repos and LM Studio's
folders keep them side by side; Paddock pairs them the same way, so the user never picks a
projector by hand unless they want to.

:func:`check_projector` refuses, before the engine sees anything, a file that is not a projector
(a chat model chosen by mistake), a truncated one, one of a kind llama.cpp does not support
(Llama 3.2 Vision's ``mllama``), and one made for another model (its output size differs from the
model's embedding size).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from app.engine.gguf_file import read_gguf
from app.errors import InvalidModelError, ModelNotFoundError, ProjectorError

PROJECTOR_RE = re.compile(r"(^|[-_.])mmproj([-_.]|$)", re.IGNORECASE)
# projector types of this llama.cpp that read images (mtmd); mllama (Llama 3.2 Vision) is not among them
UNSUPPORTED = {"mllama": "Llama 3.2 Vision (mllama) is not supported by llama.cpp"}
# the tensor whose size is the projector's output, per type (else any "mm." tensor must match)
_OUTPUT = {"mlp": ("mm.2.bias", 0), "pixtral": ("mm.2.bias", 0)}


def is_projector_name(name: str) -> bool:
    """Whether a file name says it is an image projector (``mmproj-model-f16.gguf``, ``model.mmproj-Q8_0.gguf``)."""
    return name.lower().endswith(".gguf") and bool(PROJECTOR_RE.search(Path(name).stem))


def projector_beside(model: str | Path) -> Path | None:
    """The projector next to ``model`` (LM Studio's and Hugging Face's layout), or None.

    With several, the one whose name shares the most with the model's, then F16 over quantized ones.
    """
    model = Path(model)
    try:
        found = [p for p in model.parent.iterdir() if p.is_file() and is_projector_name(p.name) and p != model]
    except OSError:
        return None
    if not found:
        return None
    stem = model.stem.lower()

    def score(p: Path) -> tuple[int, int, str]:
        name = p.stem.lower().replace("mmproj", "").strip("-_.")
        shared = len(_common_prefix(name, stem))
        return (-shared, 0 if "f16" in name else 1, p.name)

    return sorted(found, key=score)[0]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


@dataclass(frozen=True)
class ProjectorInfo:
    path: Path
    projector_type: str
    n_embd_out: int  # 0 when the type's output size is not known here (the engine checks it)


def check_projector(model: str | Path, mmproj: str | Path) -> ProjectorInfo:
    """Refuse a projector that cannot work with ``model``, before anything loads.

    Raises:
        ProjectorError: missing, not a projector, truncated, unsupported, or made for another model.
    """
    mmproj = Path(mmproj)
    try:
        info = read_gguf(mmproj)
    except ModelNotFoundError as exc:
        raise ProjectorError(f"the image projector {mmproj} does not exist") from exc
    except InvalidModelError as exc:
        raise ProjectorError(f"{mmproj.name} is not a usable image projector: {exc}") from exc
    if info.architecture != "clip":
        raise ProjectorError(
            f"{mmproj.name} is not an image projector but a {info.architecture or 'non-clip'} model: choose the "
            "mmproj-*.gguf file that comes with the model"
        )
    kind = str(info.get("clip.projector_type") or info.get("clip.vision.projector_type") or "")
    if kind in UNSUPPORTED:
        raise ProjectorError(f"{mmproj.name}: {UNSUPPORTED[kind]}, so Paddock cannot show it images")
    if not info.get("clip.has_vision_encoder", False):
        raise ProjectorError(f"{mmproj.name} has no vision encoder (an audio projector?): Paddock reads only images")
    n_embd = read_gguf(model).embedding_length
    out = _output_size(mmproj, kind, n_embd)
    if n_embd and out and out != n_embd:
        raise ProjectorError(
            f"{mmproj.name} was made for another model: it gives {out}-wide image embeddings, but "
            f"{Path(model).name} reads {n_embd}-wide ones. Choose the projector from this model's own repo."
        )
    return ProjectorInfo(mmproj, kind, out)


def _output_size(mmproj: Path, kind: str, n_embd: int) -> int:
    """The projector's output size from its tensor table (0 if unknown)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(mmproj))
    except Exception as exc:  # a header read_gguf accepted but gguf cannot map: damaged
        raise ProjectorError(f"{mmproj.name} is damaged ({exc})") from exc
    dims = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
    if kind in _OUTPUT and _OUTPUT[kind][0] in dims:
        name, axis = _OUTPUT[kind]
        return dims[name][axis]
    sizes = {d for name, shape in dims.items() if name.startswith("mm.") for d in shape}
    if not sizes:
        return 0
    return n_embd if n_embd in sizes else max(sizes)
