"""Finding models: a path on disk, or a model in Paddock's models folder."""

from __future__ import annotations

from pathlib import Path

from app import paths
from app.errors import ModelNotFoundError


def local_gguf_files() -> list[Path]:
    """Every GGUF file under the models folder (split models: their first part only)."""
    found = []
    for path in sorted(paths.models_dir().rglob("*.gguf")):
        name = path.name.lower()
        if "-of-" in name and not name.rsplit("-of-", 1)[0].endswith("-00001"):
            continue
        found.append(path)
    return found


def resolve_model(ref: str) -> Path:
    """A model reference as users type it: a path, a file name, or a name without ``.gguf``.

    Raises:
        ModelNotFoundError: nothing matches; the message says what to do.
    """
    candidate = Path(ref).expanduser()
    if candidate.exists():
        return candidate
    wanted = ref.lower().removesuffix(".gguf")
    matches = [p for p in local_gguf_files() if p.stem.lower() == wanted or p.name.lower() == ref.lower()]
    if not matches:
        matches = [p for p in local_gguf_files() if wanted in p.stem.lower()]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[:5])
        raise ModelNotFoundError(f"{ref!r} matches several models ({names}): be more specific")
    raise ModelNotFoundError(
        f"model not found: {ref!r} is neither a file nor a model in {paths.models_dir()}"
    )
