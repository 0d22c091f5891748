"""Paddock side by side with llama.cpp itself, on the same model, machine, threads and build flags.

    .venv/bin/python -m benchmarks [--runs 5] [--model PATH]

Builds llama.cpp's ``llama-bench`` and ``llama-server`` from the source vendored in
the pinned llama-cpp-python (``benchmarks/peer.py``, cached), then measures, each
as a median of ``--runs`` after a warm-up:

1. decode tg128 and prompt pp512: Paddock's engine API vs ``llama-bench``;
2. app-path decode for 256- and 2,048-token answers: what a consumer of the
   stream sees (the engine's Python stream, and the GUI controller's signals);
3. cold time to first token for 64/512/2,048-token prompts vs ``llama-server``;
4. a scripted 10-turn chat: prompt tokens evaluated vs reused, TTFT per turn;
5. GUI event-loop stalls (a 5 ms heartbeat timer's lateness) while streaming
   and while indexing documents;
6. model load time (warm and cold page cache) and the app's memory beyond the
   model file;
7. decode speed against this machine's memory bandwidth;
8. embedding throughput (chunks/s at ~256 tokens).

Writes benchmarks/results/compare.json, compare.md and plots (PNG, when
matplotlib is installed).  Not part of CI: it takes several minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from app.engine.client import Engine
from app.engine.types import LoadSettings, SamplingParams
from benchmarks.engine_bench import COUNTING, RESULTS, fresh_prompt, multi_turn, test_model
from benchmarks.peer import build as build_peer


def med(values: list[float]) -> float:
    return float(statistics.median(values))


# -- the peer ------------------------------------------------------------------------------


def llama_bench(bin_dir: Path, model: Path, threads: int, runs: int) -> dict[str, float]:
    out = subprocess.run(
        [str(bin_dir / "llama-bench"), "-m", str(model), "-p", "512", "-n", "128", "-t", str(threads),
         "-r", str(runs), "-o", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = json.loads(out)
    result = {}
    for row in rows:
        key = "pp512" if row["n_prompt"] == 512 and row["n_gen"] == 0 else "tg128"
        result[key] = med([float(x) for x in row.get("samples_ts") or [row["avg_ts"]]])
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def llama_server_ttft(bin_dir: Path, model: Path, threads: int, runs: int) -> dict[int, dict[str, float]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(bin_dir / "llama-server"), "-m", str(model), "-t", str(threads), "-c", "4096", "--port", str(port),
         "--host", "127.0.0.1", "-np", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        out: dict[int, dict[str, float]] = {}
        for n in (64, 512, 2048):
            prompt_ms, wall = [], []
            for i in range(runs + 1):
                body = json.dumps({"prompt": fresh_prompt(i, n), "n_predict": 1, "cache_prompt": False,
                                   "temperature": 0}).encode()
                req = urllib.request.Request(f"{url}/completion", body, {"Content-Type": "application/json"})
                t = time.perf_counter()
                with urllib.request.urlopen(req, timeout=300) as r:
                    data = json.loads(r.read())
                elapsed = time.perf_counter() - t
                if i == 0:
                    continue
                prompt_ms.append(float(data["timings"]["prompt_ms"]))
                wall.append(elapsed)
            out[n] = {"prompt_s": med(prompt_ms) / 1000, "http_wall_s": med(wall)}
        return out
    finally:
        proc.terminate()
        proc.wait(10)


# -- Paddock -------------------------------------------------------------------------------


def paddock_engine(eng: Engine, runs: int) -> dict[str, Any]:
    greedy = SamplingParams(temperature=0.0, max_tokens=128)
    eng.generate([], greedy, raw_prompt=COUNTING)
    tg = [eng.generate([], greedy, raw_prompt=COUNTING).stats.tokens_per_s for _ in range(runs)]
    out: dict[str, Any] = {"tg128": med(tg)}
    pp, ttft = [], {}
    for n in (64, 512, 2048):
        values = []
        for i in range(runs + 1):
            r = eng.generate([], SamplingParams(temperature=0.0, max_tokens=1), raw_prompt=fresh_prompt(i + 100, n))
            if i == 0:
                continue
            values.append(r.stats.ttft_s)
            if n == 512:
                pp.append(r.stats.prompt_evaluated / r.stats.ttft_s)
        ttft[n] = med(values)
    out["pp512"] = med(pp)
    out["ttft"] = ttft
    return out


def stream_consumer(eng: Engine, n: int, runs: int) -> dict[str, float]:
    """Tokens/s as the receiving side of the engine's stream sees it, and the engine's own figure."""
    seen, engine = [], []
    for _ in range(runs):
        gen = eng.stream([], SamplingParams(temperature=0.0, max_tokens=n), raw_prompt=COUNTING)
        first = last = 0.0
        for _piece in gen:
            last = time.perf_counter()
            first = first or last
        result = gen.result
        assert result is not None
        seen.append((result.stats.completion_tokens - 1) / max(last - first, 1e-9))
        engine.append(result.stats.tokens_per_s)
    return {"consumer_tok_s": med(seen), "engine_tok_s": med(engine)}


def cli_json(model: Path, n: int, runs: int, threads: int) -> float:
    speeds = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-m", "app.cli", "chat", "--model", str(model), "--raw", "--json", "--temperature", "0",
             "--max-tokens", str(n), "--ctx", "4096", "--threads", str(threads), COUNTING],
            check=True, capture_output=True, text=True,
        )
        speeds.append(float(json.loads(out.stdout)["tokens_per_s"]))
    return med(speeds)


def load_times(model: Path, runs: int) -> dict[str, float]:
    warm, cold = [], []
    for i in range(runs * 2):
        if i % 2:
            with model.open("rb") as fh:  # drop this file's clean pages from the page cache (no root needed)
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        with Engine() as eng:
            t = time.perf_counter()
            eng.load(str(model), LoadSettings(n_ctx=4096))
            (cold if i % 2 else warm).append(time.perf_counter() - t)
    return {"warm_s": med(warm), "cold_s": med(cold)}


def memory_bandwidth() -> float:
    """GB/s of a large read (best of 5, all cores): the ceiling decode speed is measured against."""
    import threading

    n_threads = psutil.cpu_count(logical=False) or 1
    blocks = [np.ones(64 * 2**20 // 8 * 4, dtype=np.float64) for _ in range(n_threads)]  # 256 MB each
    best = 0.0
    for _ in range(5):
        threads = [threading.Thread(target=b.sum) for b in blocks]  # numpy releases the GIL
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t
        best = max(best, sum(b.nbytes for b in blocks) / elapsed / 1e9)
    return best


def gui_stalls(model: Path, corpus: Path) -> dict[str, dict[str, float]]:
    """Heartbeat lateness on the GUI thread while an answer streams, and while documents index."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from app import paths
    from app.store.chats import ChatStore
    from app.ui.controller import ChatController
    from app.ui.window import MainWindow

    app = QApplication.instance() or QApplication([])
    store = ChatStore(paths.database_path())
    store.set_setting("default_sampling", SamplingParams(temperature=0.0, max_tokens=512).to_dict())
    controller = ChatController(store, Engine(), LoadSettings(n_ctx=4096))
    window = MainWindow(controller)
    window.show()
    window.new_chat(str(model))
    results: dict[str, dict[str, float]] = {}

    def measure(start: Any, done: Any) -> dict[str, float]:
        late: list[float] = []
        clock = QElapsedTimer()
        timer = QTimer()
        timer.setInterval(5)
        state = {"last": 0}

        def beat() -> None:
            now = clock.elapsed()
            late.append(max(0, now - state["last"] - 5))
            state["last"] = now

        timer.timeout.connect(beat)
        clock.start()
        timer.start()
        start()
        while not done():
            app.processEvents()
            time.sleep(0.001)
        timer.stop()
        late.sort()
        return {"beats": len(late), "p99_ms": float(np.percentile(late, 99)) if late else 0.0,
                "max_ms": float(max(late, default=0.0))}

    window.controller._ensure_model(str(model))  # load first: the stall while loading is not streaming
    streamed = {"done": False}
    controller.streamFinished.connect(lambda *_: streamed.update(done=True))

    def send() -> None:
        window.composer.setPlainText("Count from one to five hundred.")
        window.send()

    results["streaming"] = measure(send, lambda: streamed["done"])
    hub = window.docs

    def index() -> None:
        window.attach_paths([corpus])

    def indexed() -> bool:
        if window.current_conv is None:
            return False
        docs = hub.documents(window.current_conv)
        return bool(docs) and all(d.state in ("ready", "failed") for d, _c in docs)

    results["indexing"] = measure(index, indexed)
    window.close()
    store.close()
    return results


