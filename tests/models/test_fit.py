"""Plans and speeds before download: `paddock models fit`, and Discover's variants with predicted_tokens_per_s,
from headers written with the real shapes of Qwen3-30B-A3B (tests/model_headers.py) and served by the local hub
as files of their real size whose bytes past the header are never sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.engine.hardware import GiB, Hardware
from app.engine.speed import CACHE_FILE, cpu_speed
from app.models.hub import HubClient
from app.models.variants import list_variants
from tests import model_headers as mh
from tests.engine.test_placement import qwen_expert_layers_in_ram
from tests.hubserver import HubFile, HubRepo, HubServer

QWEN = "Qwen/Qwen3-30B-A3B-GGUF"


def paddock(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PADDOCK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def qwen_header(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mh.write_header(mh.qwen3_30b_a3b(), tmp_path_factory.mktemp("fit") / "Qwen3-30B-A3B-Q4_K_M.gguf")


def fit_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """``paddock models fit ... --json`` in this process (the CLI's own entry point; PADDOCK_HOME is the test's)."""
    capsys.readouterr()
    assert main(["models", "fit", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_models_fit_plans_for_a_gpu_of_a_given_size(tmp_path: Path, qwen_header: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = fit_json(capsys, str(qwen_header), "--gpu-mem", "16")
    assert data["n_cpu_moe"] == qwen_expert_layers_in_ram(16)
    assert data["layers"] == {"gpu": 48, "cpu": 0, "output_on_gpu": True}
    assert data["experts"]["cpu_layers"] == data["n_cpu_moe"]
    assert data["experts"]["gpu_layers"] == 48 - data["n_cpu_moe"]
    assert data["total_bytes"] == pytest.approx(18.6e9, rel=0.01)
    assert data["active_bytes"] < data["total_bytes"] / 9
    assert data["predicted_tokens_per_s"] > 0
    assert data["plan"].startswith(f"48 of 48 layers on the GPU, experts of {data['n_cpu_moe']} layers in RAM")
    # the CPU was measured once and kept for the next time
    assert list(tmp_path.rglob(CACHE_FILE))

    every = fit_json(capsys, str(qwen_header), "--gpu-mem", "24", "--cpu-moe")
    assert every["n_cpu_moe"] == 48
    assert fit_json(capsys, str(qwen_header), "--gpu-mem", "24", "--n-cpu-moe", "5")["n_cpu_moe"] == 5
    # every expert read from RAM instead of the GPU: slower than the automatic plan on a bigger GPU
    auto = fit_json(capsys, str(qwen_header), "--gpu-mem", "24")
    assert auto["n_cpu_moe"] == 0
    assert auto["predicted_tokens_per_s"] > every["predicted_tokens_per_s"]


def test_models_fit_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 4)
    assert main(["models", "fit", str(bad)]) == 1
    assert "not a valid GGUF model" in capsys.readouterr().err


def test_discover_predicts_speed_per_variant_from_a_ranged_header(hub: HubServer, qwen_header: Path) -> None:
    header = qwen_header.read_bytes()
    files = {name: HubFile(name, prefix=header, size=size) for name, size in (
        ("Qwen3-30B-A3B-Q4_K_M.gguf", 18_556_685_184), ("Qwen3-30B-A3B-Q8_0.gguf", 32_483_935_616))}
    hub.add(HubRepo(QWEN, files, card={"license": "apache-2.0"}))
    client = HubClient(hub.url)
    hw = Hardware("cuda", 8, 64 * GiB, 56 * GiB, 16 * GiB, False)
    listing = list_variants(client, client.details(QWEN), hw=hw)
    by_quant = {v.quant: v for v in listing.variants}
    q4, q8 = by_quant["Q4_K_M"], by_quant["Q8_0"]
    assert q4.predicted_tokens_per_s is not None
    assert q8.predicted_tokens_per_s is not None
    assert q4.predicted_tokens_per_s > q8.predicted_tokens_per_s  # more of Q8_0's experts stay in RAM
    assert q4.plan is not None
    assert "experts of" in q4.plan
    # only the header travelled: every GET of the file asked for a closed range of its first megabytes
    ranges = [h.get("Range", "") for m, p, h in hub.requests if m == "GET" and p.endswith("/Qwen3-30B-A3B-Q4_K_M.gguf")]
    assert ranges
    assert all(r.startswith("bytes=0-") and int(r.split("-")[1]) < 64 << 20 for r in ranges)


def test_models_files_json_carries_the_prediction(hub: HubServer, tmp_path: Path, qwen_header: Path) -> None:
    files = {"Qwen3-30B-A3B-Q4_K_M.gguf": HubFile("Qwen3-30B-A3B-Q4_K_M.gguf", prefix=qwen_header.read_bytes(),
                                                  size=18_556_685_184)}
    hub.add(HubRepo(QWEN, files, card={"license": "apache-2.0"}))
    out = paddock(tmp_path, "models", "files", QWEN, "--endpoint", hub.url, "--json")
    assert out.returncode == 0, out.stderr
    (variant,) = json.loads(out.stdout)
    assert variant["predicted_tokens_per_s"] > 0
    assert variant["plan"]


def test_machine_speed_is_measured_once_and_a_bad_cache_remeasured(tmp_path: Path) -> None:
    first = cpu_speed(tmp_path, 2)
    assert first.bandwidth > 0.1e9
    assert first.flops > 0
    (tmp_path / CACHE_FILE).write_text(json.dumps({"version": 1, "threads": 2, "name": "kept", "bandwidth": 1.0,
                                                   "flops": 2.0}))
    assert cpu_speed(tmp_path, 2).name == "kept"  # read back, not measured
    (tmp_path / CACHE_FILE).write_text("{broken")
    assert cpu_speed(tmp_path, 2).bandwidth > 0.1e9
    assert json.loads((tmp_path / CACHE_FILE).read_text())["bandwidth"] > 0.1e9
