"""The ``paddock`` command: the desktop app, or the same core from a terminal.

Every failure a user can cause (bad path, not a GGUF, context overflow, crash
of the engine) ends in one line on stderr and a non-zero exit code, never a
traceback.

One module per command group: :mod:`app.cli.chat`, :mod:`app.cli.models`,
:mod:`app.cli.docs`, :mod:`app.cli.serve` and :mod:`app.cli.worker`, each with ``add_parser`` and ``run``.
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
    parser.add_argument("--drive-checkpoint", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--drive-trace-stalls", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from app.cli import chat, docs, models, serve, worker

    chat.add_parser(sub)
    models.add_parser(sub)
    docs.add_parser(sub)
    serve.add_parser(sub)
    worker.add_parser(sub)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)  # the app's log file takes INFO later; the terminal stays at this level
    if verbosity < 2:
        logging.getLogger("paddock.llama").setLevel(logging.ERROR)


def _gui(args: argparse.Namespace) -> int:
    from app.ui.main import run_app

    if args.drive is None:
        return run_app()
    from app.ui.autopilot import DrivePlan

    if not args.selftest_model:
        raise PaddockError("--drive needs --model PATH")
    return run_app(drive=DrivePlan(model=args.selftest_model, answers=args.drive, chats=args.drive_chats,
                                   max_tokens=args.drive_max_tokens, report=args.drive_report,
                                   checkpoint=args.drive_checkpoint, trace_stalls=args.drive_trace_stalls))


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # packaged builds start the engine child through this
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if args.selftest:
        from app.selftest import run

        return run(args.selftest_model)
    from app.cli import chat, docs, models, serve, worker

    handlers = {"chat": chat.run, "models": models.run, "docs": docs.run, "serve": serve.run,
                "worker": worker.run, None: _gui}
    try:
        return handlers[args.command](args)
    except PaddockError as exc:
        print(f"paddock: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("paddock: interrupted", file=sys.stderr)
        return 130
