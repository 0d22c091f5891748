"""LoRA adapters in the library: imported or downloaded like a model, listed under the base model they fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import InvalidAdapterError, InvalidModelError
from app.models.download import DownloadTask
from app.models.hub import HubClient
from app.models.library import Library, loadable_model
from app.models.licenses import describe
from app.models.registry import is_adapter
from app.models.variants import list_variants
from tests.cli.test_cli import run
from tests.hubserver import HubFile, HubRepo, HubServer
from tests.lora_files import write_lora


@pytest.fixture(scope="module")
def made(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return {
        "tune": write_lora(folder / "smol-tune.gguf", instruct_model, seed=1),
        "qwen": write_lora(folder / "qwen-tune.gguf", instruct_model, fault="other_arch"),
    }


def test_an_imported_adapter_is_listed_under_the_base_model_it_fits(
    library: Library, made: dict[str, Path], instruct_model: Path, test_model: Path,
) -> None:
    gemma = library.import_file(test_model, link=True)
    smol = library.import_file(instruct_model, link=True)
    adapter = library.import_adapter(made["tune"])  # no base named: the library model it fits
    assert is_adapter(adapter)
    assert adapter.meta["base_id"] == smol.id
    assert [m.id for m in library.models()] == [smol.id, gemma.id]  # adapters are not models
    assert [a.id for a in library.adapters_for(smol)] == [adapter.id]
    assert library.adapters_for(gemma) == []
    with pytest.raises(InvalidAdapterError, match="LoRA adapter, not a model"):
        loadable_model(str(adapter.id))


def test_an_adapter_found_before_its_base_is_attached_when_the_base_comes(
    library: Library, made: dict[str, Path], instruct_model: Path,
) -> None:
    adapter = library.import_adapter(made["tune"], link=True)
    assert "base_id" not in adapter.meta
    smol = library.import_file(instruct_model, link=True)
    assert [a.id for a in library.adapters_for(smol)] == [adapter.id]


def test_an_adapter_for_another_base_is_refused_with_the_reason(
    library: Library, made: dict[str, Path], instruct_model: Path,
) -> None:
    with pytest.raises(InvalidAdapterError, match="'qwen2' model"):
        library.import_adapter(made["qwen"], base=str(instruct_model))
    assert library.adapters() == []
    with pytest.raises(InvalidAdapterError, match="not a LoRA adapter"):
        library.import_adapter(instruct_model)


@pytest.fixture
def adapter_hub(made: dict[str, Path]) -> Iterator[HubServer]:
    server = HubServer()
    card = "---\nlicense: apache-2.0\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n# A SmolLM2 LoRA\n"
    server.add(HubRepo("paddock-test/smol-tune-GGUF", {
        "README.md": HubFile("README.md", data=card.encode(), lfs=False),
        "smol-tune-F32.gguf": HubFile("smol-tune-F32.gguf", path=made["tune"]),
    }, card={"license": "apache-2.0", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    server.start()
    yield server
    server.stop()


def test_an_adapter_downloads_from_the_hub_like_a_model(
    library: Library, adapter_hub: HubServer, instruct_model: Path,
) -> None:
    smol = library.import_file(instruct_model, link=True)
    client = HubClient(adapter_hub.url, None)
    details = client.details("paddock-test/smol-tune-GGUF")
    variant = list_variants(client, details).variants[0]
    acceptance = library.accept(describe(details, client))  # its license, accepted like a model's
    record = library.queue_download(details, variant, acceptance)
    done = DownloadTask(library.registry, library.registry.download(record.id), client, backoff=0.01).run()
    assert done is not None
    assert is_adapter(done)
    assert [a.id for a in library.adapters_for(smol)] == [done.id]
    assert done.acceptance_id == acceptance.id


def test_cli_import_and_list_show_the_adapter_under_its_model(made: dict[str, Path], instruct_model: Path) -> None:
    assert run("models", "import", str(instruct_model), "--link").returncode == 0
    out = run("models", "import", str(made["tune"]), "--base", str(instruct_model))
    assert out.returncode == 0, out.stderr
    assert "Added LoRA adapter" in out.stdout
    listing = run("models", "list").stdout.splitlines()
    model_line = next(i for i, line in enumerate(listing) if instruct_model.stem in line)
    assert "LoRA smol-tune" in listing[model_line + 1]
    bad = run("models", "import", str(made["qwen"]), "--base", str(instruct_model))
    assert bad.returncode == 1
    assert "'qwen2' model" in bad.stderr


def test_the_engine_refuses_to_load_an_adapter_as_a_model(made: dict[str, Path]) -> None:
    from app.engine.client import Engine

    with Engine() as engine, pytest.raises(InvalidModelError, match="LoRA adapter, not a model"):
        engine.load(str(made["tune"]))
