"""The starter list: well-known GGUF repos of current models, with the hardware each suits.

Sizes are those of the file Paddock recommends when it fits (Q4_K_M, or the
format the makers publish: MXFP4 for gpt-oss); the model manager lists every
variant of a repo with its real size and fit on this machine.  For mixture-of-
experts models (Llama 4 Scout, Qwen 3 30B-A3B, gpt-oss) the memory needed is
that of all parameters, while the speed follows the active ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StarterModel:
    repo_id: str
    title: str
    family: str
    license_id: str
    size_gb: float
    suits: str
    quant: str = "Q4_K_M"
    params_b: float = 0.0  # all parameters, billions
    active_b: float = 0.0  # parameters used per token (mixture of experts), billions

    @property
    def moe(self) -> bool:
        return 0 < self.active_b < self.params_b

    def summary(self) -> str:
        """One line: license, size and, for MoE, why it is faster than its size suggests."""
        parts = [self.license_id, f"~{self.size_gb:g} GB ({self.quant})"]
        if self.moe:
            parts.append(f"{self.params_b:g}B parameters, {self.active_b:g}B active: runs at the speed of a "
                         f"{self.active_b:g}B model but needs the memory of a {self.params_b:g}B one")
        elif self.params_b:
            parts.append(f"{self.params_b:g}B parameters")
        return "  ·  ".join(parts)


STARTERS: tuple[StarterModel, ...] = (
    StarterModel("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama 3.2 1B Instruct", "Llama", "llama3.2", 0.8,
                 "Any laptop, even with 8 GB of memory; fast on CPU. Good for quick questions and drafts.",
                 params_b=1.2),
    StarterModel("bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama 3.2 3B Instruct", "Llama", "llama3.2", 2.0,
                 "Laptops with 8 GB or more; a good first model on a CPU-only machine.", params_b=3.2),
    StarterModel("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "Llama 3.1 8B Instruct", "Llama", "llama3.1", 4.9,
                 "16 GB laptops, Apple Silicon Macs, or a GPU with 8 GB; the all-rounder.", params_b=8.0),
    StarterModel("bartowski/Llama-3.3-70B-Instruct-GGUF", "Llama 3.3 70B Instruct", "Llama", "llama3.3", 42.5,
                 "Mac Studio class machines (64 GB or more) or 48 GB of GPU memory.", params_b=70.6),
    StarterModel("unsloth/Llama-4-Scout-17B-16E-Instruct-GGUF", "Llama 4 Scout 17B-16E Instruct", "Llama",
                 "llama4", 65.4, "Mac Studio / 64 GB+ class machines (96 GB for long contexts); 16 experts.",
                 params_b=109, active_b=17),
    StarterModel("Qwen/Qwen3-4B-GGUF", "Qwen 3 4B", "Qwen", "apache-2.0", 2.5,
                 "8 GB laptops; thinks before it answers (switch Think off in the chat settings).", params_b=4.0),
    StarterModel("Qwen/Qwen3-8B-GGUF", "Qwen 3 8B", "Qwen", "apache-2.0", 5.0,
                 "16 GB machines; a reasoning model, strong at code and many languages.", params_b=8.2),
    StarterModel("Qwen/Qwen3-30B-A3B-GGUF", "Qwen 3 30B-A3B", "Qwen", "apache-2.0", 18.6,
                 "32 GB machines; 128 experts, 8 used per token, so it answers fast even on a CPU.",
                 params_b=30.5, active_b=3.3),
    StarterModel("bartowski/google_gemma-3-4b-it-GGUF", "Gemma 3 4B Instruct", "Gemma", "gemma", 2.5,
                 "8 to 16 GB laptops; Gemma terms of use.", params_b=3.9),
    StarterModel("bartowski/google_gemma-3-12b-it-GGUF", "Gemma 3 12B Instruct", "Gemma", "gemma", 7.3,
                 "16 to 32 GB machines; Gemma terms of use.", params_b=11.8),
    StarterModel("ggml-org/gpt-oss-20b-GGUF", "gpt-oss 20B", "gpt-oss", "apache-2.0", 12.1,
                 "16 GB+ machines; OpenAI's open reasoning model, thinking shown apart; 32 experts, 4 per token.",
                 quant="MXFP4", params_b=21, active_b=3.6),
    StarterModel("bartowski/mistralai_Mistral-Small-3.2-24B-Instruct-2506-GGUF", "Mistral Small 3.2 24B Instruct",
                 "Mistral", "apache-2.0", 14.3, "32 GB machines or a 16 GB GPU; Apache 2.0 licensed.",
                 params_b=24),
    StarterModel("bartowski/microsoft_Phi-4-mini-instruct-GGUF", "Phi-4 mini Instruct", "Phi", "mit", 2.5,
                 "8 GB laptops; MIT licensed, long context.", params_b=3.8),
)
