"""Other apps' GGUF models (LM Studio, the Hugging Face cache, Ollama) found and added by reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import paths
from app.errors import ModelNotFoundError
from app.models.library import Library
from app.models.other_apps import HF_CACHE, LM_STUDIO, OLLAMA, default_locations, scan_all
from tests.other_app_files import APP_VARIABLES, OLLAMA_TEMPLATE, apps_home


@pytest.fixture
def home(tmp_path: Path, instruct_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder where LM Studio, the HF cache and Ollama each keep SmolLM2."""
    return apps_home(tmp_path, instruct_model, monkeypatch)


def test_the_three_layouts_are_found_with_their_names_and_places(home: Path, instruct_model: Path) -> None:
    locations = default_locations()
    assert locations[LM_STUDIO] == [home / ".lmstudio" / "models"]
    found = {f.app: f for f in scan_all(locations)}
    assert set(found) == {LM_STUDIO, HF_CACHE, OLLAMA}  # the projector beside LM Studio's model is not offered
    lm, hf, ol = found[LM_STUDIO], found[HF_CACHE], found[OLLAMA]
    assert lm.name == f"bartowski/SmolLM2-135M-Instruct-GGUF/{instruct_model.name}"
    assert hf.name == f"HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/{instruct_model.name}"
    assert hf.path.is_symlink()
    assert hf.path.resolve().parent.name == "blobs"
    assert ol.name == "smollm2:135m"
    assert ol.path.name.startswith("sha256-")
    assert ol.location.parts[-4:] == ("registry.ollama.ai", "library", "smollm2", "135m")
    assert ol.template == OLLAMA_TEMPLATE
    assert {f.size for f in found.values()} == {instruct_model.stat().st_size}
    assert {f.architecture for f in found.values()} == {"llama"}


def test_added_by_reference_without_a_copy_and_refused_once_moved_or_changed(home: Path) -> None:
    library = Library()
    try:
        added = library.add_references(scan_all())
        assert len(added) == 3
        assert library.add_references(scan_all()) == []  # already there
        assert not list(paths.models_dir().rglob("*.gguf"))  # nothing copied
        by_app = {m.meta["app"]: m for m in library.models()}
        for model in by_app.values():
            library.check_loadable(model.path)
            assert library.reference_problem(model) is None
        hf, ol = by_app[HF_CACHE], by_app[OLLAMA]
        assert hf.path.is_symlink()  # the snapshot the user knows, not the blob
        assert "{{ .Prompt }}" in ol.meta["app_template"]
        ol.path.unlink()  # `ollama rm`
        with pytest.raises(ModelNotFoundError, match="no longer where Ollama kept it"):
            library.check_loadable(ol.path)
        lm = by_app[LM_STUDIO]
        with lm.path.open("ab") as fh:  # LM Studio rewriting the file
            fh.write(b"\0" * 16)
        with pytest.raises(ModelNotFoundError, match="changed in LM Studio"):
            library.check_loadable(lm.path)
        os.utime(hf.path.resolve(), ns=(0, 0))  # same size, another time: changed too
        assert library.reference_problem(hf) is not None
    finally:
        library.close()


def test_cli_import_scan_then_list(home: Path, instruct_model: Path) -> None:
    env = {"HOME": str(home)}
    out = run_env(env, "models", "import", "--scan", "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert sorted(f["app"] for f in found) == sorted([LM_STUDIO, HF_CACHE, OLLAMA])
    assert all(f["added"] for f in found)
    listing = run_env(env, "models", "list").stdout
    assert "smollm2:135m" in listing
    assert "in Ollama:" in listing
    again = run_env(env, "models", "import", "--scan")
    assert again.returncode == 0
    assert "0 added" in again.stderr
    assert again.stdout.count("already in the library") == 3


def run_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``paddock`` with a home of the test's (the apps' folders are found under it)."""
    full = {**os.environ, **env}
    for var in APP_VARIABLES:
        full.pop(var, None)
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=300,
                          env=full)


def test_an_ollama_blob_loads_and_answers_where_it_is(home: Path) -> None:
    from app.engine.client import Engine
    from app.engine.types import ChatMessage, LoadSettings, SamplingParams

    blob = next(f for f in scan_all() if f.app == OLLAMA).path  # no .gguf in its name
    with Engine() as engine:
        loaded = engine.load(str(blob), LoadSettings(n_ctx=256))
        assert loaded.template_source == "gguf"  # the GGUF's own chat template
        result = engine.generate([ChatMessage("user", "Hi")], SamplingParams(temperature=0, max_tokens=3))
    assert result.stats.completion_tokens > 0
