"""Tool calls in each family's real format: the corpus templates write a past call into the
history exactly as the model was trained to write it; the family's parser must read it back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.engine.chat_format import ChatFormatter, OutputParser, RenderedPrompt, output_parser, parse_tool_calls
from app.engine.chat_format.tool_calls import (
    FORMATS,
    HERMES,
    ToolCallFormat,
    call_grammar,
    forced_call_format,
    tool_call_format,
)
from app.engine.client import Engine
from app.engine.native import Sampler
from app.engine.types import ChatMessage, LoadSettings, SamplingParams

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]},
}}
CALL = {"id": "a1b2c3d4e", "name": "get_weather", "arguments": {"city": "Paris"}}
HISTORY = [
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", "", tool_calls=(CALL,)),
    ChatMessage("tool", '{"temp": 21}', tool_call_id=CALL["id"], name="get_weather"),
    ChatMessage("assistant", "It is 21 degrees."),
    ChatMessage("user", "Thanks"),
]
# Templates whose own rendering of a call each family's parser must read back (one or more per family).
EXPECTED_FAMILIES = {
    "Qwen-Qwen3-0.6B": "hermes", "Qwen-Qwen2.5-7B-Instruct": "hermes", "Qwen3-Coder": "hermes",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": "hermes", "GLM-4.6": "hermes",
    "meta-llama-Llama-3.1-8B-Instruct": "llama3", "meta-llama-Llama-3.2-3B-Instruct": "llama3",
    "meta-llama-Llama-3.3-70B-Instruct": "llama3", "unsloth-mistral-Devstral-Small-2507": "mistral",
    "Mistral-Small-3.2-24B-Instruct-2506": "mistral", "mistralai-Mistral-Nemo-Instruct-2407": "mistral",
    "openai-gpt-oss-120b": "gpt-oss", "google-gemma-4-31B-it": "gemma4", "ibm-granite-granite-4.0": "hermes",
    "Cohere2MoE": "command", "CohereForAI-c4ai-command-r7b-12-2024-tool_use": "command",
    "moonshotai-Kimi-K2": "kimi", "MiniMax-M2": "invoke", "deepseek-ai-DeepSeek-V3.2": "invoke",
    "ByteDance-Seed-OSS": "seed", "tencent-Hy3": "hunyuan", "upstage-Solar-Open-100B": "solar",
    "NVIDIA-Nemotron-Nano-v2": "nemotron", "unsloth-Apriel-1.5": "apriel", "LFM2.5-8B-A1B": "lfm",
    "GigaChat3.1-10B-A1.8B": "gigachat", "Apertus-8B-Instruct": "apertus",
    "fireworks-ai-llama-3-firefunction-v2": "firefunction", "meetkai-functionary-medium-v3.1": "functionary",
    "openbmb-MiniCPM5-1B": "minicpm", "Kimi-K3": "kimi3", "GigaChat3-10B-A1.8B": "gigachat3",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FAMILIES))
def test_each_family_reads_the_call_its_template_writes(chat_templates: dict[str, str], name: str) -> None:
    template = chat_templates[name]
    fmt, renders_tools = tool_call_format(template)
    assert fmt.name == EXPECTED_FAMILIES[name]
    assert renders_tools
    text = ChatFormatter(template, "<s>", "</s>", True, name).render(HISTORY, tools=[WEATHER]).text
    past_turns = text[text.find("Weather in Paris?"):]  # not the system prompt's format examples
    calls = fmt.parse(past_turns)
    assert [(c["name"], c["arguments"]) for c in calls][:1] == [("get_weather", {"city": "Paris"})]


def test_every_template_takes_tools_and_tool_turns(chat_templates: dict[str, str]) -> None:
    """Offering tools and sending tool results never breaks a template that renders the plain chat,
    except where transformers' own rules break it too (noted)."""
    known = {
        "CohereForAI-c4ai-command-r-plus-tool_use",  # wants Cohere's own tool schema (top-level "description")
        "Kimi-K2-Instruct", "Kimi-K2-Thinking",  # list.append: refused by the immutable sandbox, as in transformers
        "llama-cpp-deepseek-r1",  # tojson of a generator: fails in transformers too
        "meetkai-functionary-medium-v3.2",  # wants arguments as a JSON string
    }
    failing = []
    for name, template in chat_templates.items():
        try:
            ChatFormatter(template, "<s>", "</s>", True, name).render(HISTORY, tools=[WEATHER])
        except Exception:
            failing.append(name)
    assert set(failing) == known


def test_a_template_without_tools_gets_them_in_a_system_message(chat_templates: dict[str, str]) -> None:
    out = ChatFormatter(chat_templates["microsoft-Phi-3.5-mini-instruct"], "<s>", "</s>", True).render(
        [ChatMessage("user", "Weather in Paris?")], tools=[WEATHER])
    assert "<tools>" in out.text
    assert '"get_weather"' in out.text
    assert out.tool_format is HERMES


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_streamed_call_is_held_out_of_the_answer(step: int) -> None:
    output = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    parser = OutputParser(("<|im_end|>",), None, tool_starts=HERMES.starts)
    shown = []
    for i in range(0, len(output), step):
        shown += parser.feed(output[i : i + step])
    shown += parser.finish()
    assert "".join(t for _k, t in shown) == "Let me check."
    assert parser.in_tool
    assert HERMES.parse(parser.tool_text)[0]["arguments"] == {"city": "Paris"}


