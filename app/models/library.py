"""The local model library: what is on disk, where it came from, and whether it may be used.

Models live in :func:`app.paths.models_dir` (downloads under ``<owner>/<repo>/``,
imports and quantizations under ``local/``), or stay where they are when
imported as a link. The registry (:mod:`app.models.registry`) remembers each
model's source, hash, license acceptance and lineage; files dropped into the
models folder by hand are picked up by :meth:`Library.scan`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from app import paths
from app.engine.gguf_file import SPLIT_RE, read_gguf
from app.engine.projectors import check_projector, is_projector_name, projector_beside
from app.errors import InvalidModelError, LicenseNotAcceptedError, ModelNotFoundError, PaddockError, ProjectorError
from app.models.download import check_disk_space, part_path
from app.models.hub import RepoDetails, safe_relative_path
from app.models.licenses import LicenseInfo
from app.models.other_apps import FoundModel
from app.models.registry import (
    Acceptance,
    DownloadRecord,
    LibraryModel,
    Registry,
    RemoteFile,
    is_adapter,
    model_meta,
)
from app.models.variants import Variant

log = logging.getLogger(__name__)


class ImportCancelledError(PaddockError):
    """The user cancelled an import while its file was being copied (the partial copy is deleted)."""


def local_gguf_files() -> list[Path]:
    """Every GGUF file under the models folder (split models: their first part only)."""
    found = []
    for path in sorted(paths.models_dir().rglob("*.gguf")):
        if is_projector_name(path.name):
            continue  # an image projector belongs to the model beside it; it is not a model
        m = SPLIT_RE.search(path.name)
        if m and int(m.group(1)) != 1:
            continue
        found.append(path)
    return found


def split_parts(first: Path) -> list[Path]:
    """All parts of a split model from its first part (just ``[first]`` for a single file).

    Raises:
        InvalidModelError: a part is missing.
    """
    m = SPLIT_RE.search(first.name)
    if not m:
        return [first]
    count = int(m.group(2))
    stem = first.name[: m.start()]
    parts = [first.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise InvalidModelError(f"split model incomplete: {', '.join(missing)} missing next to {first.name}")
    return parts


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


class Library:
    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry(paths.library_path())

    def close(self) -> None:
        self.registry.close()

    # -- listing -----------------------------------------------------------------

    def scan(self) -> list[LibraryModel]:
        """Register GGUF files found in the models folder that the library does not know yet."""
        added = []
        known = {p for m in self.registry.models() for p in m.files}
        for path in local_gguf_files():
            if path in known:
                continue
            try:
                info = read_gguf(path)
                parts = split_parts(path)
            except PaddockError as exc:
                log.info("not adding %s: %s", path, exc)
                continue
            if info.architecture == "clip":
                continue  # a projector under another name
            added.append(self.registry.add_model(
                path, name=path.stem, source="found", parts=parts if len(parts) > 1 else None,
                quant=info.quantization, size=sum(p.stat().st_size for p in parts), license_id=info.license,
                meta=model_meta(info),
            ))
        return added

    def models(self) -> list[LibraryModel]:
        """The models (LoRA adapters are listed by :meth:`adapters`)."""
        self.scan()
        return [m for m in self.registry.models() if not is_adapter(m)]

    # -- LoRA adapters -----------------------------------------------------------

    def adapters(self) -> list[LibraryModel]:
        """The LoRA adapters, each attached to the base model it fits (``meta["base_id"]``) once one is in
        the library: an adapter downloaded or found before its base is attached when the base comes."""
        from app.engine.lora import check_adapter

        self.scan()
        everything = self.registry.models()
        ids = {m.id for m in everything}
        bases = [m for m in everything if not is_adapter(m) and m.path.exists()]
        for adapter in [m for m in everything if is_adapter(m)]:
            if adapter.meta.get("base_id") in ids or not adapter.path.exists():
                continue
            for base in bases:
                if base.meta.get("architecture") != adapter.meta.get("architecture"):
                    continue
                try:
                    check_adapter(adapter.path, base.path)
                except PaddockError:
                    continue
                self.registry.update_meta(adapter.id, {**adapter.meta, "base_id": base.id})
                break
        return [m for m in self.registry.models() if is_adapter(m)]

    def adapters_for(self, base: LibraryModel) -> list[LibraryModel]:
        return [a for a in self.adapters() if a.meta.get("base_id") == base.id]

    def import_adapter(self, source: Path, base: str | None = None, link: bool = False) -> LibraryModel:
        """Add a LoRA adapter, checked against ``base`` (a model reference) when given, else attached to the
        first library model it fits.

        Raises:
            InvalidAdapterError: not a LoRA adapter, or it does not fit ``base`` (the reason said).
        """
        from app.engine.lora import check_adapter
        from app.errors import InvalidAdapterError

        source = source.expanduser().resolve()
        if read_gguf(source).get("general.type") != "adapter":
            raise InvalidAdapterError(f"{source.name} is not a LoRA adapter (general.type is not 'adapter'): "
                                      "import it as a model instead")
        base_model = None
        if base is not None:
            base_path = self.resolve(base)
            check_adapter(source, base_path)
            base_model = self.registry.model_by_path(base_path) or self.import_file(base_path, link=True)
        added = self.import_file(source, link=link)
        if base_model is not None:
            self.registry.update_meta(added.id, {**added.meta, "base_id": base_model.id})
        self.adapters()  # attach to a base when none was named
        return self.registry.model(added.id)

    def resolve(self, ref: str) -> Path:
        """A model reference as users type it: a library id, a path, a file name, or a name without ``.gguf``.

        Raises:
            ModelNotFoundError: nothing matches; the message says what to do.
        """
        candidate = Path(ref).expanduser()
        if candidate.exists():
            return candidate
        if ref.isdigit():
            return self.registry.model(int(ref)).path
        wanted = ref.lower().removesuffix(".gguf")
        files = local_gguf_files()  # also files llama.cpp will refuse: loading them says why
        files += [m.path for m in self.registry.models() if m.path not in files and m.path.exists()]
        matches = [p for p in files if p.stem.lower() == wanted or p.name.lower() == ref.lower()]
        if not matches:
            matches = [p for p in files if wanted in p.stem.lower()]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(p.name for p in matches[:5])
            raise ModelNotFoundError(f"{ref!r} matches several models ({names}): be more specific")
        raise ModelNotFoundError(
            f"model not found: {ref!r} is neither a file nor a model in {paths.models_dir()}"
        )

    # -- licenses ----------------------------------------------------------------

    def accept(self, lic: LicenseInfo) -> Acceptance:
        return self.registry.accept(lic.repo_id, lic.license_id, lic.name, lic.sha256)

    def accepted(self, lic: LicenseInfo) -> Acceptance | None:
        return self.registry.acceptance(lic.repo_id, lic.sha256)

    def check_loadable(self, path: Path) -> None:
        """A model downloaded through the catalogue may only be loaded while its license stays accepted.

        Raises:
            LicenseNotAcceptedError: the acceptance was withdrawn (or never recorded).
        """
        model = self.registry.model_by_path(path)
        if model is not None and is_adapter(model):
            from app.errors import InvalidAdapterError

            raise InvalidAdapterError(f"{model.name} is a LoRA adapter, not a model: load its base model and apply "
                                      "the adapter to it (a chat's settings, or --lora)")
        problem = self.reference_problem(model) if model is not None else None
        if problem:
            raise ModelNotFoundError(problem)
        if model is None or model.source != "download" or not model.repo_id:
            return
        if model.acceptance_id is None or self.registry.acceptance_by_id(model.acceptance_id) is None:
            raise LicenseNotAcceptedError(
                f"The license of {model.repo_id} is no longer accepted in Paddock: open it in Models → Discover "
                "and accept it to use this model."
            )

    # -- downloads ---------------------------------------------------------------

    def queue_download(self, details: RepoDetails, variant: Variant, acceptance: Acceptance) -> DownloadRecord:
        """A download record for ``variant`` (an unfinished one for the same file is reused: resume)."""
        # the projector comes with the model, verified like it, under the same license acceptance
        wanted = [*variant.files, *([variant.projector] if variant.projector is not None else [])]
        for f in wanted:
            safe_relative_path(f.name)
        existing = self.registry.find_download(details.repo_id, variant.name)
        if existing is not None:
            return existing
        dest = paths.models_dir() / details.repo_id
        files = [RemoteFile(f.name, f.size, f.sha256) for f in wanted]
        return self.registry.add_download(details.repo_id, details.commit, variant.name, files=files, dest_dir=dest,
                                          acceptance_id=acceptance.id)

    # -- import, delete ----------------------------------------------------------

    def projector_for(self, model: Path) -> Path | None:
        """The image projector paired with ``model``: the one chosen at import, else the one beside it."""
        known = self.registry.model_by_path(model)
        chosen = known.meta.get("mmproj") if known is not None else None
        if isinstance(chosen, str) and Path(chosen).is_file():
            return Path(chosen)
        return projector_beside(model)

    def import_file(self, source: Path, link: bool = False,
                    on_progress: Callable[[int, int], None] | None = None, mmproj: Path | None = None,
                    cancel: threading.Event | None = None) -> LibraryModel:
        """Add a GGUF file (and its split parts) to the library, copied into the models folder or linked in place,
        with its image projector: ``mmproj``, else one beside the file (LM Studio's layout), copied along.
        Setting ``cancel`` stops a copy between two blocks; what was copied is deleted.

        Raises:
            ModelNotFoundError / InvalidModelError: not a readable GGUF model.
            ProjectorError: ``mmproj`` cannot work with this model (checked before anything is copied).
            DiskSpaceError: not enough room for the copy.
            ImportCancelledError: ``cancel`` was set during the copy.
        """
        source = source.expanduser().resolve()
        info = read_gguf(source)  # validates before anything is copied
        if info.architecture == "clip":
            raise ProjectorError(f"{source.name} is an image projector, not a model: import the model it belongs "
                                 "to (the projector beside it comes along), or give it with the model's --mmproj")
        parts = split_parts(source)
        projector = mmproj.expanduser().resolve() if mmproj is not None else projector_beside(source)
        if projector is not None:
            try:
                check_projector(source, projector)
            except ProjectorError:
                if mmproj is not None:
                    raise
                log.warning("not pairing %s with %s: it is not its projector", projector.name, source.name)
                projector = None
        existing = self.registry.model_by_path(source)
        if existing is not None:
            return existing
        size = sum(p.stat().st_size for p in parts)
        meta = model_meta(info)
        if link or _inside(source, paths.models_dir()):
            if projector is not None:
                meta["mmproj"] = str(projector)
            return self.registry.add_model(
                source, name=source.stem, source="link" if link else "found", parts=parts if len(parts) > 1 else None,
                quant=info.quantization, size=size, license_id=info.license, meta=meta,
            )
        # a model with a projector gets a folder of its own, so that the two stay paired
        dest_dir = paths.models_dir() / "local" / (source.stem if projector is not None else "")
        extra = [projector] if projector is not None else []
        size += sum(p.stat().st_size for p in extra)
        targets = [dest_dir / p.name for p in [*parts, *extra]]
        parts = [*parts, *extra]
        if any(t.exists() for t in targets):
            raise PaddockError(f"a model named {source.name} is already in {dest_dir}: rename the file first")
        check_disk_space(dest_dir, size, source.name)
        copied = 0
        try:
            for src, dst in zip(parts, targets, strict=True):
                tmp = part_path(dst)
                with src.open("rb") as fin, tmp.open("wb") as fout:
                    while block := fin.read(8 << 20):
                        if cancel is not None and cancel.is_set():
                            raise ImportCancelledError(f"the import of {source.name} was cancelled: nothing was added")
                        fout.write(block)
                        copied += len(block)
                        if on_progress:
                            on_progress(copied, size)
                    fout.flush()
                    os.fsync(fout.fileno())
                os.replace(tmp, dst)
        except BaseException:
            for dst in targets:
                part_path(dst).unlink(missing_ok=True)
                dst.unlink(missing_ok=True)
            raise
        if projector is not None:
            meta["mmproj"] = str(targets[-1])
            targets = targets[:-1]
            size -= extra[0].stat().st_size
        return self.registry.add_model(
            targets[0], name=source.stem, source="import", parts=targets if len(targets) > 1 else None,
            quant=info.quantization, size=size, license_id=info.license, meta=meta,
        )

    def delete(self, model_id: int) -> str:
        """Remove a model; its files are deleted only if they are in Paddock's models folder."""
        model = self.registry.model(model_id)
        if model.source == "link" or not _inside(model.path, paths.models_dir()):
            self.registry.remove_model(model_id)
            return f"Removed {model.name} from the library; the file itself was left at {model.path}."
        freed = 0
        for p in model.files:
            if p.exists():
                freed += p.stat().st_size
                p.unlink()
        folder = model.path.parent
        with contextlib.suppress(OSError):  # a projector left with no model beside it goes too
            rest = [p for p in folder.iterdir() if p.suffix.lower() == ".gguf"]
            if rest and all(is_projector_name(p.name) for p in rest):
                for p in rest:
                    freed += p.stat().st_size
                    p.unlink()
        while folder != paths.models_dir() and _inside(folder, paths.models_dir()):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
            folder = folder.parent
        self.registry.remove_model(model_id)
        return f"Deleted {model.name} ({freed / 1e9:.2f} GB freed)."

    # -- other apps' models, by reference ------------------------------------------

    def add_references(self, found: Sequence[FoundModel]) -> list[LibraryModel]:
        """Add models other apps keep (app/models/other_apps.py) where they are: no copy.  Each remembers
        its app, where the app keeps it and the file's size and time, so that a file the app deletes or
        rewrites is shown as missing or changed and never loaded.  Models already in the library are kept."""
        added = []
        for model in found:
            if self.registry.model_by_path(model.path) is not None:
                continue
            try:
                info = read_gguf(model.path)
                stat = model.path.stat()
            except (PaddockError, OSError) as exc:
                log.info("not adding %s: %s", model.location, exc)
                continue
            meta = {**model_meta(info), "app": model.app, "location": str(model.location),
                    "fingerprint": [stat.st_size, stat.st_mtime_ns]}
            if model.template:
                meta["app_template"] = model.template
            added.append(self.registry.add_model(
                model.path, name=model.name, source="link", parts=list(model.parts) or None, repo_id=model.repo_id,
                quant=info.quantization, size=model.size, license_id=info.license, meta=meta,
            ))
        if any(is_adapter(m) for m in added):
            self.adapters()  # attach adapters to their base models
        return added

    def reference_problem(self, model: LibraryModel) -> str | None:
        """Why a model another app keeps cannot be used now (moved, deleted, or changed there); None if fine."""
        fingerprint = model.meta.get("fingerprint")
        if not fingerprint:
            return None
        app, where = model.meta.get("app", "the other app"), model.meta.get("location", str(model.path))
        try:
            stat = model.path.stat()
            missing = [p for p in model.parts if not p.exists()]
        except OSError:
            stat, missing = None, []
        if stat is None or missing:
            return f"{model.name} is no longer where {app} kept it ({where}): it was moved or deleted there"
        if [stat.st_size, stat.st_mtime_ns] != list(fingerprint):
            return (f"{model.name} changed in {app} since it was added to Paddock (updated, or still being written): "
                    "add it again in Models → Import once it is complete")
        return None

    def reveal_folder(self, model_id: int) -> Path:
        return self.registry.model(model_id).path.parent


def loadable_model(ref: str) -> Path:
    """A model reference (path or library id) resolved through the library, refused if its license
    is no longer accepted.  What ``paddock chat``, ``serve`` and ``docs ask`` load.

    Raises:
        ModelNotFoundError, InvalidModelError, LicenseNotAcceptedError: with a message for the user.
    """
    library = Library()
    try:
        path = library.resolve(ref)
        library.check_loadable(path)
        return path
    finally:
        library.close()
