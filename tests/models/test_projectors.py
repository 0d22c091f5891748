"""Image projectors in the library: downloaded with their model (verified, same license acceptance), paired at
import (LM Studio's layout) or chosen explicitly, never listed as chat models; Discover marks repos that can see
and says Llama 3.2 Vision (mllama) cannot work; foreign and truncated projectors refused before anything loads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.projectors import check_projector, projector_beside
from app.errors import ProjectorError
from app.models.download import DownloadTask
from app.models.hub import HubClient
from app.models.library import Library
from app.models.licenses import describe
from app.models.variants import list_variants
from tests.hubserver import HubFile, HubRepo, HubServer, gguf_header_bytes, llama_header
from tests.mmproj_files import write_colour_projector

SEEING = "paddock-test/SmolLM2-Vision-GGUF"
MLLAMA = "paddock-test/Llama-3.2-11B-Vision-Instruct-GGUF"


@pytest.fixture(scope="module")
def projector(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_projector(instruct_model, tmp_path_factory.mktemp("proj") / "mmproj-SmolLM2-F16.gguf")


@pytest.fixture
def vision_hub(instruct_model: Path, projector: Path) -> Iterator[HubServer]:
    hub = HubServer()
    card = b"---\nlicense: apache-2.0\n---\n# SmolLM2 that sees colours\n"
    hub.add(HubRepo(SEEING, {
        "README.md": HubFile("README.md", data=card, lfs=False),
        instruct_model.name: HubFile(instruct_model.name, path=instruct_model),
        "mmproj-SmolLM2-Q8_0.gguf": HubFile("mmproj-SmolLM2-Q8_0.gguf", data=projector.read_bytes()[:-1]),
        projector.name: HubFile(projector.name, path=projector),
    }, card={"license": "apache-2.0"}))
    header = llama_header("Llama 3.2 11B Vision", n_layers=40, n_embd=4096, n_head=32, n_head_kv=8, ctx=131072)
    clip = gguf_header_bytes({"general.architecture": "clip", "clip.projector_type": "mllama"})
    hub.add(HubRepo(MLLAMA, {
        "README.md": HubFile("README.md", data=b"---\nlicense: llama3.2\n---\n", lfs=False),
        "Llama-3.2-11B-Vision-Instruct-Q4_K_M.gguf": HubFile("Llama-3.2-11B-Vision-Instruct-Q4_K_M.gguf",
                                                             prefix=header, size=6 << 30),
        "mmproj-mllama-f16.gguf": HubFile("mmproj-mllama-f16.gguf", prefix=clip, size=1 << 30),
    }, card={"license": "llama3.2"}))
    hub.start()
    yield hub
    hub.stop()


def test_discover_marks_repos_that_see_and_mllama_as_unsupported(vision_hub: HubServer) -> None:
    client = HubClient(vision_hub.url, None)
    listing = list_variants(client, client.details(SEEING))
    assert listing.vision
    assert [v.projector.name if v.projector else None for v in listing.variants] == ["mmproj-SmolLM2-F16.gguf"]
    mllama = list_variants(client, client.details(MLLAMA))
    assert not mllama.vision
    assert "mllama" in mllama.unsupported
    assert "not support" in mllama.unsupported


def test_the_projector_is_downloaded_verified_and_paired(vision_hub: HubServer, projector: Path) -> None:
    library = Library()
    try:
        client = HubClient(vision_hub.url, None)
        details = client.details(SEEING)
        variant = list_variants(client, details).variants[0]
        record = library.queue_download(details, variant, library.accept(describe(details, client)))
        assert [f.name for f in record.files] == [variant.name, projector.name]
        model = DownloadTask(library.registry, record, client, backoff=0.01).run()
        assert model is not None
        paired = library.projector_for(model.path)
        assert paired is not None
        assert hashlib.sha256(paired.read_bytes()).hexdigest() == hashlib.sha256(projector.read_bytes()).hexdigest()
        listed = [m.path.name for m in library.models()]
        assert listed == [variant.name]  # the projector is not a chat model
        check_projector(model.path, paired)
    finally:
        library.close()


def test_import_pairs_the_projector_beside_the_model(tmp_path: Path, instruct_model: Path, projector: Path) -> None:
    folder = tmp_path / "lmstudio" / "SmolLM2"
    folder.mkdir(parents=True)
    (folder / instruct_model.name).write_bytes(instruct_model.read_bytes())
    (folder / projector.name).write_bytes(projector.read_bytes())
    other = tmp_path / "other.gguf"  # a model without projector, imported into the same library
    other.write_bytes(instruct_model.read_bytes())
    library = Library()
    try:
        model = library.import_file(folder / instruct_model.name)
        plain = library.import_file(other)
        paired = library.projector_for(model.path)
        assert paired is not None
        assert paired.parent == model.path.parent
        assert library.projector_for(plain.path) is None  # never paired with another model's projector
        assert sorted(m.id for m in library.models()) == sorted([model.id, plain.id])
        with pytest.raises(ProjectorError, match="is an image projector, not a model"):
            library.import_file(folder / projector.name)
        library.delete(model.id)
        assert not paired.exists()  # the projector goes with its model
    finally:
        library.close()


def test_foreign_truncated_and_wrong_files_are_refused(tmp_path: Path, instruct_model: Path,
                                                       projector: Path) -> None:
    foreign = write_colour_projector(instruct_model, tmp_path / "mmproj-big.gguf", n_embd=640)
    with pytest.raises(ProjectorError, match="made for another model"):
        check_projector(instruct_model, foreign)
    cut = tmp_path / "mmproj-cut.gguf"
    cut.write_bytes(projector.read_bytes()[:2000])
    with pytest.raises(ProjectorError, match="truncated"):
        check_projector(instruct_model, cut)
    with pytest.raises(ProjectorError, match="not an image projector"):
        check_projector(instruct_model, instruct_model)
    with pytest.raises(ProjectorError, match="does not exist"):
        check_projector(instruct_model, tmp_path / "mmproj-missing.gguf")
    library = Library()
    try:
        with pytest.raises(ProjectorError, match="made for another model"):
            library.import_file(instruct_model, link=True, mmproj=foreign)
        assert library.models() == []  # nothing was added
    finally:
        library.close()
    assert projector_beside(tmp_path / "model.gguf") is not None  # (the files above are beside it)