def test_json_call_as_the_whole_answer_and_plain_json_given_back() -> None:
    llama3, _ = tool_call_format("{{ '<|python_tag|>' }} tools")
    parser = OutputParser((), None, tool_starts=llama3.starts, tool_json_start=True)
    parser.feed('{"name": "get_weather", "parameters": {"city": "Paris"}}')
    parser.finish()
    assert parser.answer == ""
    assert llama3.parse(parser.tool_text)[0]["name"] == "get_weather"
    other = OutputParser((), None, tool_starts=llama3.starts, tool_json_start=True)
    other.feed('{"a": 1}')
    other.finish()
    assert llama3.parse(other.tool_text) == []
    assert "".join(t for _k, t in other.release_tool_text()) == '{"a": 1}'


@pytest.fixture(scope="module")
def vocab(instruct_model: Path) -> Iterator[Any]:
    """SmolLM2's vocabulary, loaded by llama.cpp in the test process: a grammar is compiled against one."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(instruct_model), vocab_only=True, verbose=False)
    yield llm
    llm.close()


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_family_grammar_compiles_in_llama_cpp(vocab: Any, fmt: ToolCallFormat) -> None:
    """What the engine does with a required call: llama.cpp parses the family's grammar into a sampler
    (app.engine.native.Sampler raises ValueError where llama_sampler_init_grammar returns NULL)."""
    for only in (None, "add"):
        grammar = call_grammar(fmt, [ADD, WEATHER], only)
        Sampler(SamplingParams(temperature=0.0), vocab.n_vocab(), 0, grammar=grammar, vocab=vocab._model.vocab).close()
    with pytest.raises(ValueError, match="could not parse"):  # the check can fail: a rule that is not defined
        Sampler(SamplingParams(), vocab.n_vocab(), 0, grammar="root ::= call", vocab=vocab._model.vocab)
    with pytest.raises(ValueError, match="no tool named"):
        call_grammar(fmt, [ADD], only="nope")


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_a_forced_call_is_read_back_in_every_family(fmt: ToolCallFormat) -> None:
    """A grammar writes the call in the family's own wrapper, or in Hermes' where the family has none;
    the engine's output parser must take that text for a call, not for the answer, and read it."""
    forced = forced_call_format(fmt)
    written = forced.prefix + json.dumps({"name": "add", fmt.arguments_key: {"a": 2, "b": 3}}) + forced.suffix
    grammar = call_grammar(fmt, [ADD])
    assert grammar.startswith(f"root ::= {json.dumps(forced.prefix)} call {json.dumps(forced.suffix)}\n")
    prompt = RenderedPrompt("", (), "gguf", True, tool_format=forced)
    parser = output_parser(prompt)
    parser.feed(written)
    parser.finish()
    assert parser.answer == ""
    assert parser.in_tool
    assert [(c["name"], c["arguments"]) for c in parse_tool_calls(prompt, parser.tool_text)] == [
        ("add", {"a": 2, "b": 3})]


# A template per grammar syntax the issue found never compiled, and one family (gpt-oss) whose own
# markers are not what its grammar writes.
FORCED_FAMILIES = {
    "mistralai-Mistral-Nemo-Instruct-2407": "mistral", "ibm-granite-granite-3.3-2B-Instruct": "granite",
    "meta-llama-Llama-3.1-8B-Instruct": "llama3", "Cohere2MoE": "command",
    "openai-gpt-oss-120b": "gpt-oss",
}


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One engine for the module's tests; it starts before a test's PADDOCK_HOME is set, so it has its own."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PADDOCK_HOME", str(tmp_path_factory.mktemp("smol-home")))
        eng = Engine()
        eng.start()
    yield eng
    eng.close()


@pytest.mark.parametrize("name", sorted(FORCED_FAMILIES))
def test_a_required_call_in_each_family_syntax(smol: Engine, instruct_model: Path, chat_templates: dict[str, str],
                                                name: str) -> None:
    """The family's grammar constrains a real generation (SmolLM2 with that family's template), and the
    engine returns the call, not its text as the answer."""
    template = chat_templates[name]
    assert tool_call_format(template)[0].name == FORCED_FAMILIES[name]
    smol.load(str(instruct_model), LoadSettings(n_ctx=4096, chat_template=template, kept_states_ram_mb=0,
                                                kept_states_disk_mb=0))
    result = smol.generate([ChatMessage("user", "What is 2+3? Use the add tool.")],
                           SamplingParams(temperature=0.0, max_tokens=80), tools=[ADD], tool_choice="required")
    assert result.stats.finish_reason == "tool_calls", result.text
    assert [(c["name"], c["arguments"]) for c in result.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert result.text == ""


def test_grammar_forces_a_valid_call_from_the_small_model(instruct_model: Path) -> None:
    with Engine() as eng:
        eng.load(str(instruct_model), LoadSettings(n_ctx=4096))
        question = [ChatMessage("user", "What is 2+3? Use the add tool.")]
        free = eng.generate(question, SamplingParams(temperature=0.0, max_tokens=60), tools=[ADD])
        forced = eng.generate(question, SamplingParams(temperature=0.0, max_tokens=60), tools=[ADD],
                              tool_choice="required")
        assert forced.stats.finish_reason == "tool_calls"
        (call,) = forced.tool_calls
        assert call["name"] == "add"
        assert set(call["arguments"]) == {"a", "b"}
        assert all(isinstance(v, int) for v in call["arguments"].values())
        assert forced.text == ""  # the call is not part of the answer text
        # auto: no grammar, the model chooses; greedy, this small model answers in text (no call)
        assert free.tool_calls == ()
        assert free.stats.finish_reason == "length"
        assert "add" in free.text
        assert "<tool_call>" not in free.text
        named = eng.generate(question, SamplingParams(temperature=0.0, max_tokens=60), tools=[ADD, WEATHER],
                             tool_choice="get_weather")
        assert [c["name"] for c in named.tool_calls] == ["get_weather"]
