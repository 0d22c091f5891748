"""Every OpenAI parameter is honoured or refused: each test fails if its parameter is dropped.

Through the real server with SmolLM2 and the official openai client (raw HTTP where the client
itself would refuse the request before sending it).
"""

from __future__ import annotations

import base64
import json
import struct

import httpx
import openai
import pytest

from tests.api.conftest import Served, http

COUNT = [{"role": "user", "content": "Count from 1 to 20, one number per line."}]


def ask(smol: Served, **kwargs: object) -> openai.types.chat.ChatCompletion:
    args: dict[str, object] = {"model": smol.model, "messages": COUNT, "max_tokens": 60, "temperature": 0}
    args.update(kwargs)
    return smol.client.chat.completions.create(**args)  # type: ignore[call-overload, no-any-return]


def post(smol: Served, path: str, body: dict[str, object]) -> httpx.Response:
    return http.post(smol.base + path, json=body)


def test_stop_cuts_the_answer_where_the_string_appears(smol: Served) -> None:
    plain = ask(smol).choices[0].message.content or ""
    assert "5" in plain  # the model does count past 5
    for stop in ("5", ["7", "5"]):
        reply = ask(smol, stop=stop)
        text = reply.choices[0].message.content or ""
        assert "5" not in text
        assert plain.startswith(text.rstrip())
        assert reply.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in ask(smol, stop=["5"], stream=True)
                       if c.choices)
    assert "5" not in streamed
    completion = smol.client.completions.create(model=smol.model, prompt="1, 2, 3, 4,", max_tokens=20,
                                                temperature=0, stop=[" 7"])
    assert " 7" not in completion.choices[0].text
    assert "6" in completion.choices[0].text


def test_n_gives_that_many_choices_and_prompt_lists_each_their_own(smol: Served) -> None:
    reply = ask(smol, n=3, temperature=1.0, seed=11, max_tokens=12)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) > 1  # seeds 11, 12, 13: different draws
    streamed: dict[int, str] = {}
    for chunk in ask(smol, n=2, temperature=1.0, seed=11, max_tokens=12, stream=True):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + (c.delta.content or "")
    assert streamed == {0: reply.choices[0].message.content, 1: reply.choices[1].message.content}
    many = smol.client.completions.create(model=smol.model, prompt=["The capital of France is", "1, 2, 3,"],
                                          max_tokens=6, temperature=0)
    assert len(many.choices) == 2
    alone = smol.client.completions.create(model=smol.model, prompt="1, 2, 3,", max_tokens=6, temperature=0)
    assert many.choices[1].text == alone.choices[0].text
    assert many.choices[0].text != many.choices[1].text


