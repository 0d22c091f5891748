"""Drive the real window as a user would, then quit through the Quit action.

``paddock --drive N --model PATH [--drive-chats K] [--drive-report FILE]``
starts the ordinary app (same QApplication, store, engine and window as a
double-click) and lets this autopilot type messages, switch chats, press Stop
and Regenerate, and finally trigger *Quit*.  The process then ends the way it
ends for a user, so faults that only show at interpreter exit (PySide6 6.12 on
Python 3.11 dropping references to ``True``/``None``) show in its exit code.

It is the engine of three checks: the soak test (``tests/ui/test_soak.py``),
the packaged build's self-test (``paddock --selftest``) and the soak benchmark
(``python -m benchmarks.soak``).  The report it writes holds what a test needs
to judge the run: answers streamed and their message ids, reference counts of
``None``/``True``/``False`` before and after, memory, and event-loop stalls.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from PySide6.QtCore import QEvent, QObject, QTimer

from app.engine.types import SamplingParams

if TYPE_CHECKING:
    from app.ui.window import MainWindow

log = logging.getLogger(__name__)

PROMPTS = (
    "Write a short story about a lighthouse keeper and a storm.",
    "Explain how a bicycle stays upright, step by step.",
    "List ten ideas for a rainy weekend, with a sentence on each.",
    "Describe the water cycle to a ten-year-old.",
    "Write a poem about autumn leaves in a city park.",
    "Give me a recipe for a simple vegetable soup.",
    "What should I pack for a three-day hike? Explain each item.",
    "Tell me about the history of the printing press.",
)
HEARTBEAT_MS = 5
LONG_STALL_MS = 50  # a stall this long is traced: where the GUI thread was while it lasted
LONG_GC_MS = 10  # a garbage collection this long is listed in the report, with when and on which thread
TIMEOUT_S = 1800  # a run that has not finished by then is reported as failed
FIRST_PAINT_TIMEOUT_S = 60  # a window not painted by then: the drive begins anyway, and says so


def live_objects() -> dict[str, int]:
    """How many objects of each type the garbage collector tracks (objgraph's most-common-types)."""
    gc.collect()
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    return counts


def memory_mark() -> dict[str, Any]:
    """Memory, singleton reference counts and live objects per type, at one moment."""
    return {"rss_mb": round(psutil.Process().memory_info().rss / 1e6, 1), "refcounts": refcounts(),
            "objects": live_objects()}


def growth_between(before: dict[str, Any], after: dict[str, Any], top: int = 15) -> dict[str, Any]:
    """What grew from one :func:`memory_mark` to another: memory, reference counts, object types."""
    grown = {k: after["objects"].get(k, 0) - v for k, v in before["objects"].items()}
    grown.update({k: v for k, v in after["objects"].items() if k not in before["objects"]})
    biggest = sorted(((n, k) for k, n in grown.items() if n > 0), reverse=True)[:top]
    return {"rss_mb": round(after["rss_mb"] - before["rss_mb"], 1),
            "refcounts": {k: after["refcounts"][k] - v for k, v in before["refcounts"].items()},
            "objects": {k: n for n, k in biggest}}


def refcounts() -> dict[str, int]:
    """Reference counts of the singletons PySide6 6.12 on Python 3.11 loses references to."""
    return {"None": sys.getrefcount(None), "True": sys.getrefcount(True), "False": sys.getrefcount(False)}


@dataclass
class DrivePlan:
    """What the autopilot does: ``answers`` streamed answers spread round-robin over ``chats`` chats.

    Every ``stop_every``-th answer is stopped after its first text; every ``regenerate_every``-th
    is followed by Regenerate (which counts as an answer too).
    """

    model: str
    answers: int = 20
    chats: int = 4
    max_tokens: int = 160
    stop_every: int = 5
    regenerate_every: int = 6
    report: Path | None = None
    checkpoint: int = 0  # after this many answers, note memory, reference counts and live objects
    trace_stalls: bool = False  # trace stalls over LONG_STALL_MS (StallTracer; for the soak benchmark only)


@dataclass
class _Step:
    kind: str  # "send" | "regenerate"
    conv_index: int
    stop: bool = False


@dataclass
class DriveReport:
    plan: dict[str, Any]
    answers: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refcounts_start: dict[str, int] = field(default_factory=dict)
    refcounts_end: dict[str, int] = field(default_factory=dict)
    refcounts_after_close: dict[str, int] = field(default_factory=dict)
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    checkpoint: dict[str, Any] = field(default_factory=dict)
    growth: dict[str, Any] = field(default_factory=dict)
    first_paint_s: float = 0.0  # from the process's start to the end of the window's first paint
    stalls_ms: list[float] = field(default_factory=list)
    long_stalls: list[dict[str, Any]] = field(default_factory=list)  # see StallTracer
    gc_pauses: dict[str, Any] = field(default_factory=dict)  # see GcPauses
    quit_via_action: bool = False
    finished: bool = False
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        stalls = sorted(self.stalls_ms)
        p99 = stalls[min(len(stalls) - 1, int(0.99 * len(stalls)))] if stalls else 0.0
        return {
            "plan": self.plan, "answers": self.answers, "conversations": self.conversations, "errors": self.errors,
            "refcounts_start": self.refcounts_start, "refcounts_end": self.refcounts_end,
            "refcounts_after_close": self.refcounts_after_close,
            "rss_start_mb": round(self.rss_start_mb, 1), "rss_end_mb": round(self.rss_end_mb, 1),
            "checkpoint": self.checkpoint, "growth": self.growth, "first_paint_s": round(self.first_paint_s, 2),
            "stall_p99_ms": round(p99, 1), "stall_max_ms": round(stalls[-1], 1) if stalls else 0.0,
            "heartbeats": len(stalls), "long_stalls": self.long_stalls, "gc_pauses": self.gc_pauses,
            "quit_via_action": self.quit_via_action,
            "finished": self.finished,
            "duration_s": round(self.duration_s, 2),
        }


@dataclass
class DriveRun:
    """How a driven app process ended: its exit code, stderr, and the report it wrote ({} if none)."""

    returncode: int
    stderr: str
    report: dict[str, Any]

    @property
    def fatal_error(self) -> bool:
        return "Fatal Python error" in self.stderr


def run_driven(plan: DrivePlan, home: Path | None = None, timeout: float | None = None) -> DriveRun:
    """Start the app as its own process (offscreen), driven by ``plan``, and wait for it to quit.

    ``home`` becomes its ``PADDOCK_HOME`` (None: this process's own).  In a packaged build the
    frozen executable is started itself.  ``plan.report`` names the file the report goes to.
    """
    if plan.report is None:
        raise ValueError("run_driven needs plan.report")
    cmd = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "app"]
    cmd += ["--drive", str(plan.answers), "--drive-chats", str(plan.chats), "--drive-max-tokens",
            str(plan.max_tokens), "--model", plan.model, "--drive-report", str(plan.report),
            "--drive-checkpoint", str(plan.checkpoint)] + (["--drive-trace-stalls"] if plan.trace_stalls else [])
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    if home is not None:
        env["PADDOCK_HOME"] = str(home)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    report = json.loads(plan.report.read_text(encoding="utf-8")) if plan.report.exists() else {}
    return DriveRun(proc.returncode, proc.stderr, report)


