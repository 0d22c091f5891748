"""Images: encode time, tokens per image, and what a picture costs the first question and a follow-up.

    .venv/bin/python -m benchmarks.images [--runs 5]

With the real instruct model (SmolLM2-135M-Instruct) and a real projector built for it
(``tests/mmproj_files.py``: LLaVA-type, no vision transformer blocks, four tokens per picture), on
the engine API:

1. encode: the time mtmd takes to encode a 640 x 480 photo-sized picture and put its embeddings into
   the KV cache (``image_s``), and the tokens it takes;
2. time to first token of a question with a picture, against the same question with the picture's
   words (" red" x 4) in its place, each after a prompt that shares only the template's start;
3. a follow-up about the picture: its time to first token, the tokens evaluated against the
   follow-up's own, and whether the picture was encoded again (goal: never).

The projector has no vision transformer, so its encode time is mtmd's fixed cost (preprocessing, the
graph, the decode of the embeddings), not a real vision model's: Gemma 3's SigLIP or Qwen 2.5-VL's
ViT take seconds on a CPU; the follow-up figures hold for them too (the picture is never encoded twice).

Writes benchmarks/results/images.json and images.md; also run by ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.engine.client import Engine
from app.engine.images import IMAGE_MARKER, ImageInput
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from app.imaging import decode_image
from benchmarks.engine_bench import kept_home, save_results
from benchmarks.engine_bench import median as med

GREEDY = SamplingParams(temperature=0.0, max_tokens=8)
QUESTION = " What colour is it? Answer in one word."
FOLLOW_UP = "Are you sure? Say it again."


def _picture(i: int) -> ImageInput:
    """A 640 x 480 red picture, a different one per run (so nothing is reused from an earlier run)."""
    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtGui import QColor, QImage

    image = QImage(640, 480, QImage.Format.Format_RGB888)
    image.fill(QColor(255, 0, 0))
    image.setPixelColor(i % 640, 0, QColor(254, 0, 0))  # (resized away: the model still sees red)
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "JPEG")  # type: ignore[call-overload]
    return decode_image(bytes(buffer.data().data()), f"photo-{i}.jpg")


def _other(i: int) -> list[ChatMessage]:
    return [ChatMessage("user", f"Unrelated question number {i}: tell me about the weather in spring.")]


def images_benchmark(model: Path, runs: int) -> dict[str, Any]:
    """The figures above, medians of ``runs`` (kept states off: only the live KV cache is reused)."""
    from tests.mmproj_files import write_colour_projector

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PADDOCK_HOME"] = tmp
        mmproj = write_colour_projector(model, Path(tmp) / "mmproj-colours.gguf")
        settings = LoadSettings(n_ctx=2048, mmproj=str(mmproj), kept_states_ram_mb=0, kept_states_disk_mb=0)
        rows: list[dict[str, float]] = []
        with Engine() as eng:
            eng.load(str(model), settings)
            eng.generate(_other(-1), GREEDY)  # warm-up
            for i in range(runs):
                eng.generate(_other(i), GREEDY)
                asked = [ChatMessage("user", f"Look:{IMAGE_MARKER}{QUESTION}", images=(_picture(i),))]
                first = eng.generate(asked, GREEDY)
                follow = [*asked, ChatMessage("assistant", first.text), ChatMessage("user", FOLLOW_UP)]
                again = eng.generate(follow, GREEDY)
                eng.generate(_other(i + 1000), GREEDY)
                words = eng.generate([ChatMessage("user", f"Look: red red red red{QUESTION}")], GREEDY)
                own = eng.count_tokens(follow)[0] - first.stats.prompt_tokens - first.stats.completion_tokens
                rows.append({
                    "image_s": first.stats.image_s,
                    "image_tokens": first.stats.image_tokens,
                    "ttft_image_s": first.stats.ttft_s,
                    "ttft_words_s": words.stats.ttft_s,
                    "ttft_follow_up_s": again.stats.ttft_s,
                    "follow_up_evaluated": again.stats.prompt_evaluated,
                    "follow_up_own_tokens": own,
                    "follow_up_images_encoded": again.stats.images_evaluated,
                })
    out = {key: med([r[key] for r in rows]) for key in rows[0]}
    out["ttft_image_over_words"] = out["ttft_image_s"] / out["ttft_words_s"] if out["ttft_words_s"] else 0.0
    out["runs"] = runs
    return out


def render(r: dict[str, Any]) -> str:
    i = r["images"]
    return "\n".join([
        f"# Images ({r['model']}, {r['date']}, {r['machine']}, {r['runs']} runs, medians)",
        "",
        "Projector: the test's LLaVA-type colour projector (no vision transformer): encode time is mtmd's",
        "fixed cost, not a real vision encoder's. The machine was shared: compare the ratios, measured side by side.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| encode + evaluate one 640x480 picture | {i['image_s'] * 1000:.1f} ms |",
        f"| tokens per picture | {i['image_tokens']:.0f} |",
        f"| TTFT, question with the picture | {i['ttft_image_s'] * 1000:.1f} ms |",
        f"| TTFT, same question with its words instead | {i['ttft_words_s'] * 1000:.1f} ms |",
        f"| ratio picture / words | {i['ttft_image_over_words']:.2f} |",
        f"| TTFT, follow-up about the picture | {i['ttft_follow_up_s'] * 1000:.1f} ms |",
        f"| follow-up tokens evaluated / its own tokens | {i['follow_up_evaluated']:.0f} / "
        f"{i['follow_up_own_tokens']:.0f} |",
        f"| pictures encoded again by the follow-up | {i['follow_up_images_encoded']:.0f} |",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    from scripts.test_models import smollm2

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args(argv)
    model = args.model or smollm2()
    with kept_home():
        print("images…", file=sys.stderr)
        report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "model": model.name,
            "runs": args.runs,
            "images": images_benchmark(model, args.runs),
        }
    save_results("images", report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
