"""``paddock models ...``: the model manager from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from app.errors import LicenseNotAcceptedError, PaddockError
from app.models.download import Progress, human_size


def add_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="search, download, import and quantize models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def hub_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint", default=None, help="Hugging Face compatible hub (default: huggingface.co)")

    search = msub.add_parser("search", help="search Hugging Face for GGUF models")
    search.add_argument("query", nargs="?", default="")
    search.add_argument("--sort", choices=["downloads", "likes", "recent"], default="downloads")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--json", action="store_true")
    hub_args(search)

    files = msub.add_parser("files", help="the GGUF variants of a repo with size and fit on this machine")
    files.add_argument("repo_id")
    files.add_argument("--ctx", type=int, default=None, help="context length for the fit estimate")
    files.add_argument("--json", action="store_true")
    hub_args(files)

    lic = msub.add_parser("license", help="show a repo's license; --accept records your acceptance")
    lic.add_argument("repo_id")
    lic.add_argument("--accept", action="store_true")
    hub_args(lic)

    pull = msub.add_parser("pull", help="download a model (resumable, sha256-verified)")
    pull.add_argument("repo_id")
    pull.add_argument("file", nargs="?", default=None, help="file name or quant (default: the recommended one)")
    pull.add_argument("--accept-license", action="store_true", help="accept the license shown without asking")
    hub_args(pull)

    lst = msub.add_parser("list", help="the models in your library")
    lst.add_argument("--json", action="store_true")

    rm = msub.add_parser("rm", help="delete a model from the library (files in Paddock's folder are deleted)")
    rm.add_argument("id")

    imp = msub.add_parser("import", help="add a GGUF file to the library")
    imp.add_argument("path")
    imp.add_argument("--link", action="store_true", help="leave the file where it is instead of copying it")

    quant = msub.add_parser("quantize", help="(re)quantize a GGUF with llama.cpp")
    quant.add_argument("src", help="a path or library id")
    quant.add_argument("--type", required=True, help="Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, ...")
    quant.add_argument("--out", default=None)

    token = msub.add_parser("token", help="set (from stdin), check or clear your Hugging Face token")
    token.add_argument("action", choices=["set", "status", "clear"])
    hub_args(token)


def _client(args: argparse.Namespace) -> Any:
    from app.models.auth import token_store
    from app.models.hub import HubClient

    return HubClient(args.endpoint, token_store().get())


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def _search(args: argparse.Namespace) -> int:
    results = _client(args).search(args.query, sort=args.sort, limit=args.limit)
    if args.json:
        _print_json([{"repo_id": r.repo_id, "downloads": r.downloads, "likes": r.likes,
                      "last_modified": r.last_modified.isoformat() if r.last_modified else None,
                      "gated": r.gated, "license": r.license} for r in results])
        return 0
    if not results:
        print("no GGUF models found")
    for r in results:
        gated = "  gated" if r.gated else ""
        print(f"{r.repo_id:60} {r.downloads:>10,} downloads {r.likes:>6,} likes  {r.license or ''}{gated}")
    return 0


def _files(args: argparse.Namespace) -> int:
    from app.models.variants import list_variants

    client = _client(args)
    listing = list_variants(client, client.details(args.repo_id), n_ctx=args.ctx)
    if args.json:
        _print_json([{"name": v.name, "quant": v.quant, "size": v.size, "files": [f.name for f in v.files],
                      "fit": v.fit, "fit_label": v.fit_label, "n_ctx": v.n_ctx, "estimated_bytes": v.total_bytes,
                      "recommended": v.recommended} for v in listing.variants])
        return 0
    if not listing.variants:
        print(f"{args.repo_id} has no GGUF files")
    for v in listing.variants:
        mark = "★" if v.recommended else " "
        parts = f" ({len(v.files)} parts)" if v.split else ""
        print(f"{mark} {v.quant:10} {human_size(v.size):>9}  {v.fit_label:28} {v.name}{parts}")
    for name in listing.rejected:
        print(f"note: ignored unsafe file name {name!r}", file=sys.stderr)
    if listing.variants and listing.shape is not None and listing.recommended is None:
        print("note: no variant fits this machine's memory", file=sys.stderr)
    if listing.shape is None and listing.variants:
        print("note: fit unknown (the file header could not be read; a gated repo needs your token)",
              file=sys.stderr)
    return 0


def _show_license(lic: Any) -> None:
    print(f"License: {lic.name} ({lic.license_id})" + (f" — {lic.url}" if lic.url else ""))
    if lic.gated_prompt:
        print(f"\n{lic.gated_prompt}\n")
    text = lic.text if len(lic.text) < 4000 else lic.text[:4000] + f"\n[... {len(lic.text) - 4000:,} more characters]"
    print(f"--- {lic.source} ---\n{text}\n---")
    if lic.note:
        print(lic.note)
    for cond in lic.conditions:
        print(f"  • {cond}")


def _license(args: argparse.Namespace) -> int:
    from app.models.library import Library
    from app.models.licenses import describe

    client = _client(args)
    lic = describe(client.details(args.repo_id), client)
    _show_license(lic)
    library = Library()
    try:
        if args.accept:
            acc = library.accept(lic)
            print(f"Accepted {lic.name} for {lic.repo_id} (sha256 {acc.text_sha256[:12]}…).")
        elif library.accepted(lic):
            print("You have accepted this license.")
        else:
            print("Not accepted yet: run with --accept after reading it.")
    finally:
        library.close()
    return 0


def _pull(args: argparse.Namespace) -> int:
    from app.models.download import DownloadTask
    from app.models.library import Library
    from app.models.licenses import describe
    from app.models.variants import list_variants

    client = _client(args)
    details = client.details(args.repo_id)
    listing = list_variants(client, details)
    variant = listing.find(args.file) if args.file else listing.recommended
    if variant is None:
        names = ", ".join(v.quant for v in listing.variants) or "none"
        raise PaddockError(f"no GGUF file {args.file!r} in {args.repo_id} (variants: {names})" if args.file
                           else f"{args.repo_id} has no GGUF variant that fits this machine (variants: {names})")
    library = Library()
    try:
        lic = describe(details, client)
        acceptance = library.accepted(lic)
        if acceptance is None:
            _show_license(lic)
            if args.accept_license:
                acceptance = library.accept(lic)
            elif sys.stdin.isatty():
                answer = input(f"Accept the {lic.name} for {args.repo_id}? [y/N] ").strip().lower()
                if answer in ("y", "yes"):
                    acceptance = library.accept(lic)
            if acceptance is None:
                raise LicenseNotAcceptedError(
                    f"the license of {args.repo_id} was not accepted: read it above, then run again with "
                    "--accept-license")
        record = library.queue_download(details, variant, acceptance)
        print(f"Downloading {variant.name} ({human_size(variant.size)}, {variant.fit_label}) into "
              f"{record.dest_dir}", file=sys.stderr)
        task = DownloadTask(library.registry, record, client, on_progress=_progress_printer())
        try:
            model = task.run()
        except KeyboardInterrupt:
            task.pause()
            library.registry.update_download(record.id, status="paused")
            print("\npaused: run the same command again to resume", file=sys.stderr)
            return 130
        sys.stderr.write("\n")
        if model is None:
            return 1
        print(f"Added to your library as #{model.id}: {model.path}")
        if lic.needs_attribution:
            print("Remember: products built with this model must display \"Built with Llama\".")
        return 0
    finally:
        library.close()


def _progress_printer() -> Any:
    last = [0.0]

    def show(p: Progress) -> None:
        now = time.monotonic()
        if p.state == "downloading" and now - last[0] < 0.5:
            return
        last[0] = now
        eta = f", {p.eta:.0f} s left" if p.eta is not None else ""
        speed = f", {human_size(p.speed)}/s" if p.speed else ""
        extra = f" — {p.message}" if p.message else ""
        sys.stderr.write(f"\r{p.state:12} {human_size(p.done):>9} / {human_size(p.total)} "
                         f"({p.fraction:5.1%}{speed}{eta}){extra}   ")
        sys.stderr.flush()

    return show


def _list(args: argparse.Namespace) -> int:
    from app.models.library import Library

    library = Library()
    try:
        models = library.models()
    finally:
        library.close()
    if args.json:
        _print_json([{"id": m.id, "name": m.name, "path": str(m.path), "source": m.source, "repo_id": m.repo_id,
                      "quant": m.quant, "size": m.size, "sha256": m.sha256, "parent_id": m.parent_id,
                      "license": m.license_id, "exists": m.path.exists(), **m.meta} for m in models])
        return 0
    if not models:
        print("no models yet: `paddock models pull REPO` or `paddock models import FILE.gguf`")
    for m in models:
        missing = "  (file missing)" if not m.path.exists() else ""
        print(f"#{m.id:<4} {m.name:50} {m.quant or '?':8} {human_size(m.size):>9}  {m.source:9} "
              f"{m.license_id or ''}{missing}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    from app.models.library import Library

    if not args.id.isdigit():
        raise PaddockError("give the model's library id (see `paddock models list`)")
    library = Library()
    try:
        print(library.delete(int(args.id)))
    finally:
        library.close()
    return 0


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.models.library import Library

    library = Library()
    try:
        model = library.import_file(Path(args.path), link=args.link)
    finally:
        library.close()
    print(f"Added #{model.id}: {model.name} ({model.quant}, {human_size(model.size)}) at {model.path}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.models.library import Library
    from app.models.quantize import QuantizeJob, register_quantized

    library = Library()
    try:
        src = library.resolve(args.src)
    finally:
        library.close()

    def progress(done: int, total: int) -> None:
        sys.stderr.write(f"\rquantizing tensor {done}/{total}   ")
        sys.stderr.flush()

    job = QuantizeJob(src, args.type, Path(args.out) if args.out else None, progress)
    for warning in job.advice.warnings:
        print(f"note: {warning}", file=sys.stderr)
    job.run()
    model = register_quantized(job)
    sys.stderr.write("\n")
    print(f"Added #{model.id}: {model.path} ({human_size(model.size)}, {model.quant}, from {job.info.quantization})")
    return 0


def _token(args: argparse.Namespace) -> int:
    import getpass

    from app.models.auth import token_store

    store = token_store()
    if args.action == "clear":
        store.clear()
        print("Token removed from the keyring.")
        return 0
    if args.action == "set":
        token = getpass.getpass("Hugging Face token: ") if sys.stdin.isatty() else sys.stdin.readline()
        result = store.save(token)
        print(result.message)
        if not result.persistent:
            print("For the command line, set HF_TOKEN in the environment instead.", file=sys.stderr)
        return 0 if result.persistent else 1
    source = store.source()
    if source == "none":
        print("No Hugging Face token: gated models (Llama) need one; `paddock models token set`.")
        return 0
    print(f"Token from the {source}; signed in as {_client(args).whoami()}.")
    return 0


HANDLERS = {
    "search": _search, "files": _files, "license": _license, "pull": _pull, "list": _list, "rm": _rm,
    "import": _import, "quantize": _quantize, "token": _token,
}


def run(args: argparse.Namespace) -> int:
    return HANDLERS[args.models_command](args)
