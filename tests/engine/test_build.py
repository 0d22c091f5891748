"""The installed llama.cpp is the safe build, and dependency floors hold."""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version

from app.engine.buildcheck import missing_parts, unsafe_features


def test_installed_llama_cpp_has_no_amx_or_avx512() -> None:
    import llama_cpp

    assert llama_cpp.__version__ == "0.3.36"
    info = llama_cpp.llama_print_system_info().decode()
    assert unsafe_features(info) == []
    assert "AVX2 = 1" in info or "NEON = 1" in info


def test_build_has_images_and_rpc() -> None:
    """libmtmd (images) and the RPC backend (workers) are in the build: one build serves both issues."""
    from llama_cpp import mtmd_cpp

    assert missing_parts() == []
    assert mtmd_cpp.mtmd_default_marker().decode() == "<__media__>"


def test_unsafe_features_parser() -> None:
    info = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 0 | AMX_INT8 = 1 | "
    assert unsafe_features(info) == ["AMX_INT8", "AVX512"]


def test_dependency_floors() -> None:
    assert Version(version("Jinja2")) >= Version("3.1.6")
    assert Version(version("huggingface_hub")) >= Version("1.26")
    assert Version(version("pypdf")) >= Version("6.7.2")
