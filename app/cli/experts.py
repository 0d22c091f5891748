"""``--cpu-moe`` / ``--n-cpu-moe N``: MoE experts in RAM, as llama.cpp's tools take them (fit, chat, serve)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from app.errors import PaddockError

if TYPE_CHECKING:
    from app.engine.placement import ExpertMode


def add_expert_args(p: argparse.ArgumentParser) -> None:
    """``--cpu-moe`` / ``--n-cpu-moe N`` as llama.cpp's tools take them (shared by fit, chat and serve)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--cpu-moe", action="store_true", help="keep the MoE experts of every layer in RAM")
    group.add_argument("--n-cpu-moe", type=int, default=None, metavar="N",
                       help="keep the MoE experts of the first N layers in RAM")


def expert_mode(args: argparse.Namespace) -> tuple[ExpertMode, int]:
    """("auto" | "all" | "first", N) from ``--cpu-moe`` / ``--n-cpu-moe``."""
    if getattr(args, "cpu_moe", False):
        return "all", 0
    n = getattr(args, "n_cpu_moe", None)
    if n is not None:
        if n < 0:
            raise PaddockError("--n-cpu-moe takes a number of layers (0 or more)")
        return "first", n
    return "auto", 0


def n_cpu_moe(args: argparse.Namespace) -> int | None:
    """LoadSettings.n_cpu_moe from ``--cpu-moe`` (-1: every layer) / ``--n-cpu-moe N`` (None: the planner's)."""
    mode, n = expert_mode(args)
    return -1 if mode == "all" else n if mode == "first" else None
