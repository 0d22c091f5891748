"""The GGUF files of a repo as users choose among them: one row per quantization.

Split files (``-00001-of-00003.gguf``) are one model; image projectors
(``mmproj-*``) are not models on their own: each variant carries the repo's
projector, downloaded with it, and the listing says the models can see (or, for
Llama 3.2 Vision, that llama.cpp cannot run them); unsafe names are dropped. Each
variant gets a fit label from the same estimator the engine uses
(:func:`app.engine.hardware.plan_load`: weights + KV cache at the context it
would load with + compute buffers), with the model's shape read from the first
megabytes of one of its files.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from app.engine import hardware
from app.engine.gguf_file import FULL_PRECISION, SPLIT_RE, quant_from_filename, shape_from_metadata
from app.engine.hardware import FIT_LABELS, Fit, Hardware, ModelShape
from app.engine.placement import ModelTable
from app.engine.projectors import is_projector_name
from app.errors import HubError, InvalidModelError, UnsafePathError
from app.models.hub import HubClient, RepoDetails, RepoFile, safe_relative_path

log = logging.getLogger(__name__)

# The usual choice: good quality per byte. Recommended when it fits; otherwise the largest that fits.
PREFERRED_QUANT = "Q4_K_M"


@dataclass(frozen=True)
class Variant:
    quant: str
    files: tuple[RepoFile, ...]
    fit: Fit | None = None
    n_ctx: int | None = None
    total_bytes: int | None = None
    recommended: bool = False
    # The placement planner's line and decode speed for this variant (app/models/fit.py).
    plan: str | None = None
    predicted_tokens_per_s: float | None = None
    # the repo's image projector, downloaded with the variant (verified like it): the model can see
    projector: RepoFile | None = None

    @property
    def name(self) -> str:
        """The file name users pass to ``paddock models pull`` (the first part of a split model)."""
        return self.files[0].name

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def split(self) -> bool:
        return len(self.files) > 1

    @property
    def fit_label(self) -> str:
        return FIT_LABELS[self.fit] if self.fit else "fit unknown"


@dataclass(frozen=True)
class VariantList:
    repo_id: str
    variants: list[Variant]
    shape: ModelShape | None = None
    rejected: list[str] = field(default_factory=list)  # unsafe file names from the listing
    incomplete: list[str] = field(default_factory=list)  # split models with parts missing
    # why the repo's models cannot be used even though it has GGUF files (Llama 3.2 Vision); "" when they can
    unsupported: str = ""

    @property
    def vision(self) -> bool:
        """The repo has an image projector that this llama.cpp can use: its models can see."""
        return not self.unsupported and any(v.projector is not None for v in self.variants)

    @property
    def recommended(self) -> Variant | None:
        return next((v for v in self.variants if v.recommended), None)

    def find(self, name: str) -> Variant | None:
        wanted = name.lower()
        for v in self.variants:
            if wanted in (v.name.lower(), v.quant.lower()) or any(f.name.lower() == wanted for f in v.files):
                return v
        return None


def group_files(details: RepoDetails) -> tuple[list[Variant], list[str], list[str]]:
    """GGUF files grouped into variants (split parts together), plus rejected and incomplete names."""
    groups: dict[str, list[RepoFile]] = {}
    rejected: list[str] = []
    projectors: list[RepoFile] = []
    for f in details.files:
        if not f.name.lower().endswith(".gguf"):
            continue
        try:
            safe_relative_path(f.name)
        except UnsafePathError:
            rejected.append(f.name)
            continue
        base = f.name.rsplit("/", 1)[-1]
        if is_projector_name(base):
            projectors.append(f)
            continue
        key = SPLIT_RE.sub(".gguf", f.name)
        groups.setdefault(key, []).append(f)
    variants = []
    incomplete = []
    for key, files in groups.items():
        files.sort(key=lambda f: f.name)
        m = SPLIT_RE.search(files[0].name)
        if m and (int(m.group(1)) != 1 or len(files) != int(m.group(2))):
            incomplete.append(key)
            continue
        quant = quant_from_filename(files[0].name) or "unknown"
        variants.append(Variant(quant=quant, files=tuple(files), projector=best_projector(projectors, files[0].name)))
    variants.sort(key=lambda v: v.size)
    return variants, rejected, incomplete


def _fits_fully(fit: Fit | None, hw: Hardware) -> bool:
    return fit == "gpu" if hw.backend != "cpu" and hw.gpu_budget > 0 else fit in ("ram", "gpu")


def label(variants: list[Variant], shape: ModelShape | None, hw: Hardware, n_ctx: int | None = None) -> list[Variant]:
    """Fit labels and the recommended variant for this machine."""
    if shape is None:
        return variants
    labelled = []
    for v in variants:
        s = dataclasses.replace(shape, weights_bytes=v.size)
        ctx = n_ctx or min(shape.n_ctx_train or hardware.DEFAULT_CTX, hardware.DEFAULT_CTX)
        plan = hardware.plan_load(s, hw, n_ctx=ctx)
        fit: Fit = plan.fit
        if fit != "too_large" and plan.total_bytes > hw.ram_total + hw.gpu_budget * (not hw.unified_memory):
            fit = "too_large"
        labelled.append(dataclasses.replace(v, fit=fit, n_ctx=ctx, total_bytes=plan.total_bytes))
    fitting = [v for v in labelled if _fits_fully(v.fit, hw) and (v.total_bytes or 0) <= hw.ram_available
               + hw.gpu_budget * (not hw.unified_memory)]
    if not fitting:
        fitting = [v for v in labelled if v.fit not in (None, "too_large")]
    choice = next((v for v in fitting if v.quant == PREFERRED_QUANT), None)
    if choice is None:
        quantized = [v for v in fitting if v.quant not in FULL_PRECISION] or fitting
        choice = max(quantized, key=lambda v: v.size, default=None)
    return [dataclasses.replace(v, recommended=v is choice) for v in labelled]


_PROJECTOR_PRECISION = ("f16", "bf16", "q8_0", "f32")  # the usual choice first: what llama.cpp's own docs use


def best_projector(projectors: list[RepoFile], model_name: str) -> RepoFile | None:
    """The projector to download with ``model_name``: in its folder, F16 first (projectors are small; their
    precision matters more than their size)."""
    folder = model_name.rsplit("/", 1)[0] if "/" in model_name else ""
    near = [p for p in projectors if (p.name.rsplit("/", 1)[0] if "/" in p.name else "") == folder] or projectors

    def rank(p: RepoFile) -> tuple[int, str]:
        name = p.name.lower()
        hits = [i for i, q in enumerate(_PROJECTOR_PRECISION) if q in name.replace("-", "_").replace(".", "_")]
        return (hits[0] if hits else len(_PROJECTOR_PRECISION), p.name)

    return min(near, key=rank) if near else None


def list_variants(client: HubClient, details: RepoDetails, hw: Hardware | None = None,
                  n_ctx: int | None = None) -> VariantList:
    """Every GGUF variant of a repo with its fit on this machine."""
    variants, rejected, incomplete = group_files(details)
    for name in rejected:
        log.info("%s lists an unsafe file name, ignored: %r", details.repo_id, name)
    shape = None
    table = None
    hw = hw or hardware.detect()
    if variants:
        probe = variants[0].files[0]
        try:
            metadata, tensors = client.read_gguf_header(details.repo_id, probe.name, details.commit)
            shape = shape_from_metadata(metadata, variants[0].size)
            if not variants[0].split:  # a split file's first part holds only some of the tensors
                table = ModelTable.from_header(metadata, tensors)
        except (HubError, InvalidModelError) as exc:
            # Gated repos hide file contents until access is granted: list without fit labels.
            log.info("no GGUF header for %s: %s", details.repo_id, exc)
    labelled = label(variants, shape, hw or hardware.detect(), n_ctx)
    if table is not None and table.total_bytes > 0:
        labelled = [_predicted(v, table, hw or hardware.detect(), n_ctx) for v in labelled]
    return VariantList(details.repo_id, labelled, shape, rejected, incomplete, _unsupported(client, details, variants))


def _predicted(variant: Variant, table: ModelTable, hw: Hardware, n_ctx: int | None) -> Variant:
    """The plan and decode speed of a variant, its table sized from the probe's by file size."""
    from app.models.fit import fit

    report = fit(table.scaled(variant.size / table.total_bytes), hw, n_ctx=n_ctx or variant.n_ctx)
    speed = report.prediction.decode_tokens_per_s if report.placement.fit != "too_large" else None
    return dataclasses.replace(variant, plan=report.line, predicted_tokens_per_s=speed)


def _unsupported(client: HubClient, details: RepoDetails, variants: list[Variant]) -> str:
    """Why the repo's models cannot work here: its projector (or its name) says Llama 3.2 Vision (mllama)."""
    projector = next((v.projector for v in variants if v.projector is not None), None)
    kind = ""
    if projector is not None:
        try:
            metadata = client.read_gguf_metadata(details.repo_id, projector.name, details.commit)
            kind = str(metadata.get("clip.projector_type") or metadata.get("general.architecture") or "")
        except (HubError, InvalidModelError) as exc:
            log.info("no projector header for %s: %s", details.repo_id, exc)
    named = details.repo_id.lower().replace("_", "-")
    if kind == "mllama" or ("llama-3.2" in named and "vision" in named):
        return (f"{details.repo_id} is Llama 3.2 Vision (mllama), which llama.cpp does not support: its files "
                "cannot be loaded. For a Llama that sees, choose Llama 4 Scout, or Gemma 3 or Qwen 2.5-VL.")
    return ""
