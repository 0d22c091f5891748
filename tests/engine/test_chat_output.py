"""The output parser on outputs written in each family's real format, fed in every split."""

from __future__ import annotations

import pytest

from app.engine.chat_format import FORMATS, OutputParser, ReasoningFormat

FMT = {f.name: f for f in FORMATS}


def run(output: str, fmt: ReasoningFormat | None, step: int, **kwargs: object) -> OutputParser:
    parser = OutputParser(kwargs.pop("stops", ("<|im_end|>",)), fmt, **kwargs)  # type: ignore[arg-type]
    pieces = []
    for i in range(0, len(output), step):
        pieces += parser.feed(output[i : i + step])
    pieces += parser.finish()
    # what was streamed is exactly what the parser reports
    assert "".join(t for k, t in pieces if k == "answer") == parser.answer
    assert "".join(t for k, t in pieces if k == "thinking") == parser.thinking
    return parser


CASES = [
    # (family, model output, thinking_open, thinking, answer)
    ("think", "<think>\nThe user wants 2+2.\n</think>\n\nIt is 4.", False, "The user wants 2+2.", "It is 4."),
    ("think", "Okay, 2+2 is 4.\n</think>\n\nFour.", True, "Okay, 2+2 is 4.", "Four."),  # template opened <think>
    ("think", "Just an answer.", False, "", "Just an answer."),
    ("gpt-oss", "<|channel|>analysis<|message|>Simple sum.<|end|><|start|>assistant<|channel|>final<|message|>"
                "2 + 2 = 4.<|return|>", False, "Simple sum.", "2 + 2 = 4."),
    ("gemma4", "<|channel>thought\nAdd them.<channel|>The sum is 4.", False, "Add them.", "The sum is 4."),
    ("mistral", "[THINK]Two plus two.[/THINK]4", False, "Two plus two.", "4"),
    ("seed", "<seed:think>sum</seed:think>\n4", False, "sum", "4"),
    ("cohere", "thinking it over<|END_THINKING|><|START_RESPONSE|>Four.<|END_RESPONSE|>", True,
     "thinking it over", "Four."),
    ("apriel", "I add.\n[BEGIN FINAL RESPONSE]\nFour.\n[END FINAL RESPONSE]", True, "I add.", "Four."),
    ("kimi3", "plan<|close|>think<|sep|><|open|>response<|sep|>Four<|close|>response<|sep|>", True, "plan", "Four"),
]


@pytest.mark.parametrize(("family", "output", "opened", "thinking", "answer"), CASES)
@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_thinking_and_answer_apart(family: str, output: str, opened: bool, thinking: str, answer: str,
                                   step: int) -> None:
    parser = run(output, FMT[family], step, thinking_open=opened)
    assert parser.thinking == thinking
    assert parser.answer == answer


@pytest.mark.parametrize("step", [1, 4, 100])
def test_stop_string_ends_the_answer_and_is_never_shown(step: int) -> None:
    parser = run("Paris.<|im_end|>\n<|im_start|>user\nmore", FMT["think"], step)
    assert parser.answer == "Paris."
    assert parser.stopped


def test_partial_marker_is_held_then_released() -> None:
    parser = OutputParser(("<|im_end|>",), FMT["think"])
    assert parser.feed("a <") == [("answer", "a")]
    assert parser.feed("3 b") == [("answer", " <3 b")]  # not a marker after all


def test_text_without_a_marker_start_passes_at_once_and_a_plain_word_stop_is_still_found() -> None:
    parser = OutputParser(("THE END",), FMT["think"])
    assert parser.feed("Once upon") == [("answer", "Once upon")]  # holds no marker's first character
    assert parser.feed(" a time. T") == [("answer", " a time.")]  # " T" may start the stop: held
    assert parser.feed("HE EN") == []
    assert parser.feed("D and more") == []
    assert parser.stopped
    assert parser.answer == "Once upon a time."


def test_fallback_answer_prefix_is_dropped() -> None:
    parser = run(" Answer: Paris.\nQuestion: next", None, 2, stops=("\nQuestion:",), strip_prefixes=("Answer:",))
    assert parser.answer == "Paris."


def test_continuing_keeps_the_leading_space() -> None:
    parser = run(" three, four.", FMT["think"], 3, continuing=True)
    assert parser.answer == " three, four."


def test_raw_completion_keeps_everything() -> None:
    parser = run("  <think>x</think>  ", None, 2, stops=(), chat=False)
    assert parser.answer == "  <think>x</think>  "


def test_thinking_never_leaks_when_cut_inside_it() -> None:
    parser = run("<think>still going", FMT["think"], 1)
    assert parser.in_thinking
    assert parser.answer == ""
    assert parser.thinking == "still going"
