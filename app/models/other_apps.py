"""GGUF models other apps already downloaded: LM Studio's models folder, the Hugging Face cache and Ollama's
store, found where those apps keep them and added to the library by reference (no copy).

Layouts, as those tools write them:

- **LM Studio**: ``~/.lmstudio/models/<publisher>/<repo>/<file>.gguf`` (older versions:
  ``~/.cache/lm-studio/models``; a folder chosen in its settings is read from ``~/.lmstudio/settings.json``,
  ``downloadsFolder``).  Plain files; ``mmproj-*`` files are vision projectors, not models.
- **Hugging Face cache** (``huggingface_hub``): ``$HF_HUB_CACHE`` or ``$HF_HOME/hub`` (default
  ``~/.cache/huggingface/hub``), ``models--<owner>--<name>/snapshots/<commit>/<file>.gguf``, each a symlink
  to ``../../blobs/<sha256>``; ``refs/main`` names the current commit.
- **Ollama**: ``$OLLAMA_MODELS`` (default ``~/.ollama/models``; the Linux service's
  ``/usr/share/ollama/.ollama/models``), ``manifests/<registry>/<namespace>/<model>/<tag>`` JSON manifests whose
  ``application/vnd.ollama.image.model`` layer is a GGUF blob ``blobs/sha256-<hex>`` and whose
  ``...image.template`` layer is the model's Go template (kept for reference: Paddock renders the GGUF's own
  Jinja template).

Every file is validated with the bounded GGUF reader before it is offered; what is not a usable GGUF
model is left out with the reason logged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.gguf_file import SPLIT_RE, read_gguf
from app.errors import PaddockError

log = logging.getLogger(__name__)

LM_STUDIO = "LM Studio"
HF_CACHE = "Hugging Face cache"
OLLAMA = "Ollama"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_TEMPLATE = "application/vnd.ollama.image.template"
MAX_MANIFEST = 1 << 20
MAX_TEMPLATE = 256 * 1024


@dataclass(frozen=True)
class FoundModel:
    """A GGUF model another app keeps.

    Attributes:
        app: which app (``LM Studio``, ``Hugging Face cache``, ``Ollama``).
        name: the model as that app names it (``llama3.2:latest``, ``owner/repo/file.gguf``).
        path: the file Paddock loads (an HF snapshot link, an Ollama blob), left where it is.
        location: where the app keeps it, as the user would look for it (the manifest, the snapshot file).
    """

    app: str
    name: str
    path: Path
    location: Path
    size: int
    architecture: str = ""
    repo_id: str | None = None
    template: str | None = None  # Ollama's own (Go) template, for reference
    parts: tuple[Path, ...] = field(default_factory=tuple)
    adapter: bool = False


def default_locations() -> dict[str, list[Path]]:
    """Where each app keeps its models on this machine (existing folders only)."""
    home = Path.home()
    lm = [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    settings = home / ".lmstudio" / "settings.json"
    try:
        chosen = json.loads(settings.read_text(encoding="utf-8")).get("downloadsFolder")
        if isinstance(chosen, str) and chosen:
            lm.insert(0, Path(chosen).expanduser())
    except (OSError, ValueError, AttributeError):
        pass
    if os.environ.get("HF_HUB_CACHE"):
        hf = [Path(os.environ["HF_HUB_CACHE"]).expanduser()]
    elif os.environ.get("HF_HOME"):
        hf = [Path(os.environ["HF_HOME"]).expanduser() / "hub"]
    else:
        hf = [Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "huggingface" / "hub"]
    if os.environ.get("OLLAMA_MODELS"):
        ollama = [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    else:
        ollama = [home / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]
    found = {LM_STUDIO: lm, HF_CACHE: hf, OLLAMA: ollama}
    return {app: list(dict.fromkeys(p for p in paths if p.is_dir())) for app, paths in found.items()}


def scan_all(locations: dict[str, list[Path]] | None = None) -> list[FoundModel]:
    """Every usable GGUF model the other apps keep (each file once)."""
    locations = default_locations() if locations is None else locations
    scanners = {LM_STUDIO: scan_lmstudio, HF_CACHE: scan_hf_cache, OLLAMA: scan_ollama}
    found: list[FoundModel] = []
    seen: set[Path] = set()
    for app, roots in locations.items():
        for root in roots:
            for model in scanners[app](root):
                real = model.path.resolve()
                if real not in seen:
                    seen.add(real)
                    found.append(model)
    return found


def _checked(app: str, name: str, path: Path, location: Path, **extra: Any) -> FoundModel | None:
    """A found file, validated; None (logged) when it is not a usable GGUF model or is a vision projector."""
    try:
        info = read_gguf(path)
    except PaddockError as exc:
        log.info("%s: %s is left out: %s", app, location, exc)
        return None
    if info.architecture == "clip" or info.get("general.type") == "mmproj":
        return None  # a vision projector, used with its model
    parts = extra.pop("parts", ())
    size = sum(p.stat().st_size for p in parts) if parts else info.file_size
    return FoundModel(app, name, path, location, size, info.architecture, parts=tuple(parts),
                      adapter=info.get("general.type") == "adapter", **extra)


def _split_first(found: Iterable[Path]) -> list[tuple[Path, tuple[Path, ...]]]:
    """The first part of each split model with all its parts (and single files alone)."""
    files = sorted(found)
    names = {f.name: f for f in files}
    out: list[tuple[Path, tuple[Path, ...]]] = []
    for f in files:
        m = SPLIT_RE.search(f.name)
        if not m:
            out.append((f, ()))
            continue
        if int(m.group(1)) != 1:
            continue
        stem, count = f.name[: m.start()], int(m.group(2))
        parts = [names.get(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
        if all(parts):
            out.append((f, tuple(p for p in parts if p is not None)))
        else:
            log.info("split model %s is incomplete: left out", f)
    return out


def scan_lmstudio(root: Path) -> list[FoundModel]:
    files = [p for p in root.glob("*/*/*.gguf") if p.is_file() and not p.name.lower().startswith("mmproj")]
    found = []
    for path, parts in _split_first(files):
        rel = path.relative_to(root)
        model = _checked(LM_STUDIO, str(rel), path, path, repo_id=f"{rel.parts[0]}/{rel.parts[1]}", parts=parts)
        if model is not None:
            found.append(model)
    return found


def scan_hf_cache(root: Path) -> list[FoundModel]:
    found = []
    for repo in sorted(root.glob("models--*")):
        pieces = repo.name.split("--")[1:]
        if not pieces:
            continue
        repo_id = "/".join(pieces)
        try:
            current = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
        except OSError:
            current = ""
        snapshots = sorted(repo.glob("snapshots/*"), key=lambda s: (s.name == current, s.stat().st_mtime))
        by_name: dict[str, Path] = {}
        for snap in snapshots:  # the current revision last, so it wins
            for path in snap.rglob("*.gguf"):
                if path.is_file() and not path.name.lower().startswith("mmproj"):
                    by_name[str(path.relative_to(snap))] = path
        for path, parts in _split_first(by_name.values()):
            model = _checked(HF_CACHE, f"{repo_id}/{path.name}", path, path, repo_id=repo_id, parts=parts)
            if model is not None:
                found.append(model)
    return found


def scan_ollama(root: Path) -> list[FoundModel]:
    found = []
    manifests = root / "manifests"
    for manifest in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        registry, namespace, model, tag = manifest.relative_to(manifests).parts
        name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
        if registry != "registry.ollama.ai":
            name = f"{registry}/{name}"
        try:
            if manifest.stat().st_size > MAX_MANIFEST:
                raise ValueError("too large")
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
            blobs = {layer["mediaType"]: root / "blobs" / str(layer["digest"]).replace(":", "-")
                     for layer in layers if isinstance(layer, dict) and "/" not in str(layer.get("digest", "/"))}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.info("Ollama manifest %s is unreadable (%s): left out", manifest, exc)
            continue
        blob = blobs.get(OLLAMA_MODEL)
        if blob is None:
            continue
        template = None
        if OLLAMA_TEMPLATE in blobs:
            try:
                with blobs[OLLAMA_TEMPLATE].open("rb") as fh:
                    template = fh.read(MAX_TEMPLATE).decode("utf-8", errors="replace")
            except OSError:
                template = None
        found_model = _checked(OLLAMA, name, blob, manifest, template=template)
        if found_model is not None:
            found.append(found_model)
    return found
