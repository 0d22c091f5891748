"""Images through mtmd on the real engine: SmolLM2 with a real projector built by the test
(tests/mmproj_files.py) that maps pure red, green and blue patches to the model's own embeddings
of " red", " green" and " blue"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.client import Engine
from app.engine.images import IMAGE_MARKER, ImageInput
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from app.errors import ImageError, ProjectorError
from app.imaging import decode_image, load_image
from tests.mmproj_files import solid_png, write_colour_projector

GREEDY = SamplingParams(temperature=0.0, max_tokens=8, seed=1)
QUESTION = " What colour is it? Answer in one word."


@pytest.fixture(scope="module")
def projector(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_projector(instruct_model, tmp_path_factory.mktemp("mmproj") / "mmproj-colours.gguf")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageInput]:
    folder = tmp_path_factory.mktemp("pictures")
    return {name: load_image(solid_png(folder / f"{name}.png", rgb))
            for name, rgb in (("red", (255, 0, 0)), ("blue", (0, 0, 255)))}


@pytest.fixture(scope="module")
def seeing(instruct_model: Path, projector: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PADDOCK_HOME", str(tmp_path_factory.mktemp("vision-home")))
        eng = Engine()
        eng.start()
    loaded = eng.load(str(instruct_model), LoadSettings(n_ctx=1024, mmproj=str(projector)))
    assert loaded.vision
    assert loaded.mmproj == str(projector)
    yield eng
    eng.close()


def asked(image: ImageInput) -> list[ChatMessage]:
    return [ChatMessage("user", f"Look:{IMAGE_MARKER}{QUESTION}", images=(image,))]


def test_an_image_is_one_chunk_of_four_positions(seeing: Engine, pictures: dict[str, ImageInput]) -> None:
    with_image, _ = seeing.count_tokens(asked(pictures["red"]))
    text_only, _ = seeing.count_tokens([ChatMessage("user", f"Look:{QUESTION}")])
    assert with_image == text_only + 4  # 28 x 28 pixels in 14-pixel patches
    result = seeing.generate(asked(pictures["red"]), GREEDY)
    assert (result.stats.images, result.stats.image_tokens, result.stats.images_evaluated) == (1, 4, 1)
    assert result.stats.prompt_tokens == with_image


def test_a_red_picture_acts_like_the_words_red(seeing: Engine, pictures: dict[str, ImageInput]) -> None:
    probe = SamplingParams(temperature=0.0, max_tokens=1, seed=1, logprobs=8)
    image = seeing.generate(asked(pictures["red"]), probe)
    words = seeing.generate([ChatMessage("user", f"Look: red red red red{QUESTION}")], probe)
    assert image.stats.prompt_tokens == words.stats.prompt_tokens
    ours, theirs = image.logprobs[0], words.logprobs[0]
    assert [t[0] for t in ours.top] == [t[0] for t in theirs.top]
    for (_, a, _), (_, b, _) in zip(ours.top, theirs.top, strict=True):
        assert a == pytest.approx(b, abs=2e-3)  # the same embeddings; batches differ in the last bits


def test_the_answer_names_the_colour(seeing: Engine, pictures: dict[str, ImageInput]) -> None:
    answers = {name: seeing.generate(asked(image), GREEDY).text.lower() for name, image in pictures.items()}
    assert "red" in answers["red"]
    assert "blue" not in answers["red"]
    assert "blue" in answers["blue"]
    assert "red" not in answers["blue"]


def test_a_follow_up_evaluates_only_its_own_tokens(seeing: Engine, pictures: dict[str, ImageInput]) -> None:
    first = seeing.generate(asked(pictures["blue"]), GREEDY)
    follow = [*asked(pictures["blue"]), ChatMessage("assistant", first.text), ChatMessage("user", "Are you sure?")]
    second = seeing.generate(follow, GREEDY)
    assert second.stats.images == 1
    assert second.stats.images_evaluated == 0
    assert second.stats.prompt_reused >= first.stats.prompt_tokens
    assert second.stats.prompt_evaluated < 20
    # another picture at the same place breaks the prefix where it starts and is encoded
    other = [*asked(pictures["red"]), ChatMessage("assistant", first.text), ChatMessage("user", "Are you sure?")]
    third = seeing.generate(other, GREEDY)
    assert third.stats.images_evaluated == 1
    assert third.stats.prompt_reused < first.stats.prompt_tokens


def test_a_model_without_projector_refuses_images_and_goes_on(engine: Engine,
                                                               pictures: dict[str, ImageInput]) -> None:
    with pytest.raises(ImageError, match="cannot see images"):
        engine.generate(asked(pictures["red"]), GREEDY)
    assert engine.generate([ChatMessage("user", "Hello")], GREEDY).stats.completion_tokens > 0


def test_a_projector_for_another_model_is_refused_at_load(instruct_model: Path, tmp_path: Path) -> None:
    foreign = write_colour_projector(instruct_model, tmp_path / "mmproj-other.gguf", n_embd=640)
    with Engine() as eng:
        with pytest.raises(ProjectorError, match="made for another model"):
            eng.load(str(instruct_model), LoadSettings(n_ctx=512, mmproj=str(foreign)))
        assert eng.is_alive()
        assert eng.load(str(instruct_model), LoadSettings(n_ctx=512)).vision is False


def test_bad_images_are_refused_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"hello, I am a text file\n" * 10, "notes.png")
    png = solid_png(tmp_path / "red.png", (255, 0, 0)).read_bytes()
    with pytest.raises(ImageError, match="damaged"):
        decode_image(png[: len(png) // 2], "half.png")
    with pytest.raises(ImageError, match="megapixels"):
        decode_image(_bomb_png(20_000, 20_000), "bomb.png")
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")


def test_large_images_are_scaled_and_exif_orientation_applied(tmp_path: Path) -> None:
    from PySide6.QtGui import QColor, QImage, QImageIOHandler, QImageWriter

    wide = solid_png(tmp_path / "wide.png", (0, 255, 0), (4000, 1000))
    image = load_image(wide)
    assert (image.width, image.height) == (2048, 512)
    assert image.rgb[:3] == b"\x00\xff\x00"
    # a 40 x 20 JPEG whose EXIF says "rotate 90 degrees": shown 20 x 40
    picture = QImage(40, 20, QImage.Format.Format_RGB888)
    picture.fill(QColor(0, 0, 255))
    writer = QImageWriter(str(tmp_path / "turned.jpg"), b"jpeg")
    writer.setTransformation(QImageIOHandler.Transformation.TransformationRotate90)
    assert writer.write(picture)
    turned = load_image(tmp_path / "turned.jpg")
    assert (turned.width, turned.height) == (20, 40)


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width`` x ``height`` pixels (its pixel data is never reached)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")
