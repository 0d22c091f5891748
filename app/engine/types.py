"""Plain data shared by the engine, the store and the UI (picklable, no Qt)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from app.engine.images import ImageInput

Role = Literal["system", "user", "assistant", "tool"]
# A piece of a streamed answer: what the user reads, or the model's thinking before it.
DeltaKind = Literal["answer", "thinking"]
Delta = tuple[DeltaKind, str]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    # An assistant turn's thinking, kept apart from its answer (the template decides
    # whether past thinking goes back into the prompt).
    reasoning: str = ""
    # An assistant turn's tool calls ({"id", "name", "arguments": dict}); a tool turn's call id.
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str = ""
    name: str = ""  # the tool a "tool" message answers for
    # Pictures shown with a user turn, in order; ``content`` holds app.engine.images.IMAGE_MARKER
    # where each one sits (missing markers are put first). Only a model with a projector sees them.
    images: tuple[ImageInput, ...] = ()


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one request (also stored per conversation)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    # The chat's Think switch, for templates with ``enable_thinking`` (None: the template's default).
    enable_thinking: bool | None = None
    # With tools on: "auto" (the model decides) or "required" (its first step is a tool call).
    tool_choice: str = "auto"
    # OpenAI's penalties (llama.cpp's, over the last 64 tokens): a token's logit is lowered by
    # ``frequency_penalty`` per time it occurred and once by ``presence_penalty`` if it did.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # Added to these tokens' logits before sampling: (token id, bias) pairs (-100 bans a token).
    logit_bias: tuple[tuple[int, float], ...] = ()
    # Strings that end the answer where they first appear (not part of it).
    stop: tuple[str, ...] = ()
    # Report each answer token's log-probability, and this many likeliest alternatives (None: off).
    logprobs: int | None = None
    # A GBNF grammar the answer must follow (structured output: JSON, a JSON schema).
    grammar: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SamplingParams:
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        # JSON keeps tuples as lists
        for key in ("stop", "logit_bias"):
            if key in values and values[key] is not None:
                values[key] = tuple(tuple(v) if isinstance(v, list) else v for v in values[key])
        return cls(**values)


@dataclass(frozen=True)
class LoraAdapter:
    """A LoRA adapter applied to an answer: its file, its scale (0 leaves the model as it is), and the
    file's (size, mtime_ns) when the parent checked it (app/engine/lora.py): the engine refuses a file
    that changed since, so nothing unchecked reaches llama.cpp."""

    path: str
    scale: float = 1.0
    fingerprint: tuple[int, int] = (0, 0)


KvCacheType = Literal["f16", "q8_0", "q4_0"]


@dataclass(frozen=True)
class LoadSettings:
    """How to load a model.  ``None`` means: choose from the model and this machine."""

    n_ctx: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int | None = None
    flash_attn: bool | None = None
    kv_cache_type: KvCacheType = "f16"
    n_batch: int = 512
    # An embedding model for documents (its own engine process): pooled vectors, no chat.
    embedding: bool = False
    # A chat template used instead of the one in the file (Jinja source).
    chat_template: str | None = None
    # Kept conversation states (app/engine/kvstates.py): budgets in MiB; 0 keeps none.
    kept_states_ram_mb: int = 1024
    kept_states_disk_mb: int = 4096
    # Speculative decoding from prompt-lookup drafts (app/engine/speculative.py). On by default: a draft is
    # verified only where it is expected to pay (a long enough match, the acceptance so far, the cost measured
    # on this machine), so answers that quote nothing run as fast as without it and quoting ones much faster
    # (benchmarks/results/decode_speed.md).
    prompt_lookup: bool = True
    # A small model of the same family that drafts tokens for this one (same vocabulary).
    draft_model: str | None = None
    # MoE experts kept in RAM (llama.cpp's --n-cpu-moe): None lets the placement planner choose,
    # 0 keeps them with their layers, N the first N layers', -1 every layer's (--cpu-moe).
    n_cpu_moe: int | None = None
    # RPC workers (``paddock worker`` on other machines), each ``HOST:PORT``: the layers are spread
    # over this machine's device and theirs (app/engine/rpc.py); one that does not answer is left out.
    workers: tuple[str, ...] = ()
    # The image projector (mmproj GGUF) that lets this model see images (app/engine/vision.py).
    mmproj: str | None = None


@dataclass(frozen=True)
class PlacedDevice:
    """Where part of a loaded model went, from llama.cpp's load log: a device (``CPU``, ``CUDA0``,
    ``RPC0``), the worker's ``HOST:PORT`` for a worker's device (else ""), its repeating layers
    (``output``: it also holds the output layer) and the bytes of weights, KV cache and compute
    buffers it holds."""

    device: str
    worker: str = ""
    layers: int = 0
    output: bool = False
    model_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoadedModel:
    """What the engine reports after a successful load."""

    path: str
    name: str
    architecture: str
    n_ctx: int
    n_ctx_train: int
    n_threads: int
    n_gpu_layers: int
    backend: str
    template_source: Literal["gguf", "fallback", "override"]
    load_s: float
    notices: tuple[str, ...] = ()
    prompt_lookup: bool = False
    draft_model: str = ""  # the draft model in use ("" for none)
    # Thinking: the family's format ("think", "gpt-oss", ...), whether the template has a
    # Think switch (``enable_thinking``), and whether thinking is on when it is left unset.
    reasoning_format: str = ""
    thinking_switch: bool = False
    thinking_default: bool = False
    # The placement: layers whose MoE experts are in RAM, the plan's line and its predicted decode speed.
    n_cpu_moe: int = 0
    plan: str = ""
    predicted_tokens_per_s: float | None = None
    # Where the layers and bytes went, device by device (see PlacedDevice).
    devices: tuple[PlacedDevice, ...] = ()
    mmproj: str = ""  # the image projector in use: the model can see ("" for a text-only model)

    @property
    def vision(self) -> bool:
        return bool(self.mmproj)


@dataclass
class GenerationStats:
    """Figures of one generation; ``prompt_tokens`` is the whole prompt, split in
    ``prompt_evaluated`` (newly computed) and ``prompt_reused`` (from the KV cache)."""

    prompt_tokens: int = 0
    prompt_evaluated: int = 0
    prompt_reused: int = 0
    # of ``prompt_reused``: tokens put back from a kept state (another chat's, or a past session's)
    prompt_restored: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    tokens_per_s: float = 0.0
    # of the time from the first answer token to the last, the seconds llama.cpp spent decoding; the
    # rest is Paddock's own work on each token (sampling, text, stop strings, sending, drafting)
    decode_s: float = 0.0
    finish_reason: str = ""
    dropped_messages: int = 0
    n_ctx: int = 0
    # speculative decoding: tokens drafted from the context, and how many the model kept
    draft_tokens: int = 0
    draft_accepted: int = 0
    # images: how many the prompt holds, their positions in it, how many were encoded (not reused
    # from the KV cache) and how long encoding and evaluating them took
    images: int = 0
    image_tokens: int = 0
    images_evaluated: int = 0
    image_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GenerationResult:
    text: str
    stats: GenerationStats
    notices: tuple[str, ...] = field(default_factory=tuple)
    # The model's thinking before the answer (never part of ``text``) and how long it took.
    reasoning: str = ""
    reasoning_s: float = 0.0
    # The tools the model asked for ({"id", "name", "arguments": dict}); finish_reason "tool_calls".
    tool_calls: tuple[dict[str, Any], ...] = ()
    # With ``SamplingParams.logprobs``: one entry per answer token (see :class:`TokenLogprob`).
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability under the model (before sampling settings), with
    the likeliest alternatives at that position (OpenAI's ``logprobs.content`` entry)."""

    token: str
    logprob: float
    data: bytes
    top: tuple[tuple[str, float, bytes], ...] = ()
