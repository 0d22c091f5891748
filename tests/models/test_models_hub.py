"""The model manager against a local Hugging-Face-compatible hub, with the real huggingface_hub client."""

from __future__ import annotations

import hashlib

import pytest

from app.engine.hardware import GiB, Hardware
from app.errors import HubError, UnsafePathError
from app.models.hub import HubClient, safe_relative_path
from app.models.licenses import describe
from app.models.variants import list_variants
from tests.hubserver import BIG, GEMMA, LLAMA, SMALL, HubServer


def laptop(backend: str = "cpu", vram: int | None = None) -> Hardware:
    return Hardware(backend=backend, physical_cores=4, ram_total=24 * GiB, ram_available=20 * GiB,  # type: ignore[arg-type]
                    vram_total=vram, unified_memory=False)


def test_search_sorts_and_reports_license_and_gating(hub: HubServer) -> None:
    client = HubClient(hub.url)
    by_downloads = client.search("", sort="downloads")
    assert [r.repo_id for r in by_downloads] == [LLAMA, GEMMA, BIG, SMALL]
    assert by_downloads[0].gated
    assert by_downloads[0].license == "llama3.2"
    assert [r.repo_id for r in client.search("gemma")] == [GEMMA]
    assert client.search("", sort="recent")[0].repo_id == BIG


def test_variants_group_splits_reject_unsafe_names_and_label_fit(hub: HubServer) -> None:
    client = HubClient(hub.url)
    listing = list_variants(client, client.details(BIG), hw=laptop())
    assert [v.quant for v in listing.variants] == ["IQ2_XS", "Q2_K", "IQ4_XS", "Q4_K_M", "Q8_0"]
    q8 = listing.find("Q8_0")
    assert q8 is not None
    assert q8.split
    assert q8.size == 2 * int(37.5 * GiB)
    assert [f.name.rsplit("-", 3)[-3] for f in q8.files] == ["00001", "00002"]
    assert sorted(listing.rejected) == sorted(["../evil.gguf", "/etc/passwd.gguf", "C:\\x.gguf"])
    # The shape came from the remote header: 80 layers, 8 KV heads of 128 dimensions.
    assert listing.shape is not None
    assert (listing.shape.n_layers, listing.shape.n_head_kv) == (80, 8)
    assert listing.shape.key_length == 128
    # 70B on a 24 GB laptop: nothing fits, nothing is recommended.
    assert {v.fit for v in listing.variants} == {"too_large"}
    assert listing.recommended is None
    small = list_variants(client, client.details(SMALL), hw=laptop())
    assert [v.quant for v in small.variants] == ["Q2_K", "Q4_K_M", "Q6_K", "Q8_0", "F16"]
    assert {v.fit for v in small.variants} == {"ram"}
    assert small.recommended is not None
    assert small.recommended.quant == "Q4_K_M"
    assert all(v.n_ctx == 8192 for v in small.variants)


def test_fit_labels_on_a_gpu_machine(hub: HubServer) -> None:
    client = HubClient(hub.url)
    big = {v.quant: v for v in list_variants(client, client.details(BIG), hw=laptop("cuda", vram=24 * GiB)).variants}
    assert big["IQ2_XS"].fit == "partial"  # 21 GB of weights: most layers on the 24 GB GPU, the rest in RAM
    assert big["Q8_0"].fit == "too_large"
    small = list_variants(client, client.details(SMALL), hw=laptop("cuda", vram=24 * GiB))
    assert {v.fit for v in small.variants} == {"gpu"}


@pytest.mark.parametrize("name", ["../x", "/etc/x", "C:\\x", "a/../../x", "", "a//b", "~/x"])
def test_unsafe_file_names_are_rejected(name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_relative_path(name)


def test_gated_repo_errors_each_have_their_message(hub: HubServer) -> None:
    name = "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    cases = {
        None: "not_signed_in",
        "hf_not_accepted": "license_not_accepted",
        "hf_fine_grained": "fine_grained",
        "hf_revoked": "invalid_token",
    }
    for token, kind in cases.items():
        with pytest.raises(HubError) as err:
            HubClient(hub.url, token).file_metadata(LLAMA, name)
        assert err.value.kind == kind, (token, str(err.value))
        if token:
            assert token not in str(err.value)  # the token never appears in messages
    assert "sign in" in _message(hub, None, name)
    assert f"{hub.url}/{LLAMA}" in _message(hub, "hf_not_accepted", name)
    assert "public gated repos" in _message(hub, "hf_fine_grained", name)
    meta = HubClient(hub.url, "hf_good_token").file_metadata(LLAMA, name)
    assert meta.sha256 is not None
    assert len(meta.sha256) == 64


def _message(hub: HubServer, token: str | None, name: str) -> str:
    try:
        HubClient(hub.url, token).file_metadata(LLAMA, name)
    except HubError as exc:
        return str(exc)
    raise AssertionError("expected an error")


def test_missing_repo_and_offline(hub: HubServer) -> None:
    with pytest.raises(HubError) as err:
        HubClient(hub.url, "hf_good_token").details("nobody/nothing")
    assert err.value.kind == "not_found"
    with pytest.raises(HubError) as err:
        HubClient("http://127.0.0.1:9").search("llama")
    assert err.value.kind == "offline"


def test_license_from_the_repo_file_and_the_gated_prompt(hub: HubServer) -> None:
    client = HubClient(hub.url)
    gemma = describe(client.details(GEMMA), client)
    assert gemma.license_id == "gemma"
    assert gemma.name == "Gemma Terms of Use"
    assert gemma.source == "GEMMA_TERMS.html"
    assert "Gemma" in gemma.text
    assert "<" not in gemma.text[:200]
    assert gemma.gated_prompt
    assert "usage license" in gemma.gated_prompt
    assert any("Prohibited Use" in c for c in gemma.conditions)
    llama = describe(client.details(LLAMA), client)  # anonymous: the license file itself is gated
    assert llama.source == "model card"
    assert llama.note
    assert "LLAMA 3.2 COMMUNITY LICENSE" in llama.text
    assert llama.needs_attribution
    assert any("Built with Llama" in c for c in llama.conditions)
    signed_in = HubClient(hub.url, "hf_good_token")
    full = describe(signed_in.details(LLAMA), signed_in)
    assert full.source == "LICENSE.txt"
    assert "Built with Llama" in full.text
    assert full.sha256 == hashlib.sha256(full.text.encode()).hexdigest() != llama.sha256
