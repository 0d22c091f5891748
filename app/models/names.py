"""A model's one display name, the same in the window's model menu, the status bar, My models, the CLI's
lists and chat exports.

It is the library's name for the model (the downloaded file's name, the name another app gives it), or
the file's name without ``.gguf`` for a file opened from disk, followed by its quantization when the name
does not say it already: ``SmolLM2-135M-Instruct-Q4_K_M``, ``smollm2 · Q4_1``.  The GGUF header's own
``general.name`` is not used: it is often the training run's name ("Smollm2 135M 8k Lc100K Mix1 Ep2"),
and users type the file's name to the CLI, not that one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.engine.gguf_file import SPLIT_RE, quant_from_filename, read_gguf
from app.errors import PaddockError
from app.models.registry import LibraryModel, Registry

REMOTE_SCHEME = "remote://"  # app.engine.remote.SCHEME; not imported from there: it brings the OpenAI client


def display_name(name: str, quant: str | None) -> str:
    """``name · quant``, or ``name`` alone when it already says the quantization (or none is known)."""
    if not quant or quant == "unknown" or quant.lower() in name.lower():
        return name
    return f"{name} · {quant}"


def library_display_name(model: LibraryModel) -> str:
    return display_name(model.name, model.quant)


def file_display_name(path: Path, registry: Registry | None = None, quant: str | None = None) -> str:
    """The display name of the model file at ``path``: the library's when it has the file, else the file's,
    with ``quant`` (when the caller read the header already), else the header's or the file name's."""
    model = in_library(registry, path) if registry is not None else None
    if model is not None:
        return library_display_name(model)
    if quant is None:
        try:
            quant = read_gguf(path).quantization
        except PaddockError:
            quant = quant_from_filename(path.name)
    return display_name(file_stem(path), quant)


def in_library(registry: Registry, path: Path) -> LibraryModel | None:
    """The library's entry for the file at ``path`` (as given, or with its links resolved as imports keep it)."""
    found = registry.model_by_path(path)
    if found is None and path.exists() and path.resolve() != path:
        found = registry.model_by_path(path.resolve())
    return found


def file_stem(path: Path) -> str:
    """The file's name without ``.gguf`` (a split model's: without the part number either)."""
    stem = SPLIT_RE.sub("", path.name)
    return stem[:-5] if stem.lower().endswith(".gguf") else stem


def chat_model_name(model: str | None, registry: Registry | None = None,
                    remote_label: Callable[[str], str] | None = None) -> str:
    """What a chat's model (a path, a remote model reference, or none) is called in lists and exports;
    ``remote_label`` names a remote model as the window does (``model · server``)."""
    if not model:
        return "no model"
    if model.startswith(REMOTE_SCHEME):
        return remote_label(model) if remote_label is not None else model[len(REMOTE_SCHEME):].partition("/")[2]
    return file_display_name(Path(model), registry)
