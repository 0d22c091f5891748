"""Plain data shared by the engine, the store and the UI (picklable, no Qt)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SamplingParams:
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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
    template_source: Literal["gguf", "fallback"]
    load_s: float
    notices: tuple[str, ...] = ()


@dataclass
class GenerationStats:
    """Figures of one generation; ``prompt_tokens`` is the whole prompt, split in
    ``prompt_evaluated`` (newly computed) and ``prompt_reused`` (from the KV cache)."""

    prompt_tokens: int = 0
    prompt_evaluated: int = 0
    prompt_reused: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    tokens_per_s: float = 0.0
    finish_reason: str = ""
    dropped_messages: int = 0
    n_ctx: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GenerationResult:
    text: str
    stats: GenerationStats
    notices: tuple[str, ...] = field(default_factory=tuple)
