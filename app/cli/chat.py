"""``paddock chat``: one question, or a turn in a stored conversation (the window's chats).

    paddock chat --model M "question"                  # one-off, nothing stored
    paddock chat --model M --new "question"            # a new stored chat
    paddock chat --model M --collection NAME "question"  # a new stored chat with documents
    paddock chat --continue "follow-up"                # the next turn of the last chat
    paddock chat --chat 12 --json "follow-up"          # a turn in chat 12
    paddock chat --list                                # the stored chats

A stored turn is written like the window writes it (the question, then the
answer as it grows), and the conversation's earlier turns are sent exactly as
they were sent, so the engine's kept states make a follow-up in a new process
evaluate only its own tokens (``prompt_evaluated`` / ``prompt_reused`` in
``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.errors import EngineCrashedError, PaddockError


def add_parser(sub: Any) -> None:
    chat = sub.add_parser("chat", help="ask a model a question and stream the answer (also in a stored chat)")
    chat.add_argument("--model", default=None, help="path to a .gguf file, or a model in the library "
                      "(with --chat / --continue: default the chat's model)")
    where = chat.add_mutually_exclusive_group()
    where.add_argument("--chat", type=int, default=None, metavar="ID",
                       help="add this turn to stored chat ID (the window's chats; ids in `paddock chat --list`)")
    where.add_argument("--continue", dest="continue_last", action="store_true",
                       help="add this turn to the most recent stored chat")
    where.add_argument("--new", dest="new_chat", action="store_true",
                       help="start a new stored chat with this turn (shown in the window; --continue follows up)")
    where.add_argument("--list", dest="list_chats", action="store_true", help="list the stored chats and exit")
    chat.add_argument("--collection", default=None, metavar="NAME",
                      help="answer from this indexed document collection (`paddock docs add`); the turn is "
                           "stored, so --continue can follow up")
    chat.add_argument("--system", default="", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=512)
    chat.add_argument("--temperature", type=float, default=0.7)
    chat.add_argument("--top-p", type=float, default=0.95)
    chat.add_argument("--seed", type=int, default=None)
    chat.add_argument("--ctx", type=int, default=None, help="context length (default: from model and memory)")
    chat.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    chat.add_argument("--gpu-layers", type=int, default=None, help="layers to offload (-1 all, 0 none)")
    chat.add_argument("--raw", action="store_true", help="plain text completion, no chat template")
    think = chat.add_mutually_exclusive_group()
    think.add_argument("--think", dest="think", action="store_const", const=True, default=None,
                       help="let a reasoning model think first (templates with a thinking switch)")
    think.add_argument("--no-think", dest="think", action="store_const", const=False,
                       help="ask a reasoning model to answer without thinking")
    chat.add_argument("--chat-template", metavar="FILE", default=None,
                      help="use this Jinja chat template instead of the one in the model file")
    chat.add_argument("--json", action="store_true", help="print one JSON object with text and figures")
    chat.add_argument("prompt", nargs="?", default=None, help="the message")


def run(args: argparse.Namespace) -> int:
    from app import paths
    from app.store.chats import ChatStore

    if args.list_chats:
        store = ChatStore(paths.database_path())
        try:
            return _list(store, args)
        finally:
            store.close()
    if not args.prompt:
        raise PaddockError("give the message to send (paddock chat ... \"your question\")")
    if args.max_tokens <= 0:
        raise PaddockError("--max-tokens must be a positive number")
    stored = args.chat is not None or args.continue_last or args.new_chat or args.collection is not None
    if stored and args.raw:
        raise PaddockError("--raw is a plain completion: it cannot be a turn of a stored chat")
    if not stored:
        if args.model is None:
            raise PaddockError("choose a model with --model (or continue a stored chat with --continue)")
        return _one_off(args)
    store = ChatStore(paths.database_path())
    try:
        return _stored_turn(store, args)
    finally:
        store.close()


def _list(store: Any, args: argparse.Namespace) -> int:
    convs = store.conversations()
    if args.json:
        print(json.dumps([{"id": c.id, "title": c.title, "model": c.model, "updated_at": c.updated_at}
                          for c in convs], ensure_ascii=False))
        return 0
    for c in convs:
        print(f"{c.id:5}  {c.title}  ({Path(c.model).name if c.model else 'no model'})")
    return 0


def _params(args: argparse.Namespace) -> Any:
    from app.engine.types import SamplingParams

    return SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                          seed=args.seed, enable_thinking=args.think)


def _settings(args: argparse.Namespace) -> Any:
    from app.engine.types import LoadSettings

    template = None
    if args.chat_template:
        try:
            template = Path(args.chat_template).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PaddockError(f"cannot read the chat template {args.chat_template}: {exc}") from exc
    return LoadSettings(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers, chat_template=template)


def _one_off(args: argparse.Namespace) -> int:
    from app.engine.client import Engine
    from app.engine.types import ChatMessage
    from app.models.library import loadable_model

    path = loadable_model(args.model)
    messages = [ChatMessage("system", args.system)] if args.system else []
    messages.append(ChatMessage("user", args.prompt))
    with Engine() as engine:
        loaded = engine.load(str(path), _settings(args))
        result = _stream(engine, loaded, messages, _params(args), args, raw=args.prompt if args.raw else None)
        _report(args, loaded, result, {})
    return 0


def _stored_turn(store: Any, args: argparse.Namespace) -> int:
    """Add the question and the answer to a stored conversation, as the window does."""
    from app.docs.service import Documents

    docs = Documents(embed_model=None)  # each collection keeps its own embedding model
    try:
        return _turn(store, docs, args)
    finally:
        docs.close()


def _turn(store: Any, docs: Any, args: argparse.Namespace) -> int:
    from app.docs.prompt import documents_turn
    from app.engine.client import Engine
    from app.engine.types import ChatMessage
    from app.models.library import loadable_model
    from app.store.chats import latest_sources, sent_history, title_from

    collection = docs.collection_for(args.collection) if args.collection is not None else None
    if args.chat is not None:
        conv = store.conversation(args.chat)
    elif args.continue_last:
        convs = store.conversations()
        if not convs:
            raise PaddockError("there is no stored chat to continue: start one with --new or --collection")
        conv = convs[0]
    else:
        if args.model is None:
            raise PaddockError("choose a model for the new chat with --model")
        conv = store.create_conversation(model=str(loadable_model(args.model)), system_prompt=args.system)
    model = str(loadable_model(args.model)) if args.model else conv.model
    if not model:
        raise PaddockError(f"chat {conv.id} has no model: choose one with --model")
    if model != conv.model:
        conv = store.update_conversation(conv.id, model=model)
    if collection is not None:
        docs.index.attach(conv.id, collection.id)
    collections = docs.index.attached(conv.id)  # also those attached in the window
    history = store.messages(conv.id)
    question = store.add_message(conv.id, "user", args.prompt.strip())
    if conv.title == "New chat":
        store.update_conversation(conv.id, title=title_from(args.prompt))
    system = args.system or conv.system_prompt
    messages = [*sent_history(system, history), ChatMessage("user", question.content)]
    with Engine() as engine:
        loaded = engine.load(model, _settings(args))
        sources: list[dict[str, Any]] = []
        if collections:
            turn = documents_turn(docs.retriever, collections, messages, loaded.n_ctx, latest_sources(history))
            messages, sources = turn.messages, turn.sources
            if turn.sent is not None:
                store.update_message(question.id, sent=turn.sent)
            for notice in turn.notices:
                if not args.json:
                    print(f"note: {notice}", file=sys.stderr)
        answer = store.add_message(conv.id, "assistant", "", status="streaming", model=model)
        try:
            result = _stream(engine, loaded, messages, _params(args), args)
        except EngineCrashedError as exc:
            store.update_message(answer.id, content=exc.partial_text, status="error", error=str(exc))
            raise
        except PaddockError as exc:
            store.update_message(answer.id, status="error", error=str(exc))
            raise
        status = "interrupted" if result.stats.finish_reason == "cancelled" else "complete"
        store.update_message(answer.id, content=result.text, status=status, stats=result.stats.to_dict(),
                             reasoning=result.reasoning, sources=sources or None)
        store.touch(conv.id)
        _report(args, loaded, result, {"chat": conv.id, "sources": len(sources)})
        if not args.json:
            print(f"note: chat {conv.id}; follow up with: paddock chat --continue \"...\"", file=sys.stderr)
    return 0


def _stream(engine: Any, loaded: Any, messages: list[Any], params: Any, args: argparse.Namespace, *,
            raw: str | None = None) -> Any:
    """Stream the answer to stdout and a reasoning model's thinking to stderr (dimmed on a
    terminal), so that ``paddock chat ... > answer.txt`` keeps only the answer."""
    if not args.json:
        for notice in loaded.notices:
            print(f"note: {notice}", file=sys.stderr)
    gen = engine.stream(messages, params, raw_prompt=raw)
    thinking = False
    try:
        for kind, chunk in gen.deltas():
            if args.json:
                continue
            if kind == "thinking":
                if not thinking:
                    sys.stderr.write(_dim("Thinking: ", sys.stderr))
                    thinking = True
                sys.stderr.write(_dim(chunk, sys.stderr))
                sys.stderr.flush()
                continue
            if thinking:
                sys.stderr.write("\n\n")
                thinking = False
            sys.stdout.write(chunk)
            sys.stdout.flush()
        if thinking:
            sys.stderr.write("\n")
    except KeyboardInterrupt:
        engine.cancel()
        for _ in gen:  # drain to the Done event; the child stops within one token
            pass
    except EngineCrashedError as exc:
        if not args.json and exc.partial_text:
            sys.stdout.write("\n")
        raise
    assert gen.result is not None
    return gen.result


def _report(args: argparse.Namespace, loaded: Any, result: Any, extra: dict[str, Any]) -> None:
    if not args.json:
        sys.stdout.write("\n")
        for notice in result.notices:
            print(f"note: {notice}", file=sys.stderr)
        return
    s = result.stats
    out: dict[str, Any] = {
        "text": result.text,
        "prompt_tokens": s.prompt_tokens,
        "prompt_evaluated": s.prompt_evaluated,
        "prompt_reused": s.prompt_reused,
        "completion_tokens": s.completion_tokens,
        "ttft_s": round(s.ttft_s, 4),
        "tokens_per_s": round(s.tokens_per_s, 2),
        "load_s": round(loaded.load_s, 4),
        "backend": loaded.backend,
        "finish_reason": s.finish_reason,
        "model": loaded.name,
        "n_ctx": loaded.n_ctx,
        "template": loaded.template_source,
        "notices": list(loaded.notices + result.notices),
        **extra,
    }
    if result.reasoning:
        out["reasoning"] = result.reasoning
        out["reasoning_s"] = round(result.reasoning_s, 3)
    print(json.dumps(out, ensure_ascii=False))


def _dim(text: str, stream: Any) -> str:
    return f"\x1b[2m{text}\x1b[0m" if getattr(stream, "isatty", lambda: False)() else text
