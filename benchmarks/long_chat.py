"""Long chats in the real window: switching to a chat of 10, 100 or 1,000 messages, and scrolling it.

    .venv/bin/python -m benchmarks.long_chat [--rounds 8]

Builds a store with three chats (10, 100 and 1,000 messages of Markdown: paragraphs, lists,
code; each message's text its own, so no widget can show another chat's message without rendering
it), opens the real window offscreen (no model needed: the chats are already written), and
measures, alternating between the chats so drift hits all three alike:

- the switch, from ``select_conversation``: its first event-loop turn (the call and one
  ``processEvents``: layout and paint of what it did), until the view shows the chat (the messages
  that fill it built, a turn at a time) and until it has built all it opens with;
- event-loop stalls while switching and while scrolling to the top of the 1,000-message chat
  (a 5 ms heartbeat's lateness, p99 and max), the same measure the soak benchmark uses;
- the window's memory after each phase.

Goal (issue 22): switch time independent of chat length, stall p99 under 16 ms, max under 50 ms.
Writes benchmarks/results/long_chat.json and long_chat.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.engine_bench import save_results

LENGTHS = (10, 100, 1000)
HEARTBEAT_MS = 5

_PARAGRAPHS = (
    "A lighthouse keeper writes down the weather every hour: wind, swell, visibility and the colour "
    "of the sky. Over forty years the notebooks fill a shelf, and the shelf tells a story of its own.",
    "Here is how to do it:\n\n1. Warm the pan.\n2. Add the onions and a pinch of salt.\n"
    "3. Stir until they are **golden**, then add the stock.\n4. Simmer for *twenty* minutes.",
    "```python\ndef fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
    "    return a\n```\n\nThis runs in linear time; the recursive version is exponential.",
    "| item | why |\n|---|---|\n| water | two litres a day |\n| map | phones run out |\n| jacket | "
    "the weather turns |\n\nPack light, but never leave these behind.",
    "> The best time to plant a tree was twenty years ago. The second best time is now.\n\n"
    "Proverbs like this one travel well because they are short and they are true often enough.",
)


def fill_store(db: Path) -> dict[int, int]:
    """Three chats of LENGTHS messages; returns {length: conversation id}."""
    from app.store.chats import ChatStore

    store = ChatStore(db)
    ids: dict[int, int] = {}
    for n in LENGTHS:
        conv = store.create_conversation(title=f"{n} messages")
        for i in range(n):
            if i % 2 == 0:
                store.add_message(conv.id, "user", f"Question {i // 2 + 1} of {n // 2}: tell me more about part {i}.")
            else:
                body = "\n\n".join(_PARAGRAPHS[(i + k) % len(_PARAGRAPHS)] for k in range(1 + i % 3))
                store.add_message(conv.id, "assistant", f"Part {i} of the {n}-message chat.\n\n{body}")
        ids[n] = conv.id
    store.close()
    return ids


class Heartbeat:
    """A 5 ms timer whose lateness is the event loop's stall, recorded per phase."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._beat)
        self.last = time.perf_counter()
        self.stalls: list[float] = []

    def _beat(self) -> None:
        now = time.perf_counter()
        self.stalls.append(max(0.0, (now - self.last) * 1000 - HEARTBEAT_MS))
        self.last = now

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start()

    def take(self) -> list[float]:
        out, self.stalls = self.stalls, []
        return out


