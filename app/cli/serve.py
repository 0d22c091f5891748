"""``paddock serve``: the model behind an OpenAI-compatible API on this machine."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve a model over an OpenAI-compatible API")
    serve.add_argument("--model", required=True, help="path to a .gguf file, or a model in the library")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (other than loopback: needs a key)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY)")
    serve.add_argument("--ctx", type=int, default=None, help="context length (default: from model and memory)")
    serve.add_argument("--threads", type=int, default=None)
    serve.add_argument("--gpu-layers", type=int, default=None)


def run(args: argparse.Namespace) -> int:
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