class StallTracer:
    """Where the GUI thread is while it keeps the heartbeat waiting: a watcher thread that, when a
    beat is LONG_STALL_MS late, takes the GUI thread's Python stack (the innermost frames), once per
    stall.  A stall inside Qt's C++ shows as the Python call that entered it.

    A diagnostic, off unless asked for (``--drive-trace-stalls``): what the watcher allocates can
    start a garbage collection on its own thread, which may then destroy Qt objects off the GUI
    thread. Traced at 14 ms (hundreds of traces a minute) a drive crashed in a paint; at 50 ms
    (a few traces a run) 200-answer drives ended cleanly, but the tests never turn it on.
    """

    def __init__(self, answers: list[dict[str, Any]], started: float) -> None:
        self.answers = answers  # the report's, for "after how many answers"
        self.traces: dict[float, dict[str, Any]] = {}  # by the beat the stall came after
        self.last_beat = time.perf_counter()
        self._main = threading.main_thread().ident
        self._taken_for = 0.0
        self._ignored: set[float] = set()
        self._started = started  # "at_s" counts from here
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-tracer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)

    def ignore(self, beat: float) -> None:
        """The pause after ``beat`` is not the app's (the autopilot's own measuring)."""
        self._ignored.add(beat)
        self.traces.pop(beat, None)

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            beat = self.last_beat
            late_ms = (time.perf_counter() - beat) * 1000 - HEARTBEAT_MS
            if late_ms < LONG_STALL_MS or beat == self._taken_for or beat in self._ignored or self._main is None:
                continue
            frame = sys._current_frames().get(self._main)
            if frame is None:
                continue
            self._taken_for = beat
            stack = traceback.extract_stack(frame)[-8:]
            self.traces[beat] = {
                "at_s": round(beat - self._started, 2), "seen_late_ms": round(late_ms, 1),
                "after_answers": len(self.answers),
                "stack": [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack],
            }