def embedding_throughput() -> dict[str, Any]:
    from app.docs.embed import Embedder
    from benchmarks.embedder import OUT

    model = OUT if OUT.exists() else test_model()
    embedder = Embedder(model)
    try:
        chunk = " ".join(["the lighthouse lamp uses a fresnel lens and the keeper lights it at dusk"] * 18)
        embedder.embed([chunk])  # load
        texts = [f"{i} {chunk}" for i in range(64)]
        t = time.perf_counter()
        embedder.embed(texts)
        elapsed = time.perf_counter() - t
    finally:
        embedder.close()
    return {"model": model.name, "chunks_per_s": len(texts) / elapsed}


# -- report ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    runs = args.runs
    model = args.model or test_model()
    threads = psutil.cpu_count(logical=False) or 1
    bin_dir = build_peer()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {threads} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                                 text=True).stdout.strip(),
        "model": model.name, "threads": threads, "runs": runs,
    }
    print("llama-bench…", file=sys.stderr)
    report["llama_bench"] = llama_bench(bin_dir, model, threads, runs)
    print("llama-server…", file=sys.stderr)
    report["llama_server_ttft"] = llama_server_ttft(bin_dir, model, threads, runs)
    print("Paddock engine…", file=sys.stderr)
    with Engine() as eng:
        eng.load(str(model), LoadSettings(n_ctx=4096, n_threads=threads))
        report["paddock"] = paddock_engine(eng, runs)
        report["app_path"] = {n: stream_consumer(eng, n, max(3, runs // 2)) for n in (256, 2048)}
        report["multi_turn"] = multi_turn(eng)
        child = psutil.Process(eng.pid) if eng.pid else None
        child_rss = child.memory_info().rss if child else 0
    report["cli_json_tok_s"] = {n: cli_json(model, n, 3, threads) for n in (256, 2048)}
    parent_rss = psutil.Process().memory_info().rss
    print("load times…", file=sys.stderr)
    report["load"] = load_times(model, runs)
    size = model.stat().st_size
    report["memory"] = {"model_file_mb": size / 1e6, "engine_rss_mb": child_rss / 1e6,
                        "engine_beyond_model_mb": (child_rss - size) / 1e6, "app_parent_rss_mb": parent_rss / 1e6}
    bw = memory_bandwidth()
    report["bandwidth"] = {"read_gb_s": bw, "bytes_per_token_gb": size / 1e9,
                           "fraction_of_bandwidth": report["paddock"]["tg128"] * size / 1e9 / bw}
    print("GUI stalls…", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PADDOCK_HOME"] = str(Path(tmp) / "home")
        from benchmarks.retrieval_eval import write_corpus

        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        write_corpus(corpus, 40)
        report["gui"] = gui_stalls(model, corpus)
    print("embeddings…", file=sys.stderr)
    report["embedding"] = embedding_throughput()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps(report, indent=2, default=str))
    md = render(report)
    (RESULTS / "compare.md").write_text(md)
    plots(report)
    print(md)
    return 0


def render(r: dict[str, Any]) -> str:
    p, lb, srv = r["paddock"], r["llama_bench"], r["llama_server_ttft"]
    rows = [
        ("Decode tg128, tokens/s", f"{p['tg128']:.1f}", f"{lb['tg128']:.1f}", p["tg128"] / lb["tg128"], "≥ 0.95"),
        ("Prompt pp512, tokens/s", f"{p['pp512']:.1f}", f"{lb['pp512']:.1f}", p["pp512"] / lb["pp512"], "≥ 0.95"),
    ]
    for n in (256, 2048):
        a = r["app_path"][n]
        rows.append((f"App path, {n}-token answer: stream consumer, tokens/s", f"{a['consumer_tok_s']:.1f}",
                     f"{lb['tg128']:.1f}", a["consumer_tok_s"] / lb["tg128"], "≥ 0.95 × (1)"))
        rows.append((f"App path, {n}-token answer: CLI --json, tokens/s", f"{r['cli_json_tok_s'][n]:.1f}",
                     f"{lb['tg128']:.1f}", r["cli_json_tok_s"][n] / lb["tg128"], ""))
    for n in (64, 512, 2048):
        rows.append((f"Cold TTFT, {n}-token prompt, s (llama-server: prompt_ms)", f"{p['ttft'][n]:.3f}",
                     f"{srv[n]['prompt_s']:.3f}", srv[n]["prompt_s"] / p["ttft"][n], "speed ratio"))
    turns = r["multi_turn"]
    later = turns[1:]
    reuse = sum(t["reused"] for t in later) / sum(t["prompt_tokens"] for t in later)
    g = r["gui"]
    lines = [
        f"# Paddock vs llama.cpp ({r['date']}, commit {r['commit']})", "",
        f"{r['machine']}; model {r['model']}; {r['threads']} threads; same llama.cpp source and CMake flags; "
        f"median of {r['runs']} runs after a warm-up. Ratio = Paddock / llama.cpp (higher is better; for TTFT "
        "it is llama.cpp's time / Paddock's time).", "",
        "| metric | Paddock | llama.cpp | ratio | goal |", "|---|---|---|---|---|",
        *[f"| {name} | {a} | {b} | {ratio:.2f} | {goal} |" for name, a, b, ratio, goal in rows],
        "",
        "| other figures | value | goal |", "|---|---|---|",
        f"| Multi-turn: history reused, turns 2–10 | {100 * reuse:.1f} % | ≥ 95 % |",
        f"| GUI stall while streaming: p99 / max | {g['streaming']['p99_ms']:.1f} / {g['streaming']['max_ms']:.1f} ms "
        f"({g['streaming']['beats']} beats) | < 16 / < 50 ms |",
        f"| GUI stall while indexing 40 documents: p99 / max | {g['indexing']['p99_ms']:.1f} / "
        f"{g['indexing']['max_ms']:.1f} ms ({g['indexing']['beats']} beats) | < 16 / < 50 ms |",
        f"| Model load, warm / cold page cache | {r['load']['warm_s']:.2f} / {r['load']['cold_s']:.2f} s | |",
        f"| Engine process memory beyond the model file | {r['memory']['engine_beyond_model_mb']:.0f} MB "
        f"(model {r['memory']['model_file_mb']:.0f} MB) | |",
        f"| App (GUI/CLI parent) memory | {r['memory']['app_parent_rss_mb']:.0f} MB | |",
        f"| Memory read bandwidth (all cores) | {r['bandwidth']['read_gb_s']:.1f} GB/s | |",
        f"| Decode × bytes per token / bandwidth | {100 * r['bandwidth']['fraction_of_bandwidth']:.0f} % | |",
        f"| Embedding throughput ({r['embedding']['model']}, ~256-token chunks) | "
        f"{r['embedding']['chunks_per_s']:.1f} chunks/s | |",
        "", "| turn | prompt tokens | evaluated | reused | TTFT s |", "|---|---|---|---|---|",
        *[f"| {i} | {t['prompt_tokens']} | {t['evaluated']} | {t['reused']} | {t['ttft_s']} |"
          for i, t in enumerate(turns, start=1)],
    ]
    return "\n".join(lines) + "\n"


def plots(r: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lengths = [128, 256, 2048]
    paddock = [r["paddock"]["tg128"], r["app_path"][256]["consumer_tok_s"], r["app_path"][2048]["consumer_tok_s"]]
    ax.plot(lengths, paddock, marker="o", label="Paddock (stream consumer)")
    ax.axhline(r["llama_bench"]["tg128"], color="gray", linestyle="--", label="llama-bench tg128")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("answer length (tokens)")
    ax.set_ylabel("tokens/s")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "tokens_per_s.png", dpi=120)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    turns = r["multi_turn"]
    ax.bar(range(1, len(turns) + 1), [t["ttft_s"] for t in turns], label="TTFT (s)")
    ax2 = ax.twinx()
    ax2.plot(range(1, len(turns) + 1), [t["evaluated"] for t in turns], color="C1", marker="o",
             label="tokens evaluated")
    ax.set_xlabel("turn")
    ax.set_ylabel("time to first token (s)")
    ax2.set_ylabel("prompt tokens evaluated")
    fig.tight_layout()
    fig.savefig(RESULTS / "ttft_per_turn.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
