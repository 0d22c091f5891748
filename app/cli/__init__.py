"""The ``paddock`` command: the desktop app, or the same core from a terminal.

Every failure a user can cause (bad path, not a GGUF, context overflow, crash
of the engine) ends in one line on stderr and a non-zero exit code, never a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
from collections.abc import Sequence
from pathlib import Path

from app import __version__
from app.errors import PaddockError

log = logging.getLogger("paddock.cli")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddock",
        description="Private chat with open-weight language models. Run without a command to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"paddock {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: llama.cpp too)")
    parser.add_argument("--selftest", action="store_true",
                        help="check this installation headless (Qt offscreen, --model loads and generates, "
                             "documents index) and exit")
    parser.add_argument("--model", dest="selftest_model", default=None, help=argparse.SUPPRESS)
    # The autopilot (app/ui/autopilot.py): the real window streams N answers, then quits via File > Quit.
    parser.add_argument("--drive", type=int, default=None, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--drive-chats", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--drive-max-tokens", type=int, default=160, help=argparse.SUPPRESS)
    parser.add_argument("--drive-report", type=Path, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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

    from app.cli import docs, models

    models.add_parser(sub)
    docs.add_parser(sub)

    serve = sub.add_parser("serve", help="serve a model over an OpenAI-compatible API")
    serve.add_argument("--model", required=True, help="path to a .gguf file, or a model in the library")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (other than loopback: needs a key)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY)")
    serve.add_argument("--ctx", type=int, default=None, help="context length (default: from model and memory)")
    serve.add_argument("--threads", type=int, default=None)
    serve.add_argument("--gpu-layers", type=int, default=None)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)  # the app's log file takes INFO later; the terminal stays at this level
    if verbosity < 2:
        logging.getLogger("paddock.llama").setLevel(logging.ERROR)


def _serve(args: argparse.Namespace) -> int:
    import os

    from app.engine.client import Engine
    from app.engine.types import LoadSettings
    from app.models.library import loadable_model
    from app.server import ApiServer

    api_key = args.api_key or os.environ.get("PADDOCK_API_KEY") or None
    path = loadable_model(args.model)
    with Engine() as engine:
        server = ApiServer(engine, host=args.host, port=args.port, api_key=api_key)  # refuses open binds first
        loaded = engine.load(str(path), LoadSettings(n_ctx=args.ctx, n_threads=args.threads,
                                                     n_gpu_layers=args.gpu_layers))
        print(f"Serving {loaded.name} ({loaded.backend}, context {loaded.n_ctx}) at "
              f"http://{args.host}:{args.port}/v1" + (" (API key required)" if api_key else ""), file=sys.stderr)
        server.serve_forever()
    return 0


def _gui(args: argparse.Namespace) -> int:
    from app.ui.main import run_app

    if args.drive is None:
        return run_app()
    from app.ui.autopilot import DrivePlan

    if not args.selftest_model:
        raise PaddockError("--drive needs --model PATH")
    return run_app(drive=DrivePlan(model=args.selftest_model, answers=args.drive, chats=args.drive_chats,
                                   max_tokens=args.drive_max_tokens, report=args.drive_report))


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # packaged builds start the engine child through this
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if args.selftest:
        from app.selftest import run

        return run(args.selftest_model)
    from app.cli import chat, docs, models

    handlers = {"chat": chat.run, "models": models.run, "docs": docs.run, "serve": _serve, None: _gui}
    try:
        return handlers[args.command](args)
    except PaddockError as exc:
        print(f"paddock: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("paddock: interrupted", file=sys.stderr)
        return 130

