"""``paddock worker``: lend this machine's device (GPU, else CPU) to Paddock on another computer.

    paddock worker                                   # 127.0.0.1:50052 (reach it by SSH tunnel)
    paddock worker --host 0.0.0.0 --allow 192.168.1.10    # on the LAN, for that one computer

llama.cpp's RPC server runs in a child process on a private loopback port; a gate
(:mod:`app.engine.worker_gate`) listens at ``--host:--port`` and lets only allowed clients
through. The RPC protocol has no password: run a worker on a trusted network only.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import Any

from app.errors import PaddockError


def add_parser(sub: Any) -> None:
    from app.engine.rpc import DEFAULT_PORT

    worker = sub.add_parser(
        "worker", help="lend this machine's GPU or CPU to Paddock on another computer (llama.cpp RPC)",
        description="Serve this machine's best device (a GPU when there is one, else the CPU) to Paddock on "
                    "another computer, which spreads a model's layers over its own device and its workers "
                    "(paddock chat|serve --worker HOST:PORT). llama.cpp's RPC protocol has no password: "
                    "use it on a trusted network only, or through an SSH tunnel.")
    worker.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default loopback; any other needs --allow)")
    worker.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    worker.add_argument("--threads", type=int, default=None, help="CPU threads when serving the CPU "
                        "(default: physical cores)")
    worker.add_argument("--allow", action="append", default=[], metavar="ADDR",
                        help="a client address, network (192.168.1.0/24) or host name allowed to connect "
                             "(repeatable); required to listen on anything but loopback")
    worker.add_argument("--no-cache", action="store_true",
                        help="keep no copy of large tensors (by default a model sent again loads from the cache)")


def run(args: argparse.Namespace) -> int:
    from app import paths
    from app.engine.hardware import GiB
    from app.engine.rpc import WorkerProcess
    from app.engine.worker_gate import WorkerGate

    if not 0 < args.port < 65536:
        raise PaddockError("--port must be between 1 and 65535")
    if args.threads is not None and args.threads < 1:
        raise PaddockError("--threads must be at least 1")
    cache = None if args.no_cache else str(paths.cache_dir() / "rpc")
    # checked before anything starts: no allow-list, no listening beyond loopback
    worker = WorkerProcess("127.0.0.1", threads=args.threads, cache_dir=cache, quiet=args.verbose < 2)
    gate = WorkerGate(worker, args.host, args.port, args.allow)
    gate.bind()
    try:
        device = worker.start()

        def stop(_signum: int, _frame: Any) -> None:
            gate.stop()

        signal.signal(signal.SIGTERM, stop)
        clients = ", ".join(args.allow) if args.allow else "this machine only (loopback)"
        print(f"Paddock worker at {gate.endpoint}: {device.name} ({device.description}), "
              f"{device.memory_free / GiB:.1f} GB free of {device.memory_total / GiB:.1f} GB. "
              f"Clients allowed: {clients}. Use it with: paddock chat --worker {gate.endpoint} ... "
              "(Ctrl+C stops)", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            gate.serve_forever()
    finally:
        gate.stop()
        worker.stop()
    return 0
