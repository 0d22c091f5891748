"""Images through `paddock serve`: OpenAI image_url parts (data: URIs) with the official client,
Ollama's images field; the model with a real projector built by the test (tests/mmproj_files.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from app.api import ApiServer
from app.api.models import ModelPool, entries_for
from tests.api.conftest import SETTINGS, Served, http
from tests.mmproj_files import solid_png, write_colour_projector

QUESTION = "What colour is it? Answer in one word."
FIRST_QUESTION = "What colour is the square? Answer in one word."  # asked after the picture (Ollama's order)


@pytest.fixture(scope="module")
def seeing(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("served-vision")
    mmproj = write_colour_projector(instruct_model, folder / "mmproj-colours.gguf")
    pool = ModelPool(entries_for([(instruct_model, None, None)], mmproj=mmproj), SETTINGS)
    server = ApiServer(pool, port=0)
    server.start()
    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
    served = Served(server, pool, client, pool.entries()[0].id)
    served.engine()
    yield served
    server.stop()
    pool.close()


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("pngs")
    return {name: base64.b64encode(solid_png(folder / f"{name}.png", rgb).read_bytes()).decode()
            for name, rgb in (("red", (255, 0, 0)), ("blue", (0, 0, 255)))}


def ask(image_url: str) -> list[dict[str, object]]:
    return [{"role": "user", "content": [{"type": "text", "text": "Look:"},
                                         {"type": "image_url", "image_url": {"url": image_url}},
                                         {"type": "text", "text": " " + QUESTION}]}]


def test_the_openai_client_shows_a_picture(seeing: Served, png: dict[str, str]) -> None:
    models = seeing.client.models.list().data
    assert "vision" in (models[0].model_extra or {}).get("capabilities", [])
    for colour in ("red", "blue"):
        reply = seeing.client.chat.completions.create(
            model=seeing.model, messages=ask(f"data:image/png;base64,{png[colour]}"),  # type: ignore[arg-type]
            temperature=0, max_tokens=8)
        assert colour in (reply.choices[0].message.content or "").lower()


def test_image_urls_that_cannot_be_shown_are_refused(seeing: Served, png: dict[str, str]) -> None:
    cases = {
        "https://example.com/cat.png": "does not fetch images",
        "data:image/png;base64,@@@": "not valid base64",
        "data:image/png;base64," + base64.b64encode(b"just text, not a picture").decode(): "not an image",
    }
    for url, message in cases.items():
        with pytest.raises(openai.BadRequestError, match=message):
            seeing.client.chat.completions.create(model=seeing.model, messages=ask(url),  # type: ignore[arg-type]
                                                  max_tokens=4)
    # the server and the engine are intact
    reply = seeing.client.chat.completions.create(
        model=seeing.model, messages=ask(f"data:image/png;base64,{png['red']}"),  # type: ignore[arg-type]
        temperature=0, max_tokens=8)
    assert "red" in (reply.choices[0].message.content or "").lower()


def test_ollama_images_field(seeing: Served, png: dict[str, str]) -> None:
    shown = http.post(seeing.base + "/api/show", json={"model": seeing.model}).json()
    assert "vision" in shown["capabilities"]
    reply = http.post(seeing.base + "/api/chat", json={
        "model": seeing.model, "stream": False, "options": {"temperature": 0, "num_predict": 16, "repeat_penalty": 1.0},
        "messages": [{"role": "user", "content": FIRST_QUESTION, "images": [png["blue"]]}]})
    assert reply.status_code == 200, reply.text
    # Ollama puts a message's images before its text: the same prompt as an OpenAI image part first
    same = seeing.client.chat.completions.create(
        model=seeing.model, temperature=0, max_tokens=16, messages=[{"role": "user", "content": [  # type: ignore[list-item]
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png['blue']}"}},
            {"type": "text", "text": FIRST_QUESTION}]}])
    assert reply.json()["message"]["content"] == same.choices[0].message.content
    assert same.usage is not None
    assert reply.json()["prompt_eval_count"] == same.usage.prompt_tokens


def test_a_model_that_cannot_see_refuses_images(smol: Served, png: dict[str, str]) -> None:
    assert "vision" not in (smol.client.models.list().data[0].model_extra or {}).get("capabilities", [])
    with pytest.raises(openai.BadRequestError, match="cannot see images"):
        smol.client.chat.completions.create(model=smol.model, messages=ask(f"data:image/png;base64,{png['red']}"),  # type: ignore[arg-type]
                                            max_tokens=4)


def test_a_remote_backend_gets_the_pictures(seeing: Served, png: dict[str, str]) -> None:
    """The window's remote backends send pictures as image_url parts: here to Paddock's own server."""
    from app.engine.images import IMAGE_MARKER
    from app.engine.remote import RemoteClient, RemoteServer
    from app.engine.types import ChatMessage, SamplingParams
    from app.imaging import decode_image

    client = RemoteClient(RemoteServer("local", "paddock serve", seeing.server.url), None, timeout=300)
    picture = decode_image(base64.b64decode(png["blue"]), "blue.png")
    # the picture sits where its marker is: sent as [text, image_url, text]
    message = ChatMessage("user", f"Look:{IMAGE_MARKER} {QUESTION}", images=(picture,))
    gen = client.stream(seeing.model, [message],
                        SamplingParams(temperature=0.0, max_tokens=16))
    text = "".join(gen)
    assert "blue" in text.lower()
