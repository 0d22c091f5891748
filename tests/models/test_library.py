"""The local library: import, list, delete, license gate, quantize with the real llama.cpp API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app import paths
from app.engine.client import Engine
from app.engine.gguf_file import read_gguf
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from app.errors import InvalidModelError, LicenseNotAcceptedError
from app.models.library import Library
from app.models.quantize import QuantizeJob, advise, quantize_into_library
from tests.gguf_files import copy_truncated


def paddock(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "PADDOCK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_import_copies_and_registers_with_metadata(library: Library, test_model: Path) -> None:
    model = library.import_file(test_model)
    assert model.source == "import"
    assert model.path.parent == paths.models_dir() / "local"
    assert model.path.stat().st_size == test_model.stat().st_size
    assert model.quant == "Q4_K_M"
    assert model.meta["architecture"] == "gemma3"
    assert model.meta["has_template"] is False
    assert model.meta["n_params"] > 200_000_000
    assert library.import_file(model.path).id == model.id  # importing again finds it


def test_import_as_link_leaves_the_file_and_rm_only_forgets_it(library: Library, test_model: Path) -> None:
    model = library.import_file(test_model, link=True)
    assert model.source == "link"
    assert model.path == test_model.resolve()
    message = library.delete(model.id)
    assert "left at" in message
    assert test_model.exists()
    assert library.registry.models() == []


def test_import_refuses_a_broken_file(library: Library, test_model: Path, tmp_path: Path) -> None:
    broken = copy_truncated(test_model, tmp_path / "broken.gguf", 10_000_000)
    with pytest.raises(InvalidModelError):
        library.import_file(broken)
    assert not any((paths.models_dir()).rglob("*.gguf"))


def test_files_dropped_into_the_folder_are_found_and_rm_deletes_them(library: Library, test_model: Path) -> None:
    target = paths.models_dir() / "mine" / "dropped.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(test_model.read_bytes())
    (found,) = library.models()
    assert found.source == "found"
    assert found.path == target
    assert "Deleted" in library.delete(found.id)
    assert not target.exists()
    assert not target.parent.exists()


def test_a_downloaded_model_needs_its_license_to_stay_accepted(library: Library, test_model: Path) -> None:
    acc = library.registry.accept("org/repo", "gemma", "Gemma Terms of Use", "0" * 64)
    model = library.registry.add_model(test_model, name="m", source="download", repo_id="org/repo",
                                       acceptance_id=acc.id)
    library.check_loadable(model.path)
    library.registry.revoke("org/repo")
    with pytest.raises(LicenseNotAcceptedError, match="accept"):
        library.check_loadable(model.path)


def test_quantize_advice() -> None:
    advice = advise("Q4_K_M", "Q8_0", 268_000_000)
    assert any("already quantized" in w for w in advice.warnings)
    assert any("bigger, not better" in w for w in advice.warnings)
    assert advise("F16", "Q4_K_M", 8_000_000_000).warnings == ()
    assert 4.8e9 < advise("F16", "Q4_K_M", 8_000_000_000).estimated_bytes < 5.0e9


@pytest.mark.slow
def test_quantize_the_test_model_and_load_the_result(test_model: Path, library: Library) -> None:
    parent = library.import_file(test_model)
    progress: list[tuple[int, int]] = []
    model, job = quantize_into_library(parent.path, "Q4_0", on_progress=lambda d, t: progress.append((d, t)))
    assert model.parent_id == parent.id
    assert model.source == "quantize"
    assert read_gguf(model.path).quantization == "Q4_0"
    assert model.meta["quantized_from_quant"] == "Q4_K_M"
    assert job.advice.warnings  # requantizing a quantized file is flagged
    assert progress
    assert progress[-1][0] == progress[-1][1]  # every tensor reported
    assert not Path(str(model.path) + ".part").exists()
    with Engine() as engine:
        engine.load(str(model.path), LoadSettings(n_ctx=512))
        result = engine.generate([ChatMessage("user", "Hello")], SamplingParams(max_tokens=8, temperature=0.0),
                                 raw_prompt="The capital of France is the city of")
    assert result.stats.completion_tokens > 0


@pytest.mark.slow
def test_cancelled_quantization_leaves_nothing(test_model: Path) -> None:
    import threading

    job = QuantizeJob(test_model, "Q8_0", out=paths.models_dir() / "local" / "cancelled.gguf")
    started = threading.Event()
    job.on_progress = lambda d, t: started.set()
    errors: list[Exception] = []

    def run() -> None:
        try:
            job.run()
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(120)
    job.cancel()
    thread.join(60)
    assert errors
    assert "cancelled" in str(errors[0])
    assert not job.out.exists()
    assert not Path(str(job.out) + ".part").exists()


def test_cli_import_list_rm(test_model: Path, paddock_home: Path) -> None:
    imported = paddock("models", "import", str(test_model), home=paddock_home)
    assert imported.returncode == 0, imported.stderr
    listed = json.loads(paddock("models", "list", "--json", home=paddock_home).stdout)
    assert [(m["id"], m["quant"], m["source"]) for m in listed] == [(1, "Q4_K_M", "import")]
    removed = paddock("models", "rm", "1", home=paddock_home)
    assert removed.returncode == 0
    assert "Deleted" in removed.stdout
    assert json.loads(paddock("models", "list", "--json", home=paddock_home).stdout) == []
    missing = paddock("models", "rm", "7", home=paddock_home)
    assert missing.returncode == 1
    assert missing.stderr.startswith("paddock: error: no model with id 7")


@pytest.mark.slow
def test_cli_quantize(test_model: Path, paddock_home: Path) -> None:
    out = paddock_home / "q.gguf"
    done = paddock("models", "quantize", str(test_model), "--type", "Q4_0", "--out", str(out), home=paddock_home)
    assert done.returncode == 0, done.stderr
    assert "already quantized" in done.stderr
    assert read_gguf(out).quantization == "Q4_0"
    bad = paddock("models", "quantize", str(test_model), "--type", "Q9_X", home=paddock_home)
    assert bad.returncode == 1
    assert "unknown quantization type" in bad.stderr
