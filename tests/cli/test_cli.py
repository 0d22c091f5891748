"""``paddock`` as a user runs it: a real process, the real model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app import __version__


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=300)


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"paddock {__version__}"


def test_chat_json_answers_paris(test_model: Path) -> None:
    out = run("chat", "--model", str(test_model), "--json", "--temperature", "0", "--ctx", "2048",
              "The capital of France is")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "Paris" in data["text"]
    for key in ("text", "prompt_tokens", "completion_tokens", "ttft_s", "tokens_per_s", "load_s", "backend"):
        assert key in data
    assert data["backend"] == "cpu"
    assert data["completion_tokens"] > 0
    assert data["tokens_per_s"] > 0
    assert data["load_s"] > 0


def test_chat_streams_plain_text(test_model: Path) -> None:
    out = run("chat", "--model", str(test_model), "--temperature", "0", "--ctx", "2048",
              "What is the capital of France?")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    assert "no chat template" in out.stderr  # the fallback is told to the user


@pytest.mark.parametrize("content", [b"", b"hello world", b"GGUF\x03\x00\x00\x00"])
def test_bad_model_is_one_line_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    out = run("chat", "--model", str(bad), "hi")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("paddock: error: not a valid GGUF model")
    assert "Traceback" not in out.stderr


def test_missing_model_is_one_line_error(tmp_path: Path) -> None:
    out = run("chat", "--model", str(tmp_path / "nope.gguf"), "hi")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "model not found" in out.stderr


def test_model_by_name_from_library(test_model: Path, paddock_home: Path) -> None:
    models = paddock_home / "data" / "models"
    models.mkdir(parents=True)
    (models / "gemma-test.gguf").symlink_to(test_model)
    out = run("chat", "--model", "gemma-test", "--json", "--temperature", "0", "--max-tokens", "8",
              "What is the capital of France?")
    assert out.returncode == 0, out.stderr
    assert "Paris" in json.loads(out.stdout)["text"]


@pytest.mark.timeout(900)
def test_selftest_checks_qt_engine_documents_and_the_window(test_model: Path) -> None:
    """The packaged app's smoke test, run here from source: every part it checks works."""
    out = subprocess.run([sys.executable, "-m", "app.cli", "--selftest", "--model", str(test_model)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    assert report["checks"]["qt"]["platform"] == "offscreen"
    assert report["checks"]["engine"]["tokens"] > 0
    assert report["checks"]["documents"]["top_hit"] == "check.pdf"
    window = report["checks"]["window"]  # the app as its own process, driven, then File > Quit
    assert window["exit_code"] == 0
    assert window["answers"] == 8
    assert window["quit_via_action"] is True
    assert report["checks"]["tools"] == {"ok": True, "s": report["checks"]["tools"]["s"], "tools": ["add"],
                                         "result": "42"}


# One per kind of trouble the corpus had: tools undefined, {% break %}, tool_calls read
# without a check, {% generation %}, a refused system role, a tool-use-only template.
EMBEDDED_TEMPLATES = (
    "Qwen-Qwen3-0.6B", "Cohere2MoE", "deepseek-ai-DeepSeek-V3.1", "LFM2.5-8B-A1B", "google-gemma-2-2b-it",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
)


@pytest.mark.parametrize("name", EMBEDDED_TEMPLATES)
def test_chat_with_a_template_in_the_model_file(
    tmp_path: Path, instruct_model: Path, chat_templates: dict[str, str], name: str
) -> None:
    """A real Hub template written into a copy of the instruct model (gguf's own tool), as a user gets it."""
    from tests.gguf_files import gguf_with_template

    model = gguf_with_template(instruct_model, tmp_path / f"{name}.gguf", chat_templates[name])
    out = run("chat", "--model", str(model), "--json", "--system", "You are brief.", "--temperature", "0",
              "--max-tokens", "8", "Name a colour.")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["template"] == "gguf"
    assert data["prompt_tokens"] > 10
    assert data["finish_reason"] in {"stop", "length"}
    if name == "google-gemma-2-2b-it":
        assert any("system prompt" in n for n in data["notices"])


def test_chat_json_has_reasoning_apart(instruct_model: Path) -> None:
    template = Path(__file__).parent.parent / "data" / "think-chatml.jinja"
    out = run("chat", "--model", str(instruct_model), "--chat-template", str(template), "--json",
              "--temperature", "0", "--max-tokens", "32", "What is 2+2?")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["template"] == "override"
    assert data["reasoning"].strip()
    assert "<think>" not in data["text"]
    assert data["reasoning"] not in data["text"]
    plain = run("chat", "--model", str(instruct_model), "--chat-template", str(template),
                "--temperature", "0", "--max-tokens", "32", "What is 2+2?")
    assert plain.returncode == 0
    assert data["reasoning"] in plain.stderr  # thinking goes to stderr, the answer alone to stdout
    assert data["reasoning"] not in plain.stdout


def run_home(home: Path, *args: str, wrap: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "PADDOCK_HOME": str(home)}
    return subprocess.run([*(wrap or []), sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_a_document_conversation_held_across_processes(tmp_path: Path, instruct_model: Path) -> None:
    """`paddock chat --collection` starts a stored chat; `--continue` follows up in a new process,
    which puts the kept state back and evaluates only the new question."""
    home = tmp_path / "home"
    notes = tmp_path / "notes"
    notes.mkdir()
    for i, topic in enumerate(("bakery", "orchard", "harbour", "library")):
        (notes / f"{topic}.md").write_text(f"# The {topic}\n\nThe {topic} opened in {1900 + i}. " * 12)
    added = run_home(home, "docs", "add", "--collection", "notes", str(notes))
    assert added.returncode == 0, added.stderr
    first = run_home(home, "chat", "--model", str(instruct_model), "--collection", "notes", "--json",
                     "--temperature", "0", "--max-tokens", "16", "--ctx", "4096", "When did the orchard open?")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert one["sources"] >= 4
    assert one["prompt_evaluated"] == one["prompt_tokens"]
    follow = run_home(home, "chat", "--continue", "--json", "--temperature", "0", "--max-tokens", "16",
                      "--ctx", "4096", "And the harbour?")
    assert follow.returncode == 0, follow.stderr
    two = json.loads(follow.stdout)
    assert two["chat"] == one["chat"]
    assert two["prompt_reused"] >= one["prompt_tokens"]
    assert two["prompt_evaluated"] < 60
    listed = run_home(home, "chat", "--list", "--json")
    (chat,) = json.loads(listed.stdout)
    assert chat["title"] == "When did the orchard open?"
    third = run_home(home, "chat", "--chat", str(chat["id"]), "--json", "--temperature", "0", "--max-tokens", "8",
                     "--ctx", "4096", "Thanks.")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["prompt_evaluated"] < 40
    from app.store.chats import ChatStore

    store = ChatStore(home / "data" / "paddock.sqlite3")
    try:
        roles = [m.role for m in store.messages(chat["id"])]
        assert roles == ["user", "assistant"] * 3
    finally:
        store.close()


def test_continue_without_a_chat_is_one_line_error(tmp_path: Path) -> None:
    out = run_home(tmp_path / "home", "chat", "--continue", "hello")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "no stored chat" in out.stderr


def test_full_disk_skips_the_kept_state_and_loses_nothing(tmp_path: Path, instruct_model: Path) -> None:
    """A real full disk: the state folder is a 1 MB tmpfs in this process' own mount namespace."""
    import os
    import shutil

    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("a private tmpfs needs unshare and root")
    home = tmp_path / "home"
    states = home / "cache" / "kv-states"
    states.mkdir(parents=True)
    wrap = ["unshare", "--mount", "sh", "-c", f'mount -t tmpfs -o size=1m none "{states}" && exec "$@"', "sh"]
    long_question = "Tell me about the sea. " * 40
    first = run_home(home, "chat", "--model", str(instruct_model), "--new", "--json",
                     "--temperature", "0", "--max-tokens", "8", "--ctx", "4096", long_question, wrap=wrap)
    assert first.returncode == 0, first.stderr
    assert "could not keep a conversation state on disk" in first.stderr
    assert "No space left on device" in first.stderr
    follow = run_home(home, "chat", "--continue", "--json", "--temperature", "0", "--max-tokens", "8",
                      "--ctx", "4096", "More?", wrap=wrap)
    assert follow.returncode == 0, follow.stderr
    assert json.loads(follow.stdout)["prompt_evaluated"] == json.loads(follow.stdout)["prompt_tokens"]
    assert list(states.iterdir()) == []  # outside the namespace: nothing was written here
