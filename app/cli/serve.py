"""``paddock serve``: models behind OpenAI's and Ollama's APIs on this machine (app/api)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.errors import PaddockError


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve models over OpenAI's and Ollama's APIs (for other programs)")
    serve.add_argument("--model", default=None,
                       help="serve this model (a path or a model in the library); default: the whole library, "
                            "each model loaded when a request names it")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (other than loopback: needs a key)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY)")
    serve.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                       help="let web pages from this origin (e.g. http://localhost:3000) use the API from a browser "
                            "(repeatable; none by default)")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="with --host other than loopback: also answer requests addressed to this host name")
    serve.add_argument("--max-models", type=int, default=None, metavar="N",
                       help="keep at most N models loaded (default: as many as memory allows)")
    serve.add_argument("--ctx", type=int, default=None, help="context length (default: from model and memory)")
    serve.add_argument("--threads", type=int, default=None)
    serve.add_argument("--gpu-layers", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    import os

    from app.api import ApiServer
    from app.api.models import ModelPool, entries_for, library_entries
    from app.engine.types import LoadSettings
    from app.models.library import loadable_model

    api_key = args.api_key or os.environ.get("PADDOCK_API_KEY") or None
    settings = LoadSettings(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
    if args.model:
        entries = entries_for([(loadable_model(args.model), None, None)])
        preload = entries[0]
    else:
        entries, preload = library_entries(), None
        if not entries:
            raise PaddockError("the library has no models yet: download one in the app or with `paddock models "
                               "pull`, or name a file with --model")
    if args.max_models is not None and args.max_models < 1:
        raise PaddockError("--max-models must be at least 1")
    pool = ModelPool(entries, settings, max_models=args.max_models)
    try:
        # refuses open binds without a key before anything loads
        server = ApiServer(pool, host=args.host, port=args.port, api_key=api_key, allow_hosts=args.allow_host,
                           cors=args.cors)
        if preload is not None:
            lease = pool.lease(preload.id)
            lease.release()
            what = f"{preload.id} ({lease.loaded.backend}, context {lease.loaded.n_ctx})"
        else:
            what = f"{len(entries)} models from the library, each loaded on request"
        print(f"Serving {what} at http://{args.host}:{args.port}/v1 (OpenAI) and http://{args.host}:{args.port}/api "
              "(Ollama)" + (" (API key required)" if api_key else ""), file=sys.stderr)
        server.serve_forever()
    finally:
        pool.close()
    return 0
