"""The starter list: a few well-known GGUF repos, with the hardware each suits.

Sizes are those of the Q4_K_M file (the variant Paddock recommends when it
fits); the model manager lists every variant of a repo with its real size and
fit on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StarterModel:
    repo_id: str
    title: str
    family: str
    license_id: str
    q4_size_gb: float
    suits: str


STARTERS: tuple[StarterModel, ...] = (
    StarterModel("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama 3.2 1B Instruct", "Llama", "llama3.2", 0.8,
                 "Any laptop, even with 8 GB of memory; fast on CPU. Good for quick questions and drafts."),
    StarterModel("bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama 3.2 3B Instruct", "Llama", "llama3.2", 2.0,
                 "Laptops with 8 GB or more; a good first model on a CPU-only machine."),
    StarterModel("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "Llama 3.1 8B Instruct", "Llama", "llama3.1", 4.9,
                 "16 GB laptops, Apple Silicon Macs, or a GPU with 8 GB; the all-rounder."),
    StarterModel("bartowski/Llama-3.3-70B-Instruct-GGUF", "Llama 3.3 70B Instruct", "Llama", "llama3.3", 42.5,
                 "Mac Studio class machines (64 GB or more) or 48 GB of GPU memory."),
    StarterModel("Qwen/Qwen2.5-7B-Instruct-GGUF", "Qwen 2.5 7B Instruct", "Qwen", "apache-2.0", 4.7,
                 "16 GB machines; Apache 2.0 licensed, strong at code and many languages."),
    StarterModel("bartowski/Mistral-7B-Instruct-v0.3-GGUF", "Mistral 7B Instruct v0.3", "Mistral", "apache-2.0",
                 4.4, "16 GB machines; Apache 2.0 licensed."),
    StarterModel("bartowski/Phi-3.5-mini-instruct-GGUF", "Phi 3.5 mini Instruct", "Phi", "mit", 2.4,
                 "8 GB laptops; MIT licensed, long context."),
    StarterModel("bartowski/google_gemma-3-4b-it-GGUF", "Gemma 3 4B Instruct", "Gemma", "gemma", 2.5,
                 "8 to 16 GB laptops; Gemma terms of use."),
)
