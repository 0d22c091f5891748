#!/usr/bin/env bash
# GPU check of the placement planner (issue 24), for a machine with one NVIDIA GPU and no network.
# NOT RUN YET: no GPU was available to this project when it was written.
#
# Prepare here (with network), then carry benchmarks/.gpu_check/ to the GPU machine:
#   benchmarks/gpu_check.sh prepare [GPU_MEM_GB] [GPU_NAME]     (default: 141 H200)
#     - the vendored llama.cpp of the pinned llama-cpp-python sdist, without its tests, vocabularies and
#       model templates (the sdist whole is too large to carry);
#     - the two test models and the tiny MoE GGUF (tests/gguf_files.py);
#     - the planner's plans for them on that GPU (`paddock models fit --gpu-mem GB --json`).
# On the GPU machine:
#   benchmarks/gpu_check.sh run
#     - builds llama.cpp with CUDA for this GPU's architecture only (llama-cli, llama-bench);
#     - loads each model with the plan's -ngl / --n-cpu-moe and records the load log's buffer sizes;
#     - runs llama-bench (pp512, tg128) the same way;
#     - writes benchmarks/.gpu_check/results.json: plan (GPU/RAM bytes, tokens/s) against actual.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
WORK="$HERE/.gpu_check"
mkdir -p "$WORK"

prepare() {
    local py="$ROOT/.venv/bin/python" gb="${1:-141}" name="${2:-H200}"
    local version
    version="$("$py" -c 'import sys; sys.path.insert(0, "scripts"); from install_llama_cpp import LLAMA_CPP_PYTHON_VERSION as v; print(v)')"
    "$py" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$WORK/sdist" -q
    tar -xzf "$WORK"/sdist/llama_cpp_python-*.tar.gz -C "$WORK"
    rm -rf "$WORK/llama.cpp"
    mv "$WORK"/llama_cpp_python-*/vendor/llama.cpp "$WORK/llama.cpp"
    rm -rf "$WORK"/llama_cpp_python-* "$WORK/sdist" "$WORK/llama.cpp/models" "$WORK/llama.cpp/tests" \
           "$WORK/llama.cpp/docs" "$WORK/llama.cpp/media" "$WORK/llama.cpp/examples/"*/*.gguf
    (cd "$ROOT" && "$py" - "$WORK" "$gb" "$name" <<'EOF'
import json, subprocess, sys
from pathlib import Path
from benchmarks.engine_bench import test_model
from scripts.test_models import smollm2
from tests.gguf_files import tiny_moe
work, gb, gpu = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
models = {"gemma": test_model(), "smollm2": smollm2()}
models["tiny_moe"] = tiny_moe(models["smollm2"], work / "tiny-moe.gguf")
plans = {}
for name, path in models.items():
    target = work / Path(path).name
    if target != Path(path):
        target.write_bytes(Path(path).read_bytes())
    out = subprocess.run([sys.executable, "-m", "app", "models", "fit", str(target), "--gpu-mem", gb, "--gpu-name", gpu,
                          "--ctx", "2048", "--json"], capture_output=True, text=True, check=True).stdout
    plans[name] = {"file": target.name, **json.loads(out)}
(work / "plans.json").write_text(json.dumps(plans, indent=2))
EOF
    )
    du -sh "$WORK"
}

run() {
    local build="$WORK/build"
    local arch
    arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)"
    cmake -S "$WORK/llama.cpp" -B "$build" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j "$(nproc)" --target llama-cli llama-bench >/dev/null
    python3 - "$WORK" "$build/bin" "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" <<'EOF'
import json, re, subprocess, sys
from pathlib import Path
work, bin_dir, gpu = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
plans = json.loads((work / "plans.json").read_text())
results = {"gpu": gpu, "models": {}}
for name, plan in plans.items():
    model = str(work / plan["file"])
    ngl = str(plan["n_gpu_layers"] if plan["n_gpu_layers"] >= 0 else 999)
    moe = ["--n-cpu-moe", str(plan["n_cpu_moe"])] if plan["n_cpu_moe"] else []
    log = subprocess.run([str(bin_dir / "llama-cli"), "-m", model, "-ngl", ngl, *moe, "-c", "2048", "-n", "8",
                          "-p", "Once upon a time", "-no-cnv", "--temp", "0", "-v"],
                         capture_output=True, text=True, timeout=300).stderr
    buffers = {m.group(1): float(m.group(2)) for m in re.finditer(r"(\S+) model buffer size =\s+([\d.]+) MiB", log)}
    bench = subprocess.run([str(bin_dir / "llama-bench"), "-m", model, "-ngl", ngl, *moe, "-p", "512", "-n", "128",
                            "-r", "3", "-o", "json"], capture_output=True, text=True, timeout=300)
    rows = json.loads(bench.stdout) if bench.returncode == 0 else []
    speeds = {("prompt" if r["n_gen"] == 0 else "decode"): r["avg_ts"] for r in rows}
    results["models"][name] = {
        "plan_gpu_mib": plan["gpu_bytes"] / 2**20, "plan_ram_mib": plan["ram_bytes"] / 2**20,
        "actual_model_buffers_mib": buffers,
        "predicted_decode": plan["predicted_tokens_per_s"], "measured_decode": speeds.get("decode"),
        "predicted_prompt": plan["predicted_prompt_tokens_per_s"], "measured_prompt": speeds.get("prompt"),
    }
    print(name, json.dumps(results["models"][name]))
(work / "results.json").write_text(json.dumps(results, indent=2))
EOF
}

case "${1:-}" in
    prepare) prepare "${2:-141}" "${3:-H200}" ;;
    run) run ;;
    *) echo "usage: $0 prepare [GPU_MEM_GB] | run" >&2; exit 2 ;;
esac