def test_logprobs_come_from_the_model(smol: Served) -> None:
    reply = ask(smol, logprobs=True, top_logprobs=3, max_tokens=8)
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    assert 1 <= len(content) <= 8
    assert "".join(t.token for t in content).strip() == (reply.choices[0].message.content or "").strip()
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token  # greedy: the likeliest was taken
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob >= entry.top_logprobs[2].logprob
        assert bytes(entry.bytes or []).decode() == entry.token
    streamed = [t for c in ask(smol, logprobs=True, top_logprobs=3, max_tokens=8, stream=True)
                if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert [t.token for t in streamed] == [t.token for t in content]
    legacy = smol.client.completions.create(model=smol.model, prompt="1, 2, 3,", max_tokens=4, temperature=0,
                                            logprobs=2)
    lp = legacy.choices[0].logprobs
    assert lp is not None
    assert "".join(lp.tokens or []) == legacy.choices[0].text
    assert all(len(d) == 2 for d in lp.top_logprobs or [])
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        ask(smol, top_logprobs=2)


def test_response_format_is_enforced(smol: Served) -> None:
    reply = ask(smol, messages=[{"role": "user", "content": "Describe a cat."}], max_tokens=80,
                response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    # with a repetition penalty too (Ollama's default): the penalty's window of prompt tokens once
    # reached the grammar and aborted the engine
    penalised = ask(smol, messages=[{"role": "user", "content": "Describe a cat."}], max_tokens=80,
                    response_format={"type": "json_object"}, extra_body={"repeat_penalty": 1.1})
    assert isinstance(json.loads(penalised.choices[0].message.content or ""), dict)
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    reply = ask(smol, messages=[{"role": "user", "content": "Invent a person."}], max_tokens=80,
                response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    person = json.loads(reply.choices[0].message.content or "")
    assert set(person) == {"name", "age"}
    assert isinstance(person["age"], int)
    for bad in ({"type": "sound"}, {"type": "json_object", "shema": {}},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strictly": True}}):
        refused = post(smol, "/v1/chat/completions", {"model": smol.model, "messages": COUNT, "response_format": bad})
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["param"].startswith("response_format")
    # llama-server's and vLLM's form, a schema beside json_object, is honoured
    beside = ask(smol, messages=[{"role": "user", "content": "Invent a person."}], max_tokens=80,
                 response_format={"type": "json_object", "schema": schema})
    assert set(json.loads(beside.choices[0].message.content or "")) == {"name", "age"}


def test_logit_bias_moves_the_choice(smol: Served) -> None:
    first = ask(smol, max_tokens=1, logprobs=True).choices[0].logprobs.content[0]  # type: ignore[index, union-attr]
    (token_id,) = _ids(smol, first.token, bos=False)
    # the greedy first token banned: the answer starts with another
    banned = ask(smol, max_tokens=1, logprobs=True, logit_bias={str(token_id): -100})
    assert banned.choices[0].logprobs.content[0].token != first.token  # type: ignore[index, union-attr]
    # a token pushed up: greedy takes it
    (forced,) = _ids(smol, " banana", bos=False)
    pushed = ask(smol, max_tokens=1, logit_bias={str(forced): 100})
    assert pushed.choices[0].message.content == "banana"
    with pytest.raises(openai.BadRequestError, match="vocabulary"):
        ask(smol, logit_bias={"99999999": 5})


def test_seed_penalties_and_max_completion_tokens_are_applied(smol: Served) -> None:
    a = ask(smol, temperature=1.2, seed=5, max_tokens=20).choices[0].message.content
    b = ask(smol, temperature=1.2, seed=5, max_tokens=20).choices[0].message.content
    c = ask(smol, temperature=1.2, seed=6, max_tokens=20).choices[0].message.content
    assert a == b
    assert a != c
    plain = ask(smol).choices[0].message.content
    assert ask(smol, frequency_penalty=2.0).choices[0].message.content != plain
    assert ask(smol, presence_penalty=2.0).choices[0].message.content != plain
    reply = ask(smol, max_completion_tokens=5)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"


def test_nulls_are_defaults_and_bad_values_are_refused(smol: Served) -> None:
    ok = post(smol, "/v1/chat/completions", {"model": smol.model, "messages": COUNT, "max_tokens": 4,
                                             "temperature": None, "top_p": None, "tool_choice": None,
                                             "stop": None, "n": None, "seed": None, "logit_bias": None})
    assert ok.status_code == 200
    for body, param in (({"messages": [{"role": "user", "content": 123}]}, "messages"),
                        ({"messages": COUNT, "max_tokens": 0}, "max_tokens"),
                        ({"messages": COUNT, "temperature": "hot"}, "temperature"),
                        ({"messages": COUNT, "n": 0}, "n"),
                        ({"messages": COUNT, "stop": [""]}, "stop"),
                        ({"messages": COUNT, "frobnicate": 1}, "frobnicate"),
                        ({"messages": [{"role": "user", "content": "hi", "colour": "red"}]}, "messages"),
                        ({"messages": COUNT, "stream_options": {"include_usage": True}}, "stream_options")):
        refused = post(smol, "/v1/chat/completions", {"model": smol.model, **body})
        assert refused.status_code == 400, body
        error = refused.json()["error"]
        assert error["param"] == param
        assert error["type"] == "invalid_request_error"
        assert "Traceback" not in error["message"]


def test_the_requested_model_is_honoured(smol: Served) -> None:
    assert [m.id for m in smol.client.models.list().data] == [smol.model]
    assert smol.model == "smollm2-135m-instruct.q4_1"  # a stable slug of the file name
    assert ask(smol, max_tokens=1).system_fingerprint.startswith("paddock-")  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError) as caught:
        ask(smol, model="gpt-4o")
    assert caught.value.code == "model_not_found"
    assert ask(smol, model=smol.model + ":latest", max_tokens=2).model == smol.model
    missing = http.get(smol.base + "/v1/nothing-here")
    assert missing.status_code == 404
    assert "not part of Paddock's API" in missing.json()["error"]["message"]
    health = http.get(smol.base + "/health")
    assert health.json() == {"status": "ok", "models_loaded": [smol.model]}


def test_embeddings_are_checked_before_the_engine(smol: Served) -> None:
    engine = smol.engine()
    before = engine.requests
    for value in ("", [], ["fine", ""], [[]], {"a": 1}):
        refused = post(smol, "/v1/embeddings", {"model": smol.model, "input": value})
        assert refused.status_code == 400, value
        assert refused.json()["error"]["param"] == "input"
    assert engine.requests == before
    text = "Paris is in France"
    one = smol.client.embeddings.create(model=smol.model, input=text).data[0].embedding
    batch = smol.client.embeddings.create(model=smol.model, input=["The cat sat on the mat", text, "x " * 50])
    assert batch.data[1].embedding == one  # the same vector whatever else is in the batch
    ids = _ids(smol, text)
    by_ids = smol.client.embeddings.create(model=smol.model, input=ids).data[0].embedding
    assert by_ids == pytest.approx(one, abs=1e-6)
    two = smol.client.embeddings.create(model=smol.model, input=[ids, ids[:2]])
    assert len(two.data) == 2
    raw = post(smol, "/v1/embeddings", {"model": smol.model, "input": text, "encoding_format": "base64"}).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(one, abs=1e-6)
    long = "word " * 2000
    over = post(smol, "/v1/embeddings", {"model": smol.model, "input": long})
    assert over.status_code == 400
    assert over.json()["error"]["code"] == "context_length_exceeded"
    cut = post(smol, "/v1/embeddings", {"model": smol.model, "input": long, "truncate": True})
    assert cut.status_code == 200
    assert cut.json()["usage"]["prompt_tokens"] == 512


def _ids(smol: Served, text: str, bos: bool = True) -> list[int]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(smol.pool.entries()[0].path), vocab_only=True, verbose=False)
    try:
        return [int(t) for t in llm.tokenize(text.encode(), add_bos=bos)]
    finally:
        llm.close()
