"""The GGUF files of a repo as users choose among them: one row per quantization.

Split files (``-00001-of-00003.gguf``) are one model; vision projectors
(``mmproj-*``) are not models on their own; unsafe names are dropped. Each
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
    for f in details.files:
        if not f.name.lower().endswith(".gguf"):
            continue
        try:
            safe_relative_path(f.name)
        except UnsafePathError:
            rejected.append(f.name)
            continue
        base = f.name.rsplit("/", 1)[-1]
        if base.lower().startswith("mmproj"):
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
        variants.append(Variant(quant=quant, files=tuple(files)))
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
        labelled.append(Variant(v.quant, v.files, fit=fit, n_ctx=ctx, total_bytes=plan.total_bytes))
    fitting = [v for v in labelled if _fits_fully(v.fit, hw) and (v.total_bytes or 0) <= hw.ram_available
               + hw.gpu_budget * (not hw.unified_memory)]
    if not fitting:
        fitting = [v for v in labelled if v.fit not in (None, "too_large")]
    choice = next((v for v in fitting if v.quant == PREFERRED_QUANT), None)
    if choice is None:
        quantized = [v for v in fitting if v.quant not in FULL_PRECISION] or fitting
        choice = max(quantized, key=lambda v: v.size, default=None)
    return [Variant(v.quant, v.files, v.fit, v.n_ctx, v.total_bytes, recommended=v is choice) for v in labelled]


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
    labelled = label(variants, shape, hw, n_ctx)
    if table is not None and table.total_bytes > 0:
        labelled = [_predicted(v, table, hw, n_ctx) for v in labelled]
    return VariantList(details.repo_id, labelled, shape, rejected, incomplete)


def _predicted(variant: Variant, table: ModelTable, hw: Hardware, n_ctx: int | None) -> Variant:
    """The plan and decode speed of a variant, its table sized from the probe's by file size."""
    from app.models.fit import fit

    report = fit(table.scaled(variant.size / table.total_bytes), hw, n_ctx=n_ctx or variant.n_ctx)
    speed = report.prediction.decode_tokens_per_s if report.placement.fit != "too_large" else None
    return dataclasses.replace(variant, plan=report.line, predicted_tokens_per_s=speed)
