"""The memory plan: which layers and which MoE experts go to the GPU, at which context.

Everything comes from the GGUF's own tensor table (read from a local file, or from the
first megabytes of a remote one), so the plan can be made before a download:

- bytes per layer, split into attention, dense FFN (with the router and norms), routed
  experts (``*_exps``) and shared experts (``*_shexp``); embeddings and the output head;
- the KV cache at the context and cache type, per layer (it lives with its layer);
- compute buffers (scratch for one micro-batch, the logits where the output head is).

llama.cpp's rules, which the plan follows: the token embeddings always stay on the CPU;
``n_gpu_layers = k`` puts the *last* k layers on the GPU and the output head only when
``k > n_layer``; ``--n-cpu-moe N`` keeps the routed experts of the *first* N layers in
RAM (a tensor override per layer); a tied output head is a copy of the embeddings on
the output's device.

The planner (:func:`plan`) keeps as much as it can on the GPU at the largest useful
context: the largest context (up to 32k) that keeps as many layers on the GPU as a plan at
8k would; experts may move to RAM for context, whole layers do not.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

from app.engine.gguf_file import GGUFInfo, TensorEntry
from app.engine.hardware import KV_BYTES, MIN_CTX, Fit, Hardware

GiB = 1024**3
MiB = 1024**2
# The context the planner aims for when the user sets none (capped by the model's own).
AUTO_CTX = 32768
# Below this, the context is not lowered to keep more of the model on the GPU.
USEFUL_CTX = 8192
N_UBATCH = 512
# Scratch that does not scale with the model (graph, allocator slack), per device in use.
COMPUTE_RESERVE = 64 * MiB

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(.+)$")
# llama.cpp's pattern for routed experts (common/common.h, LLM_FFN_EXPS_REGEX).
EXPERTS_PATTERN = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"

ExpertMode = Literal["auto", "all", "first", "none"]


@dataclass(frozen=True)
class LayerBytes:
    """The bytes of one repeating layer by part."""

    attention: int = 0
    ffn: int = 0  # dense FFN, or in a MoE layer the router and norms
    experts: int = 0  # routed experts: only expert_used_count of expert_count work per token
    shared: int = 0  # shared experts: work on every token

    @property
    def total(self) -> int:
        return self.attention + self.ffn + self.experts + self.shared


EXPERTS_RE = re.compile(EXPERTS_PATTERN)


def _part(name: str) -> str:
    """The part of a layer a tensor belongs to, from its name after ``blk.N.``."""
    if EXPERTS_RE.search("." + name):
        return "experts"
    if "_shexp" in name:
        return "shared"
    if name.startswith(("ffn", "post_ffw", "pre_ffw", "layer_out")):
        return "ffn"
    return "attention"  # attention and its norms (and anything else per layer)


@dataclass(frozen=True)
class ModelTable:
    """A model's bytes as the planner sees them (from the tensor table and a few keys)."""

    name: str
    architecture: str
    layers: tuple[LayerBytes, ...]
    embeddings: int  # token_embd: always in RAM
    embedding_row: int  # what one token reads from it
    output: int  # the output head and final norm (without a tied head's copy)
    tied_output: bool  # the head is the embedding matrix (a copy goes to the output's device)
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    kv_elements: tuple[int, ...]  # per layer: K and V elements per token
    expert_count: int
    expert_used_count: int
    n_ff: int  # the widest FFN (dense or one expert): compute buffer scratch
    n_params: int  # weights (elements) in the file

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def moe(self) -> bool:
        return self.expert_count > 1 and 0 < self.expert_used_count < self.expert_count

    @property
    def used_fraction(self) -> float:
        return self.expert_used_count / self.expert_count if self.moe else 1.0

    @property
    def total_bytes(self) -> int:
        """The weights as stored in the file."""
        return sum(layer.total for layer in self.layers) + self.embeddings + self.output

    @property
    def head_bytes(self) -> int:
        """The output head as it sits on its device (a tied head is a copy of the embeddings)."""
        return self.output + (self.embeddings if self.tied_output else 0)

    @property
    def active_bytes(self) -> int:
        """The weights read for one token: routed experts at used/total, one embedding row."""
        layers = sum(
            layer.attention + layer.ffn + layer.shared + layer.experts * self.used_fraction for layer in self.layers
        )
        return int(layers + self.embedding_row + self.head_bytes)

    def scaled(self, factor: float) -> ModelTable:
        """The same model at another quantization, approximately: every weight's bytes times ``factor``
        (Discover reads one variant's header and sizes the others by their file sizes)."""

        def s(n: int) -> int:
            return int(n * factor)

        return dataclasses.replace(
            self,
            layers=tuple(LayerBytes(s(x.attention), s(x.ffn), s(x.experts), s(x.shared)) for x in self.layers),
            embeddings=s(self.embeddings), embedding_row=s(self.embedding_row), output=s(self.output),
        )

    def kv_bytes(self, n_ctx: int, kv_type: str = "f16", layers: range | None = None) -> int:
        chosen = self.kv_elements if layers is None else [self.kv_elements[i] for i in layers]
        return int(sum(chosen) * n_ctx * KV_BYTES.get(kv_type, 2.0))

    @classmethod
    def from_header(cls, metadata: dict[str, Any], tensors: tuple[TensorEntry, ...], name: str = "") -> ModelTable:
        arch = str(metadata.get("general.architecture", "unknown"))

        def key(k: str, default: Any = 0) -> Any:
            return metadata.get(f"{arch}.{k}", default)

        n_layers = int(key("block_count", 0) or 0)
        parts: list[dict[str, int]] = [
            {"attention": 0, "ffn": 0, "experts": 0, "shared": 0} for _ in range(n_layers)
        ]
        embeddings = output = 0
        embd_shape: tuple[int, ...] = ()
        tied = True
        n_ff = 0
        for t in tensors:
            m = _BLOCK_RE.match(t.name)
            if m and int(m.group(1)) < n_layers:
                part = _part(m.group(2))
                parts[int(m.group(1))][part] += t.nbytes
                if part in ("experts", "ffn", "shared") and len(t.shape) >= 2 and "gate_inp" not in t.name:
                    n_ff = max(n_ff, min(t.shape[0], t.shape[1]) if "down" not in t.name else t.shape[0])
            elif t.name.startswith("token_embd.") and not t.name.startswith("token_embd_norm"):
                embeddings += t.nbytes
                if t.name == "token_embd.weight":
                    embd_shape = t.shape
            else:
                output += t.nbytes
                if t.name == "output.weight":
                    tied = False
        n_embd = int(key("embedding_length", 0) or 0) or (embd_shape[0] if embd_shape else 0)
        n_vocab = embd_shape[1] if len(embd_shape) > 1 else 0
        n_head = _per_layer(key("attention.head_count", 0), n_layers)
        n_head_kv = _per_layer(key("attention.head_count_kv", 0), n_layers)
        n_head_kv = [kv or h for kv, h in zip(n_head_kv, n_head, strict=True)]
        k_len = int(key("attention.key_length", 0) or 0) or (n_embd // max(1, max(n_head, default=1)))
        v_len = int(key("attention.value_length", 0) or 0) or k_len
        expert_used = key("expert_used_count", 0)
        return cls(
            name=name or str(metadata.get("general.name") or "model"),
            architecture=arch,
            layers=tuple(LayerBytes(**p) for p in parts),
            embeddings=embeddings,
            embedding_row=embeddings // n_vocab if n_vocab else 0,
            output=output,
            tied_output=tied,
            n_embd=n_embd,
            n_vocab=n_vocab,
            n_ctx_train=int(key("context_length", 0) or 0),
            kv_elements=tuple(h * (k_len + v_len) for h in n_head_kv),
            expert_count=int(key("expert_count", 0) or 0),
            expert_used_count=max(expert_used) if isinstance(expert_used, list) else int(expert_used or 0),
            n_ff=n_ff,
            n_params=sum(_elements(t.shape) for t in tensors),
        )

    @classmethod
    def from_info(cls, info: GGUFInfo) -> ModelTable:
        return cls.from_header(info.metadata, info.tensors, info.name)


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def _per_layer(value: Any, n_layers: int) -> list[int]:
    if isinstance(value, list):
        values = [int(v) for v in value]
        return (values + [values[-1] if values else 0] * n_layers)[:n_layers]
    return [int(value or 0)] * n_layers


@dataclass(frozen=True)
class Placement:
    """Where a model goes: the last ``n_gpu_layers`` layers on the GPU (``> n_layers``: the
    output head too), the routed experts of the first ``n_cpu_moe`` layers in RAM."""

    n_ctx: int
    n_gpu_layers: int
    n_cpu_moe: int
    gpu_bytes: int
    ram_bytes: int
    fit: Fit
    n_layers: int
    moe: bool
    kv_type: str = "f16"
    reason: str = ""

    @property
    def llama_gpu_layers(self) -> int:
        """The value for llama.cpp: -1 for everything (layers and head)."""
        return -1 if self.n_gpu_layers > self.n_layers else self.n_gpu_layers

    @property
    def gpu_layers(self) -> int:
        """Repeating layers on the GPU (the output head not counted)."""
        return min(self.n_gpu_layers, self.n_layers)

    @property
    def expert_layers_on_gpu(self) -> int:
        """Layers whose routed experts are on the GPU."""
        first_gpu = self.n_layers - self.gpu_layers
        return max(0, self.n_layers - max(first_gpu, self.n_cpu_moe)) if self.moe else 0

    def explain(self) -> str:
        """One line: "48 of 48 layers on the GPU, experts of 30 layers in RAM, context 32k: 21.3 GB GPU + 38 GB RAM"."""
        ctx = f"{self.n_ctx // 1024}k" if self.n_ctx % 1024 == 0 else str(self.n_ctx)
        if self.fit == "too_large":
            where = f"does not fit: needs {self.ram_bytes / GiB:.1f} GB of RAM"
            return f"{where} at context {ctx}" + (f" ({self.reason})" if self.reason else "")
        if self.gpu_layers == 0:
            head = f"all {self.n_layers} layers on the CPU"
        else:
            head = f"{self.gpu_layers} of {self.n_layers} layers on the GPU"
            if self.gpu_layers == self.n_layers and self.n_gpu_layers == self.n_layers:
                head += " (the output head in RAM)"
            if self.moe:
                cpu_expert_layers = self.n_layers - self.expert_layers_on_gpu
                gpu_cpu = min(self.n_cpu_moe, self.n_layers) - (self.n_layers - self.gpu_layers)
                if gpu_cpu > 0 or cpu_expert_layers == self.n_layers:
                    head += f", experts of {cpu_expert_layers} layers in RAM"
        mem = f"{self.gpu_bytes / GiB:.1f} GB GPU + {self.ram_bytes / GiB:.1f} GB RAM" if self.gpu_layers \
            else f"{self.ram_bytes / GiB:.1f} GB RAM"
        return f"{head}, context {ctx}: {mem}"


def compute_bytes(table: ModelTable, with_head: bool) -> int:
    """Scratch for one micro-batch on a device (flash attention on, as Paddock loads):
    activations of the widest FFN and the residual stream, plus the logits where the head is."""
    scratch = N_UBATCH * 4 * (2 * table.n_ff + 4 * table.n_embd)
    return COMPUTE_RESERVE + scratch + (N_UBATCH * 4 * table.n_vocab if with_head else 0)


def usage(table: ModelTable, n_ctx: int, n_gpu_layers: int, n_cpu_moe: int, kv_type: str = "f16") -> tuple[int, int]:
    """(GPU bytes, RAM bytes) of a placement, following llama.cpp's rules (see the module doc)."""
    n = table.n_layers
    first_gpu = n - min(max(n_gpu_layers, 0), n)
    head_on_gpu = n_gpu_layers > n
    gpu = ram = 0
    for i, layer in enumerate(table.layers):
        kv = table.kv_bytes(n_ctx, kv_type, range(i, i + 1))
        experts_in_ram = i < n_cpu_moe
        if i >= first_gpu:
            gpu += layer.total - (layer.experts if experts_in_ram else 0) + kv
            ram += layer.experts if experts_in_ram else 0
        else:
            ram += layer.total + kv
    ram += table.embeddings
    if head_on_gpu:
        gpu += table.head_bytes
    else:
        ram += table.output
    if n_gpu_layers > 0:
        gpu += compute_bytes(table, head_on_gpu)
        ram += compute_bytes(table, False) if first_gpu > 0 or n_cpu_moe > 0 else COMPUTE_RESERVE
        ram += N_UBATCH * 4 * table.n_vocab if not head_on_gpu else 0
    else:
        ram += compute_bytes(table, True)
    return gpu, ram


def _place_at(table: ModelTable, n_ctx: int, budget: int, *, mode: ExpertMode, first_n: int,
              kv_type: str) -> tuple[int, int]:
    """(n_gpu_layers, n_cpu_moe) that fit ``budget`` GPU bytes at ``n_ctx``."""
    n = table.n_layers
    if budget <= 0:
        return 0, 0
    if not table.moe or mode == "none":
        fixed_cpu_moe = 0
    elif mode == "all":
        fixed_cpu_moe = n
    elif mode == "first":
        fixed_cpu_moe = min(max(first_n, 0), n)
    else:
        fixed_cpu_moe = -1  # auto: the fewest expert layers in RAM that let every layer on the GPU
    if fixed_cpu_moe < 0:
        for ncm in range(n + 1):
            if usage(table, n_ctx, n + 1, ncm, kv_type)[0] <= budget:
                return n + 1, ncm
        fixed_cpu_moe = n
    for ngl in range(n + 1, 0, -1):
        if usage(table, n_ctx, ngl, fixed_cpu_moe, kv_type)[0] <= budget:
            return ngl, fixed_cpu_moe
    return 0, fixed_cpu_moe if fixed_cpu_moe else 0


def usable_ram(hw: Hardware) -> int:
    """RAM a model may take: all of it but what the system and the app need (10 %, at least 2 GB)."""
    return hw.ram_total - max(2 * GiB, hw.ram_total // 10)


def plan(
    table: ModelTable,
    hw: Hardware,
    *,
    n_ctx: int | None = None,
    kv_type: str = "f16",
    mode: ExpertMode = "auto",
    first_n: int = 0,
    n_gpu_layers: int | None = None,
) -> Placement:
    """Place ``table`` on ``hw`` (see the module doc for the rules).

    ``mode``: ``auto`` (fewest expert layers in RAM), ``all`` (every layer's experts in RAM,
    llama.cpp's ``--cpu-moe``), ``first`` (the first ``first_n`` layers', ``--n-cpu-moe N``),
    ``none`` (experts stay with their layer). ``n_gpu_layers`` fixes the layers on the GPU.
    """
    budget = hw.gpu_budget
    train = table.n_ctx_train or AUTO_CTX
    if n_ctx is not None:
        candidates = [n_ctx]
    else:
        top = min(train, AUTO_CTX)
        candidates = [top]
        while candidates[-1] > MIN_CTX:
            candidates.append(max(MIN_CTX, candidates[-1] // 2))

    def at(ctx: int) -> Placement:
        if n_gpu_layers is not None and budget > 0:
            ngl = table.n_layers + 1 if n_gpu_layers < 0 else n_gpu_layers
            ncm = {"all": table.n_layers, "first": first_n}.get(mode, 0) if table.moe else 0
        else:
            ngl, ncm = _place_at(table, ctx, budget, mode=mode, first_n=first_n, kv_type=kv_type)
        gpu, ram = usage(table, ctx, ngl, ncm, kv_type)
        ram_limit = usable_ram(hw)
        ram_used = ram + gpu if hw.unified_memory else ram
        if ram_used > ram_limit:
            fit: Fit = "too_large"
        elif ngl == 0:
            fit = "ram"
        elif ngl > table.n_layers and (ncm == 0 or not table.moe):
            fit = "gpu"
        else:
            fit = "partial"
        return Placement(ctx, ngl, ncm if table.moe else 0, gpu, ram_used if fit == "too_large" else ram, fit,
                         table.n_layers, table.moe, kv_type)

    plans = [at(c) for c in candidates]
    fitting = [p for p in plans if p.fit != "too_large"]
    if not fitting:
        worst = plans[-1]
        limit = usable_ram(hw)
        return Placement(worst.n_ctx, worst.n_gpu_layers, worst.n_cpu_moe, worst.gpu_bytes, worst.ram_bytes,
                         "too_large", worst.n_layers, worst.moe, kv_type,
                         reason=f"this machine has {limit / GiB:.1f} GB of RAM for models"
                         + (f" and {budget / GiB:.1f} GB usable on the GPU"
                            if budget and not hw.unified_memory else ""))
    # The largest context that keeps as many layers on the GPU as a plan at 8k would: context
    # beyond 8k is not worth whole layers off the GPU (experts in RAM cost little: only
    # used/total of them are read per token).
    reference = next((p for p in fitting if p.n_ctx <= USEFUL_CTX), fitting[-1])
    return next(p for p in fitting if p.n_gpu_layers >= reference.n_gpu_layers)