def settle(app: Any, ms: float) -> None:
    """Run the event loop for ``ms`` milliseconds (heartbeats included)."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def settle_growth(app: Any, view: Any) -> None:
    """Run the event loop until the view has built the messages it is building (at most 30 s)."""
    end = time.perf_counter() + 30
    settle(app, 20)
    while view.building and time.perf_counter() < end:
        settle(app, 10)


def follow_switch(app: Any, view: Any, started: float) -> tuple[float, float]:
    """Run the event loop until the view has built what a chat opens with (at most 5 s): the ms from
    ``started`` until the view showed the chat, and until it had built all of it."""
    shown = built = None
    end = time.perf_counter() + 5
    while built is None and time.perf_counter() < end:
        app.processEvents()
        now = (time.perf_counter() - started) * 1000
        if shown is None and not view.opening:
            shown = now
        if not view.building:
            built = now
        time.sleep(0.001)
    return shown or float("nan"), built or float("nan")


def p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(0.99 * len(s)))] if s else 0.0


def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="paddock-longchat-") as tmp:
        os.environ["PADDOCK_HOME"] = str(Path(tmp) / "home")
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtWidgets import QApplication

        from app import paths
        from app.engine.client import Engine
        from app.engine.types import LoadSettings
        from app.store.chats import ChatStore
        from app.ui.chat.controller import ChatController
        from app.ui.window import MainWindow

        app = QApplication.instance() or QApplication(sys.argv[:1])
        ids = fill_store(paths.database_path())
        store = ChatStore(paths.database_path())
        window = MainWindow(ChatController(store, Engine(), LoadSettings(n_ctx=2048)))
        window.resize(1100, 800)
        window.show()
        settle(app, 300)
        beat = Heartbeat()
        beat.start()
        rss0 = psutil.Process().memory_info().rss / 1e6
        view = window.chat_page.chat_view
        switch_ms: dict[int, list[float]] = {n: [] for n in LENGTHS}
        shown_ms: dict[int, list[float]] = {n: [] for n in LENGTHS}
        built_ms: dict[int, list[float]] = {n: [] for n in LENGTHS}
        for _ in range(rounds):
            for n in LENGTHS:
                started = time.perf_counter()
                window.select_conversation(ids[n])
                app.processEvents()  # layout and paint of what the switch did
                switch_ms[n].append((time.perf_counter() - started) * 1000)
                shown, built = follow_switch(app, view, started)
                shown_ms[n].append(shown)
                built_ms[n].append(built)
                settle(app, 100)
        switch_stalls = beat.take()
        rss_switch = psutil.Process().memory_info().rss / 1e6
        # Scroll the 1,000-message chat to its top as a user dragging the bar to the top would:
        # each arrival at the top builds the previous window of messages.
        window.select_conversation(ids[1000])
        settle(app, 200)
        beat.take()
        bar = view.verticalScrollBar()
        steps = 0
        scroll_started = time.perf_counter()
        while view.first > 0 and steps < 100:  # to the top: each arrival builds the previous window
            bar.setValue(bar.minimum())
            settle_growth(app, view)
            steps += 1
        reached_top = view.first == 0
        while view._last < view.model.rowCount() and steps < 200:  # and back down to the newest
            bar.setValue(bar.maximum())
            settle_growth(app, view)
            steps += 1
        scroll_s = time.perf_counter() - scroll_started
        scroll_stalls = beat.take()
        rss_scroll = psutil.Process().memory_info().rss / 1e6
        beat.timer.stop()
        window.close()
        store.close()
    return {
        "switch_ms_median": {str(n): round(statistics.median(v), 1) for n, v in switch_ms.items()},
        "switch_ms_max": {str(n): round(max(v), 1) for n, v in switch_ms.items()},
        "shown_ms_median": {str(n): round(statistics.median(v), 1) for n, v in shown_ms.items()},
        "built_ms_median": {str(n): round(statistics.median(v), 1) for n, v in built_ms.items()},
        "switch_stall_p99_ms": round(p99(switch_stalls), 1),
        "switch_stall_max_ms": round(max(switch_stalls, default=0.0), 1),
        "scroll_steps": steps,
        "scroll_s": round(scroll_s, 2),
        "widgets_after_scroll": len(view.widgets),
        "reached_top": reached_top,
        "scroll_stall_p99_ms": round(p99(scroll_stalls), 1),
        "scroll_stall_max_ms": round(max(scroll_stalls, default=0.0), 1),
        "rss_mb": {"open": round(rss0, 1), "after_switches": round(rss_switch, 1),
                   "after_scroll": round(rss_scroll, 1)},
        "rounds": rounds,
    }


def render(r: dict[str, Any]) -> str:
    rows = [f"| {n} | {r['switch_ms_median'][str(n)]} | {r['switch_ms_max'][str(n)]} | "
            f"{r['shown_ms_median'][str(n)]} | {r['built_ms_median'][str(n)]} |" for n in LENGTHS]
    return "\n".join([
        "# Long chats: switching to chats of 10, 100 and 1,000 messages, and scrolling to the top",
        "",
        f"{r['date']} · {r['machine']} · commit {r['commit']} · Python {r['python']} · {r['rounds']} rounds, "
        "alternating",
        "",
        "| messages in the chat | first turn, median ms | first turn, max ms | until shown, median ms | "
        "until all built, median ms |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "First turn: `select_conversation` and one `processEvents` (layout and paint of what it did). Until shown: "
        "the messages that fill the view built, a turn at a time (the view is repainted then). Until all built: "
        "the latest 16 messages built. Each figure from the start of the switch, heartbeat turns included.",
        "",
        "| | p99 ms | max ms |",
        "|---|---|---|",
        f"| event-loop stall while switching | {r['switch_stall_p99_ms']} | {r['switch_stall_max_ms']} |",
        f"| event-loop stall while scrolling the 1,000-message chat to its top and back "
        f"({r['scroll_steps']} steps, top reached: {'yes' if r['reached_top'] else 'no'}, "
        f"{r['widgets_after_scroll']} messages built at the end) | {r['scroll_stall_p99_ms']} | "
        f"{r['scroll_stall_max_ms']} |",
        "",
        f"Window memory: {r['rss_mb']['open']} MB open → {r['rss_mb']['after_switches']} MB after the switches → "
        f"{r['rss_mb']['after_scroll']} MB after scrolling through all 1,000 messages and back.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    result = run(args.rounds)
    result.update({
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                                 text=True).stdout.strip(),
    })
    save_results("long_chat", result, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
