"""`paddock serve`'s API, driven by the official openai client, also while the GUI generates."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pytestqt.qtbot import QtBot

from app.api import ApiServer
from app.engine.client import Engine
from app.engine.types import LoadSettings
from app.errors import PaddockError

KEY = "sk-test-key"


def _id(client: openai.OpenAI) -> str:
    """The served model's id (the API honours the request's model)."""
    return client.models.list().data[0].id


@pytest.fixture
def served(test_model: Path) -> Iterator[tuple[ApiServer, openai.OpenAI]]:
    engine = Engine()
    engine.load(str(test_model), LoadSettings(n_ctx=2048))
    server = ApiServer(engine, port=0, api_key=KEY)
    server.start()
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    yield server, client
    server.stop()
    engine.close()


def test_models_chat_stream_completions_and_embeddings(served: tuple[ApiServer, openai.OpenAI]) -> None:
    _server, client = served
    models = client.models.list()
    assert len(models.data) == 1
    assert models.data[0].owned_by == "paddock"
    stream = client.chat.completions.create(
        model=models.data[0].id, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "Paris" in "".join(pieces)
    assert usage is not None
    assert usage.completion_tokens > 0
    whole = client.chat.completions.create(
        model=_id(client), messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24, temperature=0,
    )
    assert whole.choices[0].message.content == "".join(pieces)
    completion = client.completions.create(model=_id(client), prompt="The capital of France is the city of",
                                           max_tokens=6, temperature=0)
    assert "Paris" in completion.choices[0].text
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 5
    streamed = [c.choices[0].text for c in client.completions.create(
        model=_id(client), prompt="Once upon a time", max_tokens=16, temperature=0, stream=True) if c.choices]
    assert len([p for p in streamed if p]) > 3  # it streams piece by piece
    emb = client.embeddings.create(model=_id(client), input=["Paris is in France", "The cat sat on the mat"])
    assert len(emb.data) == 2
    assert len(emb.data[0].embedding) == 640
    assert abs(sum(x * x for x in emb.data[0].embedding) - 1.0) < 1e-3


def test_wrong_key_and_bad_requests_are_refused(served: tuple[ApiServer, openai.OpenAI]) -> None:
    server, _client = served
    intruder = openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        intruder.models.list()
    with pytest.raises(openai.AuthenticationError):
        intruder.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    good = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="messages"):
        good.chat.completions.create(model="x", messages=[])


def test_serving_beyond_loopback_needs_a_key() -> None:
    engine = Engine()
    try:
        with pytest.raises(PaddockError, match="API key"):
            ApiServer(engine, host="0.0.0.0")
        ApiServer(engine, host="0.0.0.0", api_key="k")
    finally:
        engine.close()


def test_api_and_gui_share_the_engine(qtbot: QtBot, test_model: Path) -> None:
    from tests.ui.windows import make_window, send_and_wait

    w = make_window(qtbot, test_model)
    try:
        send_and_wait(qtbot, w, "Hello")  # loads the model in the GUI's engine
        url = w.servers.serve(True, port=0)  # the app's switch (File → Serve the loaded model)
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        answers: list[str] = []

        def ask() -> None:
            reply = client.chat.completions.create(
                model=_id(client), messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=24, temperature=0)
            answers.append(reply.choices[0].message.content or "")

        api = threading.Thread(target=ask)
        api.start()
        _c, _m, status, _e, _stats = send_and_wait(qtbot, w, "What is the capital of France?")
        api.join(120)
        assert status == "complete"
        assert "Paris" in answers[0]
        assert "Paris" in w.store.messages(w.current_conv)[-1].content  # type: ignore[arg-type]
        assert w.servers.serve(False) == ""
    finally:
        w.controller.shutdown()


THINK_TEMPLATE = (Path(__file__).parent.parent / "data" / "think-chatml.jinja").read_text()


@pytest.fixture
def served_instruct(instruct_model: Path) -> Iterator[tuple[ApiServer, openai.OpenAI]]:
    engine = Engine()
    engine.load(str(instruct_model), LoadSettings(n_ctx=4096))
    server = ApiServer(engine, port=0)
    server.start()
    yield server, openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
    server.stop()
    engine.close()


def test_instruct_model_over_several_turns(served_instruct: tuple[ApiServer, openai.OpenAI]) -> None:
    """The real ChatML template, turn after turn: each turn reuses the cached prefix of the last."""
    _server, client = served_instruct
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a helpful assistant."}]
    previous_prompt = 0
    for question in ("Hello! Who are you?", "Say the word 'blue'.", "Thanks. Now say 'red'."):
        messages.append({"role": "user", "content": question})
        reply = client.chat.completions.create(model=_id(client), messages=messages,  # type: ignore[arg-type]
                                               max_tokens=24, temperature=0)
        answer = reply.choices[0].message.content or ""
        assert answer.strip()
        assert "<|im_end|>" not in answer
        assert "<|im_start|>" not in answer
        usage = reply.usage
        assert usage is not None
        assert usage.prompt_tokens > previous_prompt
        if previous_prompt:
            assert usage.prompt_tokens_details is not None
            assert usage.prompt_tokens_details.cached_tokens >= previous_prompt
        previous_prompt = usage.prompt_tokens
        messages.append({"role": "assistant", "content": answer})


def test_reasoning_content_streamed_and_whole(instruct_model: Path) -> None:
    engine = Engine()
    engine.load(str(instruct_model), LoadSettings(n_ctx=4096, chat_template=THINK_TEMPLATE))
    server = ApiServer(engine, port=0)
    server.start()
    try:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
        history: list[dict[str, str]] = []
        for a, b in ((1, 1), (2, 3), (3, 3)):
            history += [{"role": "user", "content": f"What is {a}+{b}?"},
                        {"role": "assistant", "content": f"{a}+{b} is {a + b}.",
                         "reasoning_content": f"The user asks {a}+{b}. That is {a + b}."}]
        history.append({"role": "user", "content": "What is 4+4?"})
        whole = client.chat.completions.create(model=_id(client), messages=history,  # type: ignore[arg-type]
                                               max_tokens=48, temperature=0)
        message = whole.choices[0].message
        reasoning = (message.model_extra or {}).get("reasoning_content")
        assert reasoning
        assert message.content
        assert "<think>" not in message.content
        assert "</think>" not in message.content
        assert reasoning not in message.content
        thought, said = [], []
        for chunk in client.chat.completions.create(model=_id(client), messages=history,  # type: ignore[arg-type]
                                                    max_tokens=48, temperature=0, stream=True):
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if (delta.model_extra or {}).get("reasoning_content"):
                assert not said, "thinking after the answer began"
                thought.append(delta.model_extra["reasoning_content"])  # type: ignore[index]
            if delta.content:
                said.append(delta.content)
        assert "".join(thought) == reasoning
        assert "".join(said) == message.content
    finally:
        server.stop()
        engine.close()


ADD_TOOL = {"type": "function", "function": {
    "name": "add", "description": "Add two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]},
}}


def test_tools_and_tool_calls_over_the_openai_api(served_instruct: tuple[ApiServer, openai.OpenAI]) -> None:
    import json

    _server, client = served_instruct
    question = [{"role": "user", "content": "What is 2+3? Use the add tool."}]
    reply = client.chat.completions.create(model=_id(client), messages=question, tools=[ADD_TOOL],  # type: ignore[arg-type,list-item]
                                           tool_choice="required", max_tokens=60, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "add"
    args = json.loads(call.function.arguments)
    assert set(args) == {"a", "b"}
    # streamed: the same call, as OpenAI streams it
    calls, finish = [], None
    for chunk in client.chat.completions.create(model=_id(client), messages=question, tools=[ADD_TOOL],  # type: ignore[arg-type,list-item]
                                                tool_choice={"type": "function", "function": {"name": "add"}},
                                                max_tokens=60, temperature=0, stream=True):
        for c in chunk.choices:
            calls += c.delta.tool_calls or []
            finish = c.finish_reason or finish
    assert finish == "tool_calls"
    assert [c.function.name for c in calls] == ["add"]  # type: ignore[union-attr]
    # the result goes back as a tool message; the model answers
    follow = client.chat.completions.create(model=_id(client), tools=[ADD_TOOL], max_tokens=30, temperature=0,  # type: ignore[list-item]
                                            messages=[*question,  # type: ignore[list-item]
                                                      {"role": "assistant", "content": None,
                                                       "tool_calls": [call.model_dump()]},
                                                      {"role": "tool", "tool_call_id": call.id,
                                                       "content": str(args["a"] + args["b"])}])
    assert follow.choices[0].finish_reason in {"stop", "length", "tool_calls"}
    assert follow.usage is not None
    assert follow.usage.prompt_tokens > reply.usage.prompt_tokens  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(model=_id(client), messages=question, tools=[ADD_TOOL],  # type: ignore[arg-type,list-item]
                                       tool_choice={"type": "function", "function": {"name": "nope"}})


def test_a_remote_backend_gets_and_returns_tools(served_instruct: tuple[ApiServer, openai.OpenAI]) -> None:
    """Paddock's remote client (the window's "Servers") against an OpenAI-compatible server with tools:
    here Paddock's own API, which is such a server."""
    from app.engine.remote import RemoteClient, RemoteServer
    from app.engine.types import ChatMessage, SamplingParams

    server, _client = served_instruct
    remote = RemoteClient(RemoteServer("r", "Peer", server.url), None)
    gen = remote.stream(_id(_client), [ChatMessage("user", "What is 2+3? Use the add tool.")],
                        SamplingParams(temperature=0.0, max_tokens=60), tools=[ADD_TOOL], tool_choice="required")
    for _ in gen:
        pass
    assert gen.result is not None
    assert gen.result.stats.finish_reason == "tool_calls"
    (call,) = gen.result.tool_calls
    assert call["name"] == "add"
    assert set(call["arguments"]) == {"a", "b"}
