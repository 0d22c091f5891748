"""`paddock chat --image`: the projector found beside the model (LM Studio's layout) or given with --mmproj;
bad pictures and models that cannot see refused in one line before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import run
from tests.mmproj_files import model_with_projector, solid_png, write_colour_projector

QUESTION = "What colour is the square? Answer in one word."


def test_chat_with_an_image_finds_the_projector_beside_the_model(tmp_path: Path, instruct_model: Path) -> None:
    model = model_with_projector(instruct_model, tmp_path / "lmstudio" / "SmolLM2")
    picture = solid_png(tmp_path / "red.png", (255, 0, 0))  # (both colours: tests/engine/test_images.py)
    out = run("chat", "--model", str(model), "--image", str(picture), "--json", "--temperature", "0",
              "--max-tokens", "8", QUESTION)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["vision"] is True
    assert (data["images"], data["image_tokens"], data["images_evaluated"]) == (1, 4, 1)
    assert "red" in data["text"].lower()


def test_images_that_cannot_be_shown_are_one_line_errors(tmp_path: Path, instruct_model: Path) -> None:
    picture = solid_png(tmp_path / "red.png", (255, 0, 0))
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture at all\n")
    foreign = write_colour_projector(instruct_model, tmp_path / "mmproj-other.gguf", n_embd=640)
    truncated = tmp_path / "mmproj-cut.gguf"
    truncated.write_bytes(write_colour_projector(instruct_model, tmp_path / "whole.gguf").read_bytes()[:5000])
    # (each projector refusal is also checked without a process: tests/models/test_projectors.py)
    cases = [
        (["--image", str(picture)], "cannot see images"),  # no projector beside the test model
        (["--image", str(fake), "--mmproj", str(foreign)], "not an image"),
        (["--image", str(picture), "--mmproj", str(foreign)], "made for another model"),
        (["--image", str(picture), "--mmproj", str(truncated)], "truncated"),
    ]
    for extra, message in cases:
        out = run("chat", "--model", str(instruct_model), *extra, "--max-tokens", "4", QUESTION)
        assert out.returncode != 0
        assert message in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