class GcPauses:
    """How long each garbage collection took, by generation (``gc.callbacks``).

    A collection holds the interpreter lock on whichever thread it runs, so one on a worker thread
    stalls the GUI thread as much as one on the GUI thread.  Collections of LONG_GC_MS or more are
    listed with when they started (seconds from ``started``, the clock the StallTracer uses too), after
    how many answers and on which thread.
    """

    def __init__(self, answers: list[dict[str, Any]], started: float) -> None:
        self.answers = answers
        self.started = started
        self.count = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]
        self.long: list[dict[str, Any]] = []
        self._began = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        ms = (time.perf_counter() - self._began) * 1000
        gen = info["generation"]
        self.count[gen] += 1
        self.total_ms[gen] += ms
        self.max_ms[gen] = max(self.max_ms[gen], ms)
        if ms >= LONG_GC_MS:
            self.long.append({"generation": gen, "ms": round(ms, 1), "at_s": round(self._began - self.started, 2),
                              "after_answers": len(self.answers), "thread": threading.current_thread().name,
                              "collected": info["collected"]})

    def summary(self) -> dict[str, Any]:
        return {"by_generation": [{"generation": g, "count": self.count[g], "total_ms": round(self.total_ms[g], 1),
                                   "max_ms": round(self.max_ms[g], 1)} for g in range(3)],
                "long": self.long, "frozen": gc.get_freeze_count()}


