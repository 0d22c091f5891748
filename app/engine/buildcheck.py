"""Check that the installed llama.cpp build avoids the CPU paths known to crash.

llama-cpp-python 0.3.36 built natively on Intel CPUs with AMX (Sapphire Rapids
and newer) segfaults in ``llama_decode``; our build script disables AMX and
AVX-512.  pip may still install a wheel it built earlier with other flags, so
setup verifies the flags actually compiled in.
"""

from __future__ import annotations

import sys


def unsafe_features(system_info: str) -> list[str]:
    """CPU features in llama.cpp's system info that our safe build never enables."""
    flags = {}
    for part in system_info.replace("|", " | ").split("|"):
        if "=" in part:
            key, _, value = part.partition("=")
            flags[key.strip().split(":")[-1].strip()] = value.strip()
    return sorted(k for k, v in flags.items() if v == "1" and (k.startswith(("AMX", "AVX512"))))


def missing_parts() -> list[str]:
    """The parts of llama.cpp Paddock needs that this build lacks: libmtmd (images) and the RPC
    backend (workers on other machines)."""
    import llama_cpp

    missing = []
    try:
        from llama_cpp import mtmd_cpp

        mtmd_cpp.mtmd_default_marker()
    except (ImportError, OSError, AttributeError) as exc:
        missing.append(f"libmtmd, for images ({exc})")
    if not llama_cpp.llama_supports_rpc():
        missing.append("the RPC backend, for workers (GGML_RPC)")
    return missing


def main() -> int:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    print(f"llama-cpp-python {llama_cpp.__version__}: {info.strip()}")
    missing = missing_parts()
    if missing:
        print(
            "This llama.cpp build lacks " + " and ".join(missing) + ". Rebuild with: python "
            "scripts/install_llama_cpp.py (it builds both; PADDOCK_LLAMA_CMAKE_ARGS replaces its flags).",
            file=sys.stderr,
        )
        return 1
    bad = unsafe_features(info)
    if bad:
        print(
            "This llama.cpp build enables " + ", ".join(bad) + ", which crash on some CPUs. "
            "Rebuild with: python scripts/install_llama_cpp.py (or set PADDOCK_LLAMA_CMAKE_ARGS "
            "deliberately).",
            file=sys.stderr,
        )
        return 1
    return 0
