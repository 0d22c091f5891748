"""``paddock serve``: models behind OpenAI's and Ollama's APIs on this machine (app/api)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from app.cli.chat import add_lora_argument, add_worker_option, lora_adapters, workers_of
from app.cli.experts import add_expert_args, n_cpu_moe
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
    add_expert_args(serve)
    add_worker_option(serve)
    add_lora_argument(serve)
    serve.add_argument("--mmproj", default=None, metavar="FILE",
                       help="with --model: its image projector, so requests may carry images (default: the "
                            "mmproj-*.gguf beside the model)")


def run(args: argparse.Namespace) -> int:
    import os

    from app.api import ApiServer
    from app.api.models import ModelPool, entries_for, library_entries
    from app.engine.lora import check_adapter
    from app.engine.projectors import check_projector
    from app.engine.types import LoadSettings
    from app.models.library import loadable_model

    api_key = args.api_key or os.environ.get("PADDOCK_API_KEY") or None
    settings = LoadSettings(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers,
                            n_cpu_moe=n_cpu_moe(args), workers=workers_of(args))
    if args.lora and not args.model:
        raise PaddockError("--lora applies to one model: name it with --model (an adapter fits only its base model)")
    if args.mmproj and not args.model:
        raise PaddockError("--mmproj goes with --model (library models are paired with their projectors)")
    if args.model:
        model = loadable_model(args.model)
        adapters = lora_adapters(args)
        for adapter in adapters:  # a bad adapter stops the server before it listens
            check_adapter(adapter.path, model)
        mmproj = Path(args.mmproj) if args.mmproj else None
        if mmproj is not None:
            check_projector(model, mmproj)  # refused before the server starts
        entries = [dataclasses.replace(e, adapters=tuple(adapters))
                   for e in entries_for([(model, None, None)], mmproj=mmproj)]
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
            sees = ", sees images" if lease.loaded.vision else ""
            what = f"{preload.id} ({lease.loaded.backend}, context {lease.loaded.n_ctx}{sees})"
            if preload.adapters:
                what += " with LoRA " + ", ".join(f"{Path(a.path).name}×{a.scale:g}" for a in preload.adapters)
        else:
            what = f"{len(entries)} models from the library, each loaded on request"
        print(f"Serving {what} at http://{args.host}:{args.port}/v1 (OpenAI) and http://{args.host}:{args.port}/api "
              "(Ollama)" + (" (API key required)" if api_key else ""), file=sys.stderr)
        server.serve_forever()
    finally:
        pool.close()
    return 0