class Autopilot(QObject):
    """Types, clicks and quits in a :class:`MainWindow`, one step after the other, on the GUI thread."""

    def __init__(self, window: MainWindow, plan: DrivePlan) -> None:
        super().__init__(window)
        self.window = window
        self.plan = plan
        self.report = DriveReport(plan={k: str(v) if isinstance(v, Path) else v for k, v in vars(plan).items()})
        self._steps = self._make_steps()
        self._convs: list[int] = []
        self._started = 0.0
        self._stop_pending = False
        self._mark: dict[str, Any] | None = None
        self._beat = QTimer(self)
        self._beat.setInterval(HEARTBEAT_MS)
        self._beat.timeout.connect(self._heartbeat)
        self._last_beat = 0.0
        clock = time.perf_counter()
        self._tracer = StallTracer(self.report.answers, clock) if plan.trace_stalls else None
        self._gc = GcPauses(self.report.answers, clock)
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.timeout.connect(self._give_up)
        self._unpainted = QTimer(self)  # started until the window's first paint
        self._unpainted.setSingleShot(True)
        self._unpainted.timeout.connect(self._never_painted)

    def _make_steps(self) -> list[_Step]:
        steps: list[_Step] = []
        n = 0
        while len(steps) < self.plan.answers:
            n += 1
            steps.append(_Step("send", (n - 1) % max(1, self.plan.chats),
                               stop=self.plan.stop_every > 0 and n % self.plan.stop_every == 0))
            regenerate = self.plan.regenerate_every > 0 and n % self.plan.regenerate_every == 0
            if regenerate and len(steps) < self.plan.answers:
                steps.append(_Step("regenerate", steps[-1].conv_index))
        return steps

    def start(self) -> None:
        """Begin once the window has been painted for the first time, as a user begins once it shows.

        Until then the user waits for the app to start, not on a window that does not answer: that time is
        reported as ``first_paint_s`` (from the process's start), and the heartbeat starts after it.
        """
        self.window.installEventFilter(self)
        self._unpainted.start(FIRST_PAINT_TIMEOUT_S * 1000)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Paint and self._unpainted.isActive():
            self._unpainted.stop()
            self.window.removeEventFilter(self)
            QTimer.singleShot(0, self._painted)  # once this paint (and its children's) has ended
        return False

    def _painted(self) -> None:
        self.report.first_paint_s = time.time() - psutil.Process().create_time()
        self._begin()

    def _never_painted(self) -> None:
        self.window.removeEventFilter(self)
        self.report.errors.append(f"the window was not painted within {FIRST_PAINT_TIMEOUT_S} s")
        self._begin()

    def _begin(self) -> None:
        w = self.window
        self._started = time.perf_counter()
        self.report.refcounts_start = refcounts()
        self.report.rss_start_mb = psutil.Process().memory_info().rss / 1e6
        w.store.set_setting("default_sampling",
                            SamplingParams(temperature=0.7, max_tokens=self.plan.max_tokens).to_dict())
        w.controller.streamFinished.connect(self._on_finished)
        w.controller.streamText.connect(self._on_text)
        w.chat_page.use_model_file(self.plan.model)
        self._deadline.start(TIMEOUT_S * 1000)
        self._beat.start()
        self._gc.start()
        self._set_beat(time.perf_counter())
        if self._tracer is not None:
            self._tracer.start()
        QTimer.singleShot(0, self._next)

    def _heartbeat(self) -> None:
        now = time.perf_counter()
        late_ms = (now - self._last_beat) * 1000 - HEARTBEAT_MS
        self.report.stalls_ms.append(max(0.0, late_ms))
        if self._tracer is not None and late_ms >= LONG_STALL_MS:
            trace = self._tracer.traces.get(self._last_beat)
            if trace is not None:  # its whole length, next to where the tracer saw the GUI thread
                trace["stall_ms"] = round(late_ms, 1)
        self._set_beat(now)

    def _set_beat(self, now: float) -> None:
        self._last_beat = now
        if self._tracer is not None:
            self._tracer.last_beat = now

    def _conversation(self, index: int) -> int:
        w = self.window
        current = w.current_conv
        if not self._convs and current is not None and not w.store.messages(current):
            self._convs.append(current)  # the empty chat that opening the model made
        while len(self._convs) <= index:
            w.new_chat(model=self.plan.model)
            assert w.current_conv is not None
            self._convs.append(w.current_conv)
        return self._convs[index]

    def _next(self) -> None:
        if not self._steps:
            self._finish()
            return
        w = self.window
        if w.controller.busy:  # a model load or the previous turn's last signals: try again shortly
            QTimer.singleShot(20, self._next)
            return
        step = self._steps.pop(0)
        conv_id = self._conversation(step.conv_index)
        if w.current_conv != conv_id:
            w.select_conversation(conv_id)  # switching chats, as a click in the sidebar does
        self._stop_pending = step.stop
        if step.kind == "regenerate":
            widgets = w.chat_page.chat_view.widgets
            if widgets and widgets[-1].regen_button.isVisible():
                widgets[-1].regen_button.click()
            else:
                w.chat_page.regenerate()
        else:
            w.chat_page.composer.setPlainText(PROMPTS[len(self.report.answers) % len(PROMPTS)])
            w.chat_page.send_button.click()
        if not w.controller.busy:
            self.report.errors.append(f"step {step.kind} in chat {conv_id} did not start an answer")
            QTimer.singleShot(0, self._next)

    def _on_text(self, _conv_id: int, _message_id: int, _text: str) -> None:
        if self._stop_pending:
            self._stop_pending = False
            self.window.chat_page.stop_button.click()

    def _on_finished(self, conv_id: int, message_id: int, status: str, error: str, stats: dict) -> None:
        self.report.answers.append({"conversation": conv_id, "message": message_id, "status": status,
                                    "error": error, "completion_tokens": stats.get("completion_tokens", 0)})
        if status == "error":
            self.report.errors.append(error)
        if self.plan.checkpoint and len(self.report.answers) == self.plan.checkpoint:
            if self._tracer is not None:
                self._tracer.ignore(self._last_beat)
            self._gc.stop()  # the mark's own full collection is not the app's
            self._mark = memory_mark()
            self._gc.start()
            self.report.checkpoint = {"answers": self.plan.checkpoint, "rss_mb": self._mark["rss_mb"],
                                      "refcounts": self._mark["refcounts"]}
            self._set_beat(time.perf_counter())  # the mark's own pause is not the app's stall
        QTimer.singleShot(0, self._next)

    def _finish(self) -> None:
        self._beat.stop()
        self._stop_watching()
        self._deadline.stop()
        self.report.finished = True
        self._quit()

    def _give_up(self) -> None:
        self.report.errors.append(f"the run did not finish within {TIMEOUT_S} s")
        self._beat.stop()
        self._stop_watching()
        self.window.controller.stop()
        self._quit()

    def _stop_watching(self) -> None:
        self._gc.stop()
        self.report.gc_pauses = self._gc.summary()
        if self._tracer is not None:
            self._tracer.stop()
            self.report.long_stalls = list(self._tracer.traces.values())

    def _quit(self) -> None:
        w = self.window
        self.report.conversations = list(self._convs)
        if self._mark is not None:
            self.report.growth = growth_between(self._mark, memory_mark())
        self.report.refcounts_end = refcounts()
        self.report.rss_end_mb = psutil.Process().memory_info().rss / 1e6
        self.report.duration_s = time.perf_counter() - self._started
        w.controller.streamFinished.disconnect(self._on_finished)
        w.controller.streamText.disconnect(self._on_text)
        self.report.quit_via_action = True
        w.quit_action.trigger()  # File > Quit, as the user would

    def write_report(self) -> None:
        """Called after the event loop has ended (the window is closed)."""
        self.report.refcounts_after_close = refcounts()
        if self.plan.report is not None:
            self.plan.report.write_text(json.dumps(self.report.to_dict(), indent=2), encoding="utf-8")
