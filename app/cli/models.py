"""``paddock models ...``: the model manager from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from app.cli.experts import add_expert_args, expert_mode
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

    fitp = msub.add_parser("fit", help="the plan (layers and MoE experts per device, context) and predicted speed")
    fitp.add_argument("model", help="a path, a library model, or a Hugging Face repo (read from its header: "
                                    "nothing is downloaded)")
    fitp.add_argument("file", nargs="?", default=None, help="with a repo: the file or quant (default: the recommended)")
    fitp.add_argument("--ctx", type=int, default=None, help="context length (default: the largest useful one)")
    fitp.add_argument("--gpu-mem", type=float, default=None, metavar="GB",
                      help="plan for a GPU with this much memory instead of this machine's (0: none)")
    fitp.add_argument("--gpu-name", default=None, metavar="NAME",
                      help="with --gpu-mem: the GPU, for its memory bandwidth (e.g. 'RTX 4090', 'H100')")
    fitp.add_argument("--kv-cache-type", choices=["f16", "q8_0", "q4_0"], default="f16")
    add_expert_args(fitp)
    fitp.add_argument("--json", action="store_true")
    hub_args(fitp)

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

    imp = msub.add_parser("import", help="add a GGUF file (a model or a LoRA adapter) to the library, or with "
                          "--scan the models LM Studio, Ollama and the Hugging Face cache already have")
    imp.add_argument("path", nargs="?", default=None)
    imp.add_argument("--scan", action="store_true",
                     help="find the GGUF models of LM Studio, Ollama and the Hugging Face cache and add them where "
                          "they are (no copy)")
    imp.add_argument("--json", action="store_true", help="with --scan: print what was found as JSON")
    imp.add_argument("--link", action="store_true", help="leave the file where it is instead of copying it")
    imp.add_argument("--base", default=None, metavar="MODEL",
                     help="a LoRA adapter's base model (path or library id); default: the library model it fits")
    imp.add_argument("--mmproj", default=None, metavar="FILE",
                     help="the model's image projector (default: an mmproj-*.gguf beside the file)")

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
                      "recommended": v.recommended, "plan": v.plan,
                      "predicted_tokens_per_s": v.predicted_tokens_per_s, "vision": listing.vision,
                      "projector": v.projector.name if v.projector and listing.vision else None,
                      "unsupported": listing.unsupported or None} for v in listing.variants])
        return 0
    if listing.unsupported:
        print(f"note: {listing.unsupported}", file=sys.stderr)
    if not listing.variants:
        print(f"{args.repo_id} has no GGUF files")
    for v in listing.variants:
        mark = "★" if v.recommended else " "
        parts = f" ({len(v.files)} parts)" if v.split else ""
        speed = f"~{v.predicted_tokens_per_s:g} tok/s" if v.predicted_tokens_per_s else ""
        sees = "  + sees images" if v.projector is not None and listing.vision else ""
        print(f"{mark} {v.quant:10} {human_size(v.size):>9}  {v.fit_label:28} {speed:>13}  {v.name}{parts}{sees}")
    for name in listing.rejected:
        print(f"note: ignored unsafe file name {name!r}", file=sys.stderr)
    if listing.variants and listing.shape is not None and listing.recommended is None:
        print("note: no variant fits this machine's memory", file=sys.stderr)
    if listing.shape is None and listing.variants:
        print("note: fit unknown (the file header could not be read; a gated repo needs your token)",
              file=sys.stderr)
    return 0


def _fit_table(args: argparse.Namespace) -> Any:
    """The model's tensor table: a local file's header, else a repo file's through Range requests."""
    from pathlib import Path

    from app.engine.placement import ModelTable
    from app.models.fit import local_table
    from app.models.library import Library

    try:
        return local_table(Library().resolve(args.model))
    except PaddockError:
        if "/" not in args.model or Path(args.model).expanduser().exists():
            raise
    from app.models.variants import group_files

    client = _client(args)
    details = client.details(args.model)
    variants, _, _ = group_files(details)
    if not variants:
        raise PaddockError(f"{args.model} has no GGUF files")
    if args.file:
        wanted = args.file.lower()
        variant = next((v for v in variants if wanted in (v.name.lower(), v.quant.lower())), None)
        if variant is None:
            raise PaddockError(f"{args.model} has no file or quant {args.file!r}: see `paddock models files`")
    else:
        from app.models.variants import PREFERRED_QUANT

        variant = next((v for v in variants if v.quant == PREFERRED_QUANT), variants[len(variants) // 2])
    metadata, tensors = client.read_gguf_header(details.repo_id, variant.files[0].name, details.commit)
    for part in variant.files[1:]:
        tensors += client.read_gguf_header(details.repo_id, part.name, details.commit)[1]
    return ModelTable.from_header(metadata, tensors, f"{details.repo_id} {variant.quant}")


def _fit(args: argparse.Namespace) -> int:
    from app.engine import hardware
    from app.engine.speed import gpu_speed
    from app.models.fit import fit, what_if

    mode, first_n = expert_mode(args)
    table = _fit_table(args)
    hw = hardware.detect()
    gpu = None
    if args.gpu_mem is not None:
        hw = what_if(hw, args.gpu_mem)
        gpu = gpu_speed(args.gpu_name)
    report = fit(table, hw, n_ctx=args.ctx, kv_type=args.kv_cache_type, mode=mode, first_n=first_n, gpu=gpu)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"{table.name}: {human_size(table.total_bytes)}, {human_size(table.active_bytes)} read per token")
        print(report.line)
        if report.placement.fit != "too_large":
            print(f"predicted: {report.prediction.decode_tokens_per_s:g} tokens/s writing, "
                  f"{report.prediction.prompt_tokens_per_s:g} tokens/s reading the prompt "
                  f"({report.prediction.basis})")
    return 0 if report.placement.fit != "too_large" else 1


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
    if listing.unsupported:
        raise PaddockError(listing.unsupported)
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
        sees = f" with its image projector {variant.projector.name}" if variant.projector is not None else ""
        print(f"Downloading {variant.name} ({human_size(variant.size)}, {variant.fit_label}){sees} into "
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
    from app.models.names import library_display_name

    library = Library()
    try:
        models = library.models()
        adapters = library.adapters()
        projectors = {m.id: library.projector_for(m.path) for m in models}
    finally:
        library.close()

    def entry(m: Any) -> dict[str, Any]:
        return {"id": m.id, "name": m.name, "path": str(m.path), "source": m.source, "repo_id": m.repo_id,
                "quant": m.quant, "size": m.size, "sha256": m.sha256, "parent_id": m.parent_id,
                "license": m.license_id, "exists": m.path.exists(), "problem": library.reference_problem(m),
                **m.meta, "gguf_name": m.meta.get("display_name"), "display_name": library_display_name(m)}

    under = {m.id: [a for a in adapters if a.meta.get("base_id") == m.id] for m in models}
    loose = [a for a in adapters if a.meta.get("base_id") not in under]
    if args.json:
        _print_json([{**entry(m), "adapters": [entry(a) for a in under[m.id]], "vision": projectors[m.id] is not None,
                      "mmproj": str(projectors[m.id]) if projectors[m.id] else None} for m in models]
                    + [{**entry(a), "adapters": []} for a in loose])
        return 0
    if not models and not adapters:
        print("no models yet: `paddock models pull REPO` or `paddock models import FILE.gguf`")
    for m in models:
        problem = library.reference_problem(m)
        missing = f"  ({problem})" if problem else "  (file missing)" if not m.path.exists() else ""
        app = f"  in {m.meta['app']}: {m.meta.get('location')}" if m.meta.get("app") else ""
        sees = "  sees images" if projectors[m.id] is not None else ""
        print(f"#{m.id:<4} {library_display_name(m):50} {m.quant or '?':8} {human_size(m.size):>9}  {m.source:9} "
              f"{m.license_id or ''}{sees}{app}{missing}")
        for a in under[m.id]:
            print(f"  └ #{a.id:<4} LoRA {a.name:43} {human_size(a.size):>9}  {a.source:9}")
    for a in loose:
        print(f"#{a.id:<4} LoRA {a.name:45} {human_size(a.size):>9}  {a.source:9} "
              f"(no base model in the library: {a.meta.get('architecture')})")
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

    from app.engine.gguf_file import read_gguf
    from app.models.library import Library

    if args.scan:
        if args.path or args.base or args.link:
            raise PaddockError("--scan finds the models itself: give no file (and no --base or --link)")
        return _import_scan(args)
    if not args.path:
        raise PaddockError("give the GGUF file to import, or --scan to find other apps' models")
    library = Library()
    try:
        if read_gguf(Path(args.path).expanduser()).get("general.type") == "adapter":
            adapter = library.import_adapter(Path(args.path), args.base, link=args.link)
            base_id = adapter.meta.get("base_id")
            base = f"for #{base_id} {library.registry.model(base_id).name}" if base_id else \
                "(no model it fits is in the library yet)"
            print(f"Added LoRA adapter #{adapter.id}: {adapter.name} {base} at {adapter.path}")
            return 0
        if args.base:
            raise PaddockError("--base is for LoRA adapters, and this file is a model")
        if args.base and args.mmproj:
            raise PaddockError("--mmproj is for models, --base for LoRA adapters: give one")
        model = library.import_file(Path(args.path), link=args.link,
                                    mmproj=Path(args.mmproj) if args.mmproj else None)
        projector = library.projector_for(model.path)
    finally:
        library.close()
    sees = f"; sees images with {projector.name}" if projector is not None else ""
    print(f"Added #{model.id}: {model.name} ({model.quant}, {human_size(model.size)}) at {model.path}{sees}")
    return 0


def _import_scan(args: argparse.Namespace) -> int:
    from app.models.library import Library
    from app.models.other_apps import default_locations, scan_all

    locations = default_locations()
    found = scan_all(locations)
    library = Library()
    try:
        added = {m.path for m in library.add_references(found)}
    finally:
        library.close()
    if args.json:
        _print_json([{"app": f.app, "name": f.name, "path": str(f.path), "location": str(f.location),
                      "size": f.size, "architecture": f.architecture, "adapter": f.adapter,
                      "added": f.path in added} for f in found])
        return 0
    searched = [str(p) for paths in locations.values() for p in paths]
    if not found:
        print("no GGUF models found in " + (", ".join(searched) if searched else
              "LM Studio's, Ollama's or the Hugging Face cache's folders (none exist here)"))
    for f in found:
        state = "added" if f.path in added else "already in the library"
        print(f"{f.app:18} {f.name:50} {human_size(f.size):>9}  {state}  ({f.location})")
    print(f"{len(added)} added by reference (no copy); they stay where the other apps keep them.", file=sys.stderr)
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
    "search": _search, "files": _files, "fit": _fit, "license": _license, "pull": _pull, "list": _list, "rm": _rm,
    "import": _import, "quantize": _quantize, "token": _token,
}


def run(args: argparse.Namespace) -> int:
    return HANDLERS[args.models_command](args)
