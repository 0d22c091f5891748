from __future__ import annotations

import pytest

from app.engine.chat_format import FALLBACK_STOPS, ChatFormatter
from app.engine.types import ChatMessage
from app.errors import TemplateError

LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def test_renders_a_llama3_style_template() -> None:
    fmt = ChatFormatter(LLAMA3, "<|begin_of_text|>", "<|eot_id|>", model_adds_bos=True)
    out = fmt.render([ChatMessage("system", "Be kind."), ChatMessage("user", " Hi ")])
    assert out.text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert out.add_bos is False  # the template wrote BOS itself
    assert out.source == "gguf"


def test_fallback_transcript() -> None:
    fmt = ChatFormatter(None, "<bos>", "<eos>", model_adds_bos=True)
    out = fmt.render([
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."),
        ChatMessage("user", "Capital of France?"),
    ])
    assert out.text == "Be brief.\n\nQuestion: Hi\nAnswer: Hello.\nQuestion: Capital of France?\nAnswer:"
    assert out.stops == FALLBACK_STOPS
    assert out.add_bos is True


def test_raise_exception_helper_becomes_template_error() -> None:
    fmt = ChatFormatter("{{ raise_exception('roles must alternate') }}", "", "", True)
    with pytest.raises(TemplateError, match="roles must alternate"):
        fmt.render([ChatMessage("user", "x")])


def test_syntax_error_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="invalid"):
        ChatFormatter("{% for %}", "", "", True)


def test_sandbox_blocks_attribute_escape(tmp_path: object) -> None:
    fmt = ChatFormatter("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "", "", True)
    with pytest.raises(TemplateError):
        fmt.render([ChatMessage("user", "x")])


def test_runaway_loop_is_bounded() -> None:
    fmt = ChatFormatter("{% for i in range(10**9) %}x{% endfor %}", "", "", True)
    with pytest.raises(TemplateError):
        fmt.render([ChatMessage("user", "x")])
