"""Every real chat template of the corpus renders exactly what Hugging Face's rules render.

The reference is transformers' own ``render_jinja_template`` (what
``tokenizer.apply_chat_template`` calls), run on the same messages.  Where
transformers itself refuses (a tool-use-only template given no tools, Gemma 2
given a system prompt), the reference is transformers on the input Paddock
adapts to: empty tool lists, the system prompt folded into the first message.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from app.engine.chat_format import ChatFormatter, message_dict
from app.engine.chat_format.prompt import fold_system
from app.engine.types import ChatMessage

transformers_templates = pytest.importorskip("transformers.utils.chat_template_utils")

SHAPES: dict[str, list[ChatMessage]] = {
    "system": [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi there")],
    "no-system": [ChatMessage("user", "Hi there")],
    "history": [
        ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello! How can I help?"), ChatMessage("user", "Tell me a joke."),
    ],
    "thinking-history": [
        ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!", reasoning="The user greets me."),
        ChatMessage("user", "Bye"),
    ],
    "unicode": [ChatMessage("user", "Grüße, 東京 «ok» <b>&</b>")],
}
# Templates transformers refuses as they are, and the adaptation Paddock applies to each.
EXPECTED_ADAPTED = {
    "CohereForAI-c4ai-command-r-plus-tool_use": "tools",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": "tools",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": "tools",
    "fireworks-ai-llama-3-firefunction-v2": "tools",
    "google-gemma-2-2b-it": "fold",
}


def reference(template: str, messages: list[ChatMessage], adapt: str | None, **kwargs: Any) -> str:
    dicts = [message_dict(m) for m in messages]
    extra: dict[str, Any] = {}
    tools = None
    if adapt == "tools":
        tools = []
        extra = {"functions": "[]", "datetime": datetime.date.today().isoformat()}
    if adapt == "fold":
        dicts = fold_system(dicts)
    rendered, _ = transformers_templates.render_jinja_template(
        [dicts], tools=tools, chat_template=template, add_generation_prompt=True,
        bos_token="<s>", eos_token="</s>", **extra, **kwargs,
    )
    return str(rendered[0])


def test_the_corpus_is_complete(chat_templates: dict[str, str]) -> None:
    assert len(chat_templates) == 70
    for name in ("Qwen-Qwen3-0.6B", "google-gemma-2-2b-it", "openai-gpt-oss-120b", "meta-llama-Llama-3.1-8B-Instruct"):
        assert name in chat_templates


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_template_renders_as_transformers_does(chat_templates: dict[str, str], shape: str) -> None:
    messages = SHAPES[shape]
    mismatches = []
    for name, template in chat_templates.items():
        adapt = EXPECTED_ADAPTED.get(name)
        if adapt == "fold" and not any(m.role == "system" for m in messages):
            adapt = None
        try:
            expected = reference(template, messages, None)
        except Exception:
            assert adapt is not None, f"transformers refuses {name} for {shape}"
            expected = reference(template, messages, adapt)
        else:  # outside the try: an AssertionError here is not taken for transformers refusing
            assert adapt is None, f"{name} renders without adaptation: remove it from EXPECTED_ADAPTED"
        got = ChatFormatter(template, "<s>", "</s>", True, name).render(messages).text
        if got != expected:
            mismatches.append(name)
    assert mismatches == []


def test_thinking_switch_renders_as_transformers_does(chat_templates: dict[str, str]) -> None:
    messages = SHAPES["system"]
    switches = []
    for name, template in chat_templates.items():
        fmt = ChatFormatter(template, "<s>", "</s>", True, name)
        has_switch, _default = fmt.thinking_switch()
        if not has_switch:
            continue
        switches.append(name)
        for value in (True, False):
            adapt = EXPECTED_ADAPTED.get(name)
            expected = reference(template, messages, adapt, enable_thinking=value)
            assert fmt.render(messages, enable_thinking=value).text == expected, (name, value)
    assert {"Qwen-Qwen3-0.6B", "Qwen3.5-4B", "google-gemma-4-31B-it"} <= set(switches)


def test_families_are_recognised(chat_templates: dict[str, str]) -> None:
    def family(name: str) -> str:
        return ChatFormatter(chat_templates[name], "<s>", "</s>", True).reasoning.name

    assert family("openai-gpt-oss-120b") == "gpt-oss"
    assert family("google-gemma-4-31B-it") == "gemma4"
    assert family("mistralai-Ministral-3-14B-Reasoning-2512") == "mistral"
    assert family("ByteDance-Seed-OSS") == "seed"
    assert family("Cohere2MoE") == "cohere"
    assert family("Apriel-1.6-15b-Thinker-fixed") == "apriel"
    assert family("Qwen-Qwen3-0.6B") == "think"
    assert family("deepseek-ai-DeepSeek-R1-Distill-Llama-8B") == "think"
    # Phi 3.5 writes <|end|> too: only gpt-oss' channel header names gpt-oss
    assert family("microsoft-Phi-3.5-mini-instruct") == "think"


def test_generation_prompt_that_opens_thinking(chat_templates: dict[str, str]) -> None:
    msgs = [ChatMessage("user", "Hi")]
    opened = ChatFormatter(chat_templates["Qwen3.5-4B"], "<s>", "</s>", True).render(msgs)
    assert opened.text.endswith("<think>\n")
    assert opened.thinking_open
    closed = ChatFormatter(chat_templates["Qwen-Qwen3-0.6B"], "<s>", "</s>", True).render(msgs, enable_thinking=False)
    assert closed.text.rstrip().endswith("</think>")
    assert not closed.thinking_open
    harmony = ChatFormatter(chat_templates["openai-gpt-oss-120b"], "<s>", "</s>", True).render(msgs)
    assert not harmony.thinking_open
    assert "<|return|>" in harmony.stops


def test_gemma2_system_prompt_is_folded_and_told(chat_templates: dict[str, str]) -> None:
    fmt = ChatFormatter(chat_templates["google-gemma-2-2b-it"], "<bos>", "<eos>", True, "Gemma 2 2B")
    out = fmt.render([ChatMessage("system", "Answer in French."), ChatMessage("user", "Hello")])
    assert "<start_of_turn>user\nAnswer in French.\n\nHello<end_of_turn>" in out.text
    assert "system" not in out.text
    assert out.notices
    assert "system prompt" in out.notices[0]
    plain = ChatFormatter(chat_templates["google-gemma-2-2b-it"], "<bos>", "<eos>", True).render(
        [ChatMessage("user", "Hello")]
    )
    assert plain.notices == ()


def test_continue_final_message_matches_transformers(chat_templates: dict[str, str]) -> None:
    messages = [ChatMessage("user", "Count to five."), ChatMessage("assistant", "One, two,")]
    names = ("meta-llama-Llama-3.1-8B-Instruct", "Qwen-Qwen2.5-7B-Instruct", "mistralai-Mistral-Nemo-Instruct-2407")
    for name in names:
        template = chat_templates[name]
        rendered, _ = transformers_templates.render_jinja_template(
            [[message_dict(m) for m in messages]], chat_template=template, continue_final_message=True,
            bos_token="<s>", eos_token="</s>",
        )
        got = ChatFormatter(template, "<s>", "</s>", True).render(messages, continue_final=True)
        assert got.text == rendered[0], name
        assert got.text.endswith("One, two,")
