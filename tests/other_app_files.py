"""Folders laid out as LM Studio, the Hugging Face cache and Ollama lay them out, built by tests with the real
test model files (hard links where the file system allows, else copies; symlinks and blobs as those tools
write them)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

# what moves the apps' folders away from the home folder's defaults
APP_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME", "OLLAMA_MODELS")

OLLAMA_TEMPLATE = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n" \
    "{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n"


def place(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return dest


def sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def apps_home(tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder (``HOME``) where LM Studio, the HF cache and Ollama each keep ``model``."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for var in APP_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    lmstudio(home, model)
    hf_cache(home / ".cache" / "huggingface" / "hub", model)
    ollama(home / ".ollama" / "models", model)
    return home


def lmstudio(home: Path, model: Path, publisher: str = "bartowski", repo: str = "SmolLM2-135M-Instruct-GGUF") -> Path:
    """``~/.lmstudio/models/<publisher>/<repo>/<file>.gguf`` (plain files), with a vision projector beside it."""
    folder = home / ".lmstudio" / "models" / publisher / repo
    path = place(model, folder / model.name)
    (folder / "mmproj-model-f16.gguf").write_bytes(b"GGUF" + b"\0" * 60)  # not a model: never offered
    return path


def hf_cache(hub: Path, model: Path, repo_id: str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
             commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """``models--<owner>--<name>/snapshots/<commit>/<file>`` -> ``../../blobs/<sha256>``, ``refs/main``."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    blob = place(model, repo / "blobs" / sha256(model))
    snapshot = repo / "snapshots" / commit / model.name
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def ollama(root: Path, model: Path, name: str = "smollm2", tag: str = "135m") -> tuple[Path, Path]:
    """``manifests/registry.ollama.ai/library/<name>/<tag>`` naming the GGUF blob ``blobs/sha256-<hex>`` and
    its template blob; (manifest, model blob)."""
    digest = sha256(model)
    blob = place(model, root / "blobs" / f"sha256-{digest}")
    template = OLLAMA_TEMPLATE.encode()
    template_digest = hashlib.sha256(template).hexdigest()
    (root / "blobs" / f"sha256-{template_digest}").write_bytes(template)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:" + "0" * 64, "size": 485},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
             "size": model.stat().st_size},
            {"mediaType": "application/vnd.ollama.image.template", "digest": f"sha256:{template_digest}",
             "size": len(template)},
        ],
    }))
    return manifest, blob
