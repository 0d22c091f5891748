"""Paddock side by side with llama.cpp itself, on the same model, machine, threads and build flags.

    .venv/bin/python -m benchmarks [--runs 5] [--model PATH]

Builds llama.cpp's ``llama-bench`` and ``llama-server`` from the source vendored in
the pinned llama-cpp-python (``benchmarks/peer.py``, cached), then measures, each
as a median of ``--runs`` after a warm-up.  The machine's speed drifts (shared
cores), so every Paddock speed run is paired with a llama-bench run made just
before it, and ratios are medians of the pair ratios.

1. decode tg128 and prompt pp512: Paddock's engine API vs ``llama-bench``
   (decode also with the app's default sampling);
2. app-path decode for 256- and 2,048-token answers: what a consumer of the
   engine's stream, ``paddock chat --json`` and the GUI thread see, against
   llama-bench decoding as many tokens (tg256, tg2048);
3. cold time to first token for 64/512/2,048-token prompts vs ``llama-server``;
4. a scripted 10-turn chat: history reused from the KV cache, tokens evaluated,
   TTFT per turn, and the last prompt again from a cold cache;
5. GUI event-loop stalls (a 5 ms heartbeat timer's lateness) while streaming
   and while indexing documents;
6. model load time (warm and cold page cache) and the app's memory beyond the
   model file;
7. decode speed against this machine's memory bandwidth;
8. embedding throughput (chunks/s at ~256 tokens);
9. kept states and speculative decoding (``benchmarks/kv_reuse.py``): document
   follow-ups, chat switches and restarts, quoting answers against llama-bench;
10. images (``benchmarks/images.py``): encode time and tokens per picture, time to first
   token with a picture against its words, and of a follow-up (never encoded twice);
11. whole documents against passages (``benchmarks/whole_docs.py``): list recall, count
   exactness, summary coverage, time and KV reuse of the map prompt on a generated log
   larger than the context;
12. long chats (``benchmarks/long_chat.py``): switching to chats of 10, 100 and 1,000
   messages and scrolling the longest, event-loop stalls and memory;
13. decode speed of plain and quoting answers, drafts on and off, both test models
   (``benchmarks/decode_speed.py``);
14. soak: 200 answers over 10 chats in the real window, then File > Quit
   (``benchmarks/soak.py``: memory growth, reference-count drift, stalls, exit code).

Writes benchmarks/results/compare.json, compare.md and plots (PNG, when
matplotlib is installed).  Not part of CI: it takes several minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
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
from benchmarks.engine_bench import median as med
from benchmarks.peer import build as build_peer
from benchmarks.peer import llama_bench


def paired(pairs: list[tuple[float, float]], ours: str = "paddock", theirs: str = "llama_bench",
           lower_is_better: bool = False) -> dict[str, float]:
    """Medians of (Paddock, llama.cpp) pairs, and the median of the pair ratios
    (Paddock / llama.cpp, or llama.cpp / Paddock for times)."""
    ratios = [b / a if lower_is_better else a / b for a, b in pairs]
    return {ours: med([a for a, _ in pairs]), theirs: med([b for _, b in pairs]), "ratio": med(ratios)}


# -- the peer ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """llama-server on a free port (one slot, no prompt cache reuse between requests)."""

    def __init__(self, bin_dir: Path, model: Path, threads: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(bin_dir / "llama-server"), "-m", str(model), "-t", str(threads), "-c", "4096", "--port",
             str(self.port), "--host", "127.0.0.1", "-np", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("llama-server did not start")

    def prompt_s(self, prompt: str) -> float:
        """The server's own prompt-processing time for ``prompt`` (its ``timings.prompt_ms``)."""
        body = json.dumps({"prompt": prompt, "n_predict": 1, "cache_prompt": False, "temperature": 0}).encode()
        req = urllib.request.Request(f"{self.url}/completion", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            data = json.loads(r.read())
        return float(data["timings"]["prompt_ms"]) / 1000

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- Paddock -------------------------------------------------------------------------------


def paired_speed(eng: Engine, bin_dir: Path, model: Path, threads: int, runs: int) -> dict[str, Any]:
    """tg128 and pp512, Paddock and llama-bench taking turns run by run.

    This shared machine's speed drifts by 10 % within minutes (other tenants), so
    each Paddock run is paired with a llama-bench run made just before it, and the
    ratio is the median of the per-pair ratios."""
    greedy = SamplingParams(temperature=0.0, max_tokens=129)  # 128 decode steps after the first token
    eng.generate([], greedy, raw_prompt=COUNTING)  # warm-up
    eng.generate([], SamplingParams(temperature=0.0, max_tokens=1), raw_prompt=fresh_prompt(99, 512))
    pairs: dict[str, list[tuple[float, float]]] = {"tg128": [], "tg128_default": [], "pp512": []}
    for i in range(2 * runs):  # cheap runs: twice as many pairs tighten the medians
        peer_pp = med(llama_bench(bin_dir, model, threads, 512, 0, 1))
        r = eng.generate([], SamplingParams(temperature=0.0, max_tokens=1), raw_prompt=fresh_prompt(i + 100, 512))
        pairs["pp512"].append((r.stats.prompt_evaluated / r.stats.ttft_s, peer_pp))
        peer_tg = med(llama_bench(bin_dir, model, threads, 0, 128, 1))
        pairs["tg128"].append((eng.generate([], greedy, raw_prompt=COUNTING).stats.tokens_per_s, peer_tg))
        # the app's default sampling (temperature 0.7, top-k 40, top-p 0.95, min-p 0.05); llama-bench samples nothing
        default = eng.generate([], SamplingParams(max_tokens=129, seed=i), raw_prompt=COUNTING)
        pairs["tg128_default"].append((default.stats.tokens_per_s, peer_tg))
    return {key: {**paired(v), "pairs": v} for key, v in pairs.items()}


def paired_ttft(eng: Engine, server: LlamaServer, runs: int) -> dict[int, dict[str, float]]:
    """Cold time to first token for 64/512/2,048-token prompts, Paddock and llama-server
    taking turns on the same fresh prompts (the first pair is a warm-up)."""
    out = {}
    for n in (64, 512, 2048):
        pairs = []
        for i in range(runs + 1):
            prompt = fresh_prompt(i + 100, n)
            peer = server.prompt_s(prompt)
            r = eng.generate([], SamplingParams(temperature=0.0, max_tokens=1), raw_prompt=prompt)
            if i:
                pairs.append((r.stats.ttft_s, peer))
        out[n] = {**paired(pairs, "paddock_s", "llama_server_s", lower_is_better=True),
                  "tokens": r.stats.prompt_evaluated}
    return out


def app_path(eng: Engine, bin_dir: Path, model: Path, threads: int, n: int, runs: int) -> dict[str, Any]:
    """Tokens/s as the receiving side of the engine's stream sees it, paired with
    llama-bench decoding the same number of tokens (tg256, tg2048): a longer answer
    attends over a longer KV cache, so llama.cpp itself slows down with length."""
    pairs, engine = [], []
    for _ in range(runs):
        peer = med(llama_bench(bin_dir, model, threads, 0, n, 1))
        gen = eng.stream([], SamplingParams(temperature=0.0, max_tokens=n + 1), raw_prompt=COUNTING)
        first = last = 0.0
        for _piece in gen:
            last = time.perf_counter()
            first = first or last
        result = gen.result
        assert result is not None
        # the first piece leaves with the first token; the rest are n decode steps
        pairs.append(((result.stats.completion_tokens - 1) / max(last - first, 1e-9), peer))
        engine.append(result.stats.tokens_per_s)
    return {**paired(pairs, "consumer_tok_s", "llama_bench_tok_s"), "engine_tok_s": med(engine)}


def cli_json(bin_dir: Path, model: Path, n: int, runs: int, threads: int) -> dict[str, float]:
    """``paddock chat --json`` (a fresh process and engine each run), paired with llama-bench tg<n>."""
    pairs = []
    for _ in range(runs):
        peer = med(llama_bench(bin_dir, model, threads, 0, n, 1))
        out = subprocess.run(
            [sys.executable, "-m", "app.cli", "chat", "--model", str(model), "--raw", "--json", "--temperature", "0",
             "--max-tokens", str(n + 1), "--ctx", "4096", "--threads", str(threads), COUNTING],
            check=True, capture_output=True, text=True,
        )
        pairs.append((float(json.loads(out.stdout)["tokens_per_s"]), peer))
    return paired(pairs, "tok_s", "llama_bench_tok_s")


def load_times(model: Path, runs: int) -> dict[str, float]:
    warm: list[float] = []
    cold: list[float] = []
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


def gui_stalls(model: Path, corpus: Path) -> dict[str, dict[str, Any]]:
    """Heartbeat lateness on the GUI thread while an answer streams, and while documents index."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app import paths
    from app.store.chats import ChatStore
    from app.ui.chat.controller import ChatController
    from app.ui.window import MainWindow

    _app = QApplication.instance() or QApplication([])
    store = ChatStore(paths.database_path())
    store.set_setting("default_sampling", SamplingParams(temperature=0.0, max_tokens=512).to_dict())
    controller = ChatController(store, Engine(), LoadSettings(n_ctx=4096))
    window = MainWindow(controller)
    window.show()
    window.new_chat(str(model))
    results: dict[str, dict[str, Any]] = {}

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
        loop = QEventLoop()
        check = QTimer()  # the app's own event loop runs; a slow timer only looks for the end
        check.setInterval(50)
        check.timeout.connect(lambda: loop.quit() if done() else None)
        clock.start()
        timer.start()
        check.start()
        start()
        loop.exec()
        check.stop()
        timer.stop()
        late.sort()
        return {"beats": len(late), "p99_ms": float(np.percentile(late, 99)) if late else 0.0,
                "max_ms": float(max(late, default=0.0))}

    window.controller._ensure_model(str(model))  # load first: the stall while loading is not streaming
    streamed: dict[str, Any] = {"done": False, "times": [], "tokens": 0}
    controller.streamText.connect(lambda *_: streamed["times"].append(time.perf_counter()))

    def finished(_conv: int, _msg: int, _status: str, _error: str, stats: dict[str, Any]) -> None:
        streamed.update(done=True, tokens=int(stats.get("completion_tokens", 0)),
                        engine_tok_s=float(stats.get("tokens_per_s", 0.0)))

    controller.streamFinished.connect(finished)

    def send() -> None:
        window.chat_page.composer.setPlainText("Write a long essay about the history of Rome.")
        window.chat_page.send()

    results["streaming"] = measure(send, lambda: streamed["done"])
    times = streamed["times"]
    if len(times) > 1 and streamed["tokens"] > 1:
        # tokens/s as the GUI thread receives them (the first piece leaves with the first token)
        results["streaming"]["gui_tok_s"] = (streamed["tokens"] - 1) / (times[-1] - times[0])
        results["streaming"]["tokens"] = streamed["tokens"]
        results["streaming"]["engine_tok_s"] = streamed["engine_tok_s"]
    hub = window.docs

    def index() -> None:
        window.chat_page.attach_paths([corpus])

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
    print("Paddock engine with llama-bench and llama-server, taking turns…", file=sys.stderr)
    with Engine() as eng:
        eng.load(str(model), LoadSettings(n_ctx=4096, n_threads=threads))
        report["speed"] = paired_speed(eng, bin_dir, model, threads, runs)
        server = LlamaServer(bin_dir, model, threads)
        try:
            report["ttft"] = paired_ttft(eng, server, runs)
        finally:
            server.close()
        report["app_path"] = {n: app_path(eng, bin_dir, model, threads, n, runs if n <= 256 else 3)
                              for n in (256, 2048)}
        report["multi_turn"] = multi_turn(eng)
        child = psutil.Process(eng.pid) if eng.pid else None
        child_rss = child.memory_info().rss if child else 0
    report["cli_json"] = {n: cli_json(bin_dir, model, n, 3, threads) for n in (256, 2048)}
    parent_rss = psutil.Process().memory_info().rss
    print("load times…", file=sys.stderr)
    report["load"] = load_times(model, runs)
    size = model.stat().st_size
    report["memory"] = {"model_file_mb": size / 1e6, "engine_rss_mb": child_rss / 1e6,
                        "engine_beyond_model_mb": (child_rss - size) / 1e6, "app_parent_rss_mb": parent_rss / 1e6}
    bw = memory_bandwidth()
    report["bandwidth"] = {"read_gb_s": bw, "bytes_per_token_gb": size / 1e9,
                           "fraction_of_bandwidth": report["speed"]["tg128"]["paddock"] * size / 1e9 / bw}
    print("GUI stalls…", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PADDOCK_HOME"] = str(Path(tmp) / "home")
        from benchmarks.retrieval_eval import write_corpus

        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        write_corpus(corpus, 40)
        report["gui"] = gui_stalls(model, corpus)
        report["gui"]["streaming"]["llama_bench_tg512"] = med(llama_bench(bin_dir, model, threads, 0, 512, 3))
    print("embeddings…", file=sys.stderr)
    report["embedding"] = embedding_throughput()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps(report, indent=2, default=str))
    md = render(report)
    (RESULTS / "compare.md").write_text(md)
    plots(report)
    print(md)
    from benchmarks import decode_speed, images, kv_reuse, long_chat, soak, whole_docs

    kv_reuse.main([])  # kept states and prompt-lookup drafts (results/kv_reuse.md)
    images.main([])  # encode time, tokens per picture, TTFT with a picture and of a follow-up (results/images.md)
    whole_docs.main([])  # whole-document answers against passages (results/whole_docs.md)
    long_chat.main([])  # switching to and scrolling long chats (results/long_chat.md)
    decode_speed.main([])  # plain and quoting answers, drafts on and off (results/decode_speed.md)
    return soak.main([])  # 200 answers over 10 chats in the real window, then File > Quit


def render(r: dict[str, Any]) -> str:
    sp, ap = r["speed"], r["app_path"]
    rows = [
        ("Decode tg128, tokens/s", sp["tg128"]["paddock"], sp["tg128"]["llama_bench"], sp["tg128"]["ratio"], "≥ 0.95"),
        ("Decode tg128 with the app's default sampling, tokens/s", sp["tg128_default"]["paddock"],
         sp["tg128_default"]["llama_bench"], sp["tg128_default"]["ratio"], ""),
        ("Prompt pp512, tokens/s", sp["pp512"]["paddock"], sp["pp512"]["llama_bench"], sp["pp512"]["ratio"], "≥ 0.95"),
    ]
    for n in (256, 2048):
        a = ap[n]
        rows.append((f"App path, {n}-token answer: stream consumer vs tg{n}, tokens/s", a["consumer_tok_s"],
                     a["llama_bench_tok_s"], a["ratio"], "≥ 0.95"))
        c = r["cli_json"][n]
        rows.append((f"App path, {n}-token answer: CLI --json vs tg{n}, tokens/s", c["tok_s"], c["llama_bench_tok_s"],
                     c["ratio"], "≥ 0.95"))
    gui = r["gui"]["streaming"]
    if gui.get("gui_tok_s"):
        peer = gui["llama_bench_tg512"]
        rows.append((f"App path, GUI thread receiving a {gui['tokens']}-token answer vs tg512, tokens/s",
                     gui["gui_tok_s"], peer, gui["gui_tok_s"] / peer, ""))
        rows.append(("(the engine's own figure for that answer)", gui["engine_tok_s"], peer,
                     gui["engine_tok_s"] / peer, ""))
    ttft_rows = [(f"Cold TTFT, {n}-token prompt, s (llama-server: prompt_ms)", t["paddock_s"], t["llama_server_s"],
                  t["ratio"]) for n, t in r["ttft"].items()]
    turns = r["multi_turn"]["turns"]
    later = turns[1:]
    history = sum(t["history"] for t in later)
    reuse = sum(min(t["reused"], t["history"]) for t in later) / history
    decline_peer = ap[2048]["llama_bench_tok_s"] / ap[256]["llama_bench_tok_s"]
    decline_app = ap[2048]["consumer_tok_s"] / ap[256]["consumer_tok_s"]
    g = r["gui"]
    lines = [
        f"# Paddock vs llama.cpp ({r['date']}, commit {r['commit']})", "",
        f"{r['machine']}; model {r['model']}; {r['threads']} threads; same llama.cpp source and CMake flags; "
        f"median of {r['runs']} runs after a warm-up, each Paddock run paired with a llama.cpp run made just before "
        "it (the ratio is the median of the pair ratios: this shared machine's speed drifts). Higher is better; "
        "for TTFT the ratio is llama.cpp's time / Paddock's time.", "",
        "| metric | Paddock | llama.cpp | ratio | goal |", "|---|---|---|---|---|",
        *[f"| {name} | {a:.1f} | {b:.1f} | {ratio:.2f} | {goal} |" for name, a, b, ratio, goal in rows],
        *[f"| {name} | {a:.3f} | {b:.3f} | {ratio:.2f} | |" for name, a, b, ratio in ttft_rows],
        "",
        f"From a 256- to a 2,048-token answer llama-bench's own decode speed falls to {100 * decline_peer:.0f} % "
        f"(attention over a longer KV cache); Paddock's stream falls to {100 * decline_app:.0f} %.",
        "",
        "| other figures | value | goal |", "|---|---|---|",
        f"| Multi-turn: history reused from the KV cache, turns 2–10 | {100 * reuse:.1f} % | ≥ 95 % |",
        f"| Multi-turn: turn-10 prompt, TTFT with the cache / cold | {r['multi_turn']['warm_ttft_s']:.3f} / "
        f"{r['multi_turn']['cold_ttft_s']:.3f} s ({r['multi_turn']['cold_tokens']} tokens cold) | |",
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
        "", "| turn | prompt tokens | history (cached before) | evaluated | reused | TTFT s |",
        "|---|---|---|---|---|---|",
        *[f"| {i} | {t['prompt_tokens']} | {t['history']} | {t['evaluated']} | {t['reused']} | {t['ttft_s']} |"
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
    paddock = [r["speed"]["tg128"]["paddock"], r["app_path"][256]["consumer_tok_s"],
               r["app_path"][2048]["consumer_tok_s"]]
    peer = [r["speed"]["tg128"]["llama_bench"], r["app_path"][256]["llama_bench_tok_s"],
            r["app_path"][2048]["llama_bench_tok_s"]]
    ax.plot(lengths, paddock, marker="o", label="Paddock (stream consumer)")
    ax.plot(lengths, peer, marker="s", color="gray", linestyle="--", label="llama-bench tg<n>")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.minorticks_off()
    ax.set_xlabel("answer length (tokens)")
    ax.set_ylabel("tokens/s")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "tokens_per_s.png", dpi=120)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    turns = r["multi_turn"]["turns"]
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
