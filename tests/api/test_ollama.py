"""Ollama's API, driven by the official ollama client; and the whole library served on demand."""

from __future__ import annotations

import shutil
from pathlib import Path

import ollama
import openai
import pytest

from app.api.models import library_entries
from tests.api.conftest import SETTINGS, Served, http, serve


def test_an_ollama_client_lists_shows_chats_generates_and_embeds(smol: Served) -> None:
    client = ollama.Client(host=smol.base)
    names = [m.model for m in client.list().models]
    assert names == [f"{smol.model}:latest"]
    shown = client.show(names[0])
    assert "im_start" in (shown.template or "")
    assert shown.details is not None
    assert shown.details.family == "llama"
    reply = client.chat(model=names[0], messages=[{"role": "user", "content": "What is the capital of France?"}],
                        options={"temperature": 0, "num_predict": 24})
    assert "Paris" in reply.message.content
    assert reply.done
    assert reply.eval_count
    assert reply.eval_count <= 24
    pieces = [part.message.content for part in client.chat(
        model=names[0], messages=[{"role": "user", "content": "What is the capital of France?"}],
        options={"temperature": 0, "num_predict": 24}, stream=True)]
    assert len(pieces) > 2
    assert "".join(pieces) == reply.message.content
    stopped = client.chat(model=smol.model, messages=[{"role": "user", "content": "Count from 1 to 20."}],
                          options={"temperature": 0, "num_predict": 60, "stop": ["5"]})
    assert "5" not in stopped.message.content
    gen = client.generate(model=smol.model, prompt="The capital of France is the city of", raw=True,
                          options={"temperature": 0, "num_predict": 6})
    assert "Paris" in gen.response
    as_json = client.chat(model=smol.model, format="json", options={"temperature": 0, "num_predict": 60},
                          messages=[{"role": "user", "content": "Describe a cat as JSON."}])
    import json

    assert isinstance(json.loads(as_json.message.content), dict)
    emb = client.embed(model=smol.model, input=["Paris is in France", "cats"])
    assert len(emb.embeddings) == 2
    assert len(emb.embeddings[0]) == 576
    running = client.ps().models
    assert [m.model for m in running] == [f"{smol.model}:latest"]


def test_ollama_requests_are_honoured_or_refused(smol: Served) -> None:
    client = ollama.Client(host=smol.base)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model=smol.model, messages=[{"role": "user", "content": "hi"}], options={"mirostat": 2})
    assert caught.value.status_code == 400
    assert "mirostat" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="llama3:8b", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("llama3")
    assert caught.value.status_code == 501
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model=smol.model, messages=[{"role": "user", "content": "hi"}], options={"num_ctx": 4096})
    assert "--ctx 4096" in caught.value.error
    over = http.post(smol.base + "/api/chat", json={"model": smol.model, "stream": False,
                                                     "messages": [{"role": "user", "content": "word " * 700}]})
    assert over.status_code == 400
    assert "maximum context length" in over.json()["error"]


def test_the_library_is_served_each_model_on_request(instruct_model: Path, test_model: Path,
                                                     paddock_home: Path) -> None:
    """Without --model: every library model is listed by a stable id, loaded when a request names it;
    with --max-models 1 the least recently used one is unloaded to make room."""
    from app import paths

    folder = paths.models_dir() / "local"
    folder.mkdir(parents=True)
    for model in (instruct_model, test_model):
        shutil.copy(model, folder / model.name)
    entries = library_entries()
    ids = sorted(e.id for e in entries)
    assert ids == ["gemma-3-270m-q4_k_m", "smollm2-135m-instruct.q4_1"] or len(ids) == 2
    served = serve([e.path for e in entries], SETTINGS, max_models=1)
    try:
        listed = sorted(m.id for m in served.client.models.list().data)
        assert listed == sorted(e.id for e in entries)
        assert served.pool.running() == []  # nothing loads before it is asked for
        smol_id = next(i for i in listed if i.startswith("smollm2"))
        gemma_id = next(i for i in listed if i != smol_id)
        a = served.client.chat.completions.create(model=smol_id, max_tokens=8, temperature=0,
                                                  messages=[{"role": "user", "content": "Hello"}])
        assert a.model == smol_id
        assert [e.id for e, _ in served.pool.running()] == [smol_id]
        b = served.client.completions.create(model=gemma_id, prompt="The capital of France is the city of",
                                             max_tokens=6, temperature=0)
        assert "Paris" in b.choices[0].text
        assert [e.id for e, _ in served.pool.running()] == [gemma_id]  # max 1: SmolLM2 made room
        with pytest.raises(openai.NotFoundError):
            served.client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
    finally:
        served.server.stop()
        served.pool.close()
