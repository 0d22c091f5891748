"""``--lora FILE[:SCALE]`` on ``paddock chat`` and ``paddock serve``, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import run
from tests.lora_files import write_lora


@pytest.fixture(scope="module")
def tune(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lora(tmp_path_factory.mktemp("lora") / "tune.gguf", instruct_model, seed=1)


def test_chat_with_an_adapter_and_at_scale_zero(instruct_model: Path, tune: Path) -> None:
    args = ("chat", "--model", str(instruct_model), "--json", "--temperature", "0", "--max-tokens", "8",
            "--ctx", "512")
    tuned = run(*args, "--lora", str(tune), "Name three colours of the rainbow.")
    assert tuned.returncode == 0, tuned.stderr
    off = run(*args, "--lora", f"{tune}:0", "Name three colours of the rainbow.")
    assert off.returncode == 0, off.stderr
    tuned_json, off_json = json.loads(tuned.stdout), json.loads(off.stdout)
    assert tuned_json["adapters"] == [{"path": str(tune), "scale": 1.0}]
    assert off_json["adapters"] == [{"path": str(tune), "scale": 0.0}]
    assert tuned_json["text"] != off_json["text"]


def test_chat_refuses_a_bad_adapter_in_one_line(instruct_model: Path, tmp_path: Path) -> None:
    bad = write_lora(tmp_path / "f64.gguf", instruct_model, fault="float64_alpha")
    out = run("chat", "--model", str(instruct_model), "--ctx", "512", "--lora", str(bad), "hi")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "FLOAT64" in lines[0]
    assert "Traceback" not in out.stderr


def test_serve_checks_adapters_before_it_listens(instruct_model: Path, tmp_path: Path) -> None:
    bad = write_lora(tmp_path / "other.gguf", instruct_model, fault="other_arch")
    out = run("serve", "--model", str(instruct_model), "--port", "0", "--lora", f"{bad}:0.5")
    assert out.returncode == 1
    assert "'qwen2' model" in out.stderr
    out = run("serve", "--lora", str(bad))
    assert out.returncode == 1
    assert "--model" in out.stderr


def test_a_stored_chat_keeps_its_adapters_for_the_next_turn(instruct_model: Path, tune: Path) -> None:
    first = run("chat", "--model", str(instruct_model), "--new", "--json", "--temperature", "0", "--max-tokens",
                "4", "--ctx", "512", "--lora", f"{tune}:0.5", "Hello")
    assert first.returncode == 0, first.stderr
    follow = run("chat", "--continue", "--json", "--temperature", "0", "--max-tokens", "4", "--ctx", "512", "Hi")
    assert follow.returncode == 0, follow.stderr
    assert json.loads(follow.stdout)["adapters"] == [{"path": str(tune), "scale": 0.5}]
