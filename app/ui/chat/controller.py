"""The chat controller: the bridge between the widgets and the core.

Owns the generation worker.  A turn runs on a Python thread: it loads the
conversation's model if needed, streams the answer from the engine process,
writes it to SQLite as it grows (every half second, and at the end), and
reports back through Qt signals, which Qt delivers on the GUI thread.  Text
reaches the GUI batched at display rate (about 30 Hz), never per token.

No widgets here: the window connects to the signals.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.docs.prompt import DocumentsTurn
from app.engine.client import Engine, Generation
from app.engine.remote import RemoteError, RemoteGeneration, RemoteServers, parse_ref
from app.engine.types import ChatMessage, LoadedModel, LoadSettings, SamplingParams
from app.errors import EngineCrashedError, PaddockError
from app.store.chats import ChatStore, Conversation, MessageStatus, latest_sources, sent_history, title_from
from app.tools.hub import MAX_ROUNDS, ToolHub, find_tool
from app.tools.mcp_client import ToolError, ToolSpec

log = logging.getLogger(__name__)

DocumentsHook = Callable[[int, list[ChatMessage], int, list[dict[str, Any]]], DocumentsTurn]
REMOTE_CONTEXT_GUESS = 8192  # a server's context is not reported by the OpenAI API

DISPLAY_INTERVAL_S = 1 / 30  # text is pushed to the GUI at most this often
SAVE_INTERVAL_S = 0.5  # the growing answer is written to SQLite at most this often


@dataclass
class ActiveStream:
    conv_id: int
    message_id: int
    text: str = ""
    thinking: str = ""
    # Continue: the answer was cut at the token limit and goes on in the same message.
    continuing: bool = False
    cancel_requested: bool = False
    stop_tools: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)
    remote: RemoteGeneration | None = field(default=None, repr=False)


class ChatController(QObject):
    """Runs chat turns off the GUI thread.

    Signals:
        conversationsChanged(): the list (titles, order) changed.
        messagesChanged(int): messages of that conversation were added or removed.
        streamStarted(int, int): (conversation id, assistant message id).
        streamText(int, int, str): text appended to the answer (batched).
        streamThinking(int, int, str): text appended to the model's thinking (batched).
        toolApprovalRequested(int, int, dict): (conv, message, call) the model asks to run a tool;
            answer with :meth:`decide_tool_call` ("once", "always" or "deny").
        toolCallsChanged(int, int): a tool call of that answer was approved, ran, or failed.
        streamFinished(int, int, str, str, dict): (conv, message, status, error, stats).
        modelLoading(str): a model starts loading (its path).
        modelLoaded(object): the :class:`LoadedModel`.
        modelFailed(str): loading failed, with a message for the user.
        notice(str): something the user should know (context trimmed, template fallback...).
        busyChanged(bool): a turn started or ended.
        sourcesReady(int, int): (conversation, answer) the answer's document passages are stored.
    """

    conversationsChanged = Signal()
    messagesChanged = Signal(int)
    streamStarted = Signal(int, int)
    streamText = Signal(int, int, str)
    streamThinking = Signal(int, int, str)
    toolApprovalRequested = Signal(int, int, dict)
    toolCallsChanged = Signal(int, int)
    streamFinished = Signal(int, int, str, str, dict)
    modelLoading = Signal(str)
    modelLoaded = Signal(object)
    modelFailed = Signal(str)
    notice = Signal(str)
    busyChanged = Signal(bool)
    sourcesReady = Signal(int, int)

    def __init__(self, store: ChatStore, engine: Engine, load_settings: LoadSettings | None = None) -> None:
        super().__init__()
        self.store = store
        self.engine = engine
        self.load_settings = load_settings or LoadSettings()
        self.active: ActiveStream | None = None
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Called on the worker thread before a model is loaded; raises PaddockError to refuse it.
        self.before_load: Callable[[Path], None] | None = None
        # Called on the worker thread with (conversation id, messages, context tokens); returns the
        # messages to send (the last user turn carrying document passages), the passages as
        # dicts for the answer's citations, and notices.  Set by the documents panel.
        self.with_documents: DocumentsHook | None = None
        self.tools: ToolHub | None = None  # MCP tools (set by the window)
        self._decision: str | None = None
        self._decided = threading.Event()
        self.on_delete: Callable[[int], None] | None = None  # a conversation was deleted
        self.remotes = RemoteServers(store.get_setting, store.set_setting)

    # -- state -----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.active is not None

    def live_texts(self) -> dict[int, tuple[str, str]]:
        """Message id -> (answer, thinking) of the answer still streaming (fresher than SQLite)."""
        active = self.active
        return {active.message_id: (active.text, active.thinking)} if active is not None else {}

    @property
    def loaded(self) -> LoadedModel | None:
        return self.engine.loaded

    # -- conversations ---------------------------------------------------------

    def new_conversation(self, model: str | None = None) -> Conversation:
        default_system = self.store.get_setting("default_system_prompt", "")
        sampling = SamplingParams.from_dict(self.store.get_setting("default_sampling"))
        conv = self.store.create_conversation(model=model, system_prompt=default_system, sampling=sampling)
        self.conversationsChanged.emit()
        return conv

    def rename(self, conv_id: int, title: str) -> None:
        self.store.update_conversation(conv_id, title=title.strip() or "New chat")
        self.conversationsChanged.emit()

    def delete(self, conv_id: int) -> None:
        if self.active is not None and self.active.conv_id == conv_id:
            self.stop()
            self.wait()
        self.store.delete_conversation(conv_id)
        if self.on_delete is not None:
            self.on_delete(conv_id)
        if self.tools is not None:
            self.tools.forget_chat(conv_id)
        self.conversationsChanged.emit()

    # -- turns -----------------------------------------------------------------

    def send(self, conv_id: int, text: str) -> None:
        """Add the user's message and generate an answer.

        Raises:
            PaddockError: a turn is already running, or the conversation has no model.
        """
        text = text.strip()
        if not text:
            return
        conv = self._check_can_start(conv_id)
        self.store.add_message(conv_id, "user", text)
        if conv.title == "New chat":
            self.store.update_conversation(conv_id, title=title_from(text))
        self.conversationsChanged.emit()
        self._start_turn(conv)

    def regenerate(self, conv_id: int) -> None:
        """Replace the last answer with a new one."""
        conv = self._check_can_start(conv_id)
        messages = self.store.messages(conv_id)
        if not messages:
            return
        if messages[-1].role == "assistant":
            self.store.fork_at(messages[-1].id)  # the earlier answer stays, as a version
        self._start_turn(conv)

    def continue_answer(self, conv_id: int) -> None:
        """Write on from the end of the last answer, which stopped at the token limit."""
        conv = self._check_can_start(conv_id)
        messages = self.store.messages(conv_id)
        if not messages or messages[-1].role != "assistant" or not messages[-1].content:
            raise PaddockError("there is no answer to continue")
        last = messages[-1]
        self.store.update_message(last.id, status="streaming")
        self._start_turn(conv, ActiveStream(conv.id, last.id, last.content, last.reasoning, continuing=True))

    def show_version(self, message_id: int) -> None:
        """Show the branch through this version of a message (not while the chat is answering)."""
        if self.active is not None:
            raise PaddockError("Paddock is still answering: stop that answer first")
        msg = self.store.message(message_id)
        self.store.show_version(message_id)
        self.conversationsChanged.emit()
        self.messagesChanged.emit(msg.conversation_id)

    def edit_and_resend(self, message_id: int, new_text: str) -> None:
        """A new version of a user message, answered again; the earlier version and its answers stay."""
        msg = self.store.message(message_id)
        conv = self._check_can_start(msg.conversation_id)
        self.store.fork_at(message_id)
        self.store.add_message(msg.conversation_id, "user", new_text.strip())
        self._start_turn(conv)

    def decide_tool_call(self, decision: str) -> None:
        """The user's answer to ``toolApprovalRequested``: "once", "always" or "deny"."""
        self._decision = decision
        self._decided.set()

    def stop(self) -> None:
        active = self.active
        if active is not None:
            active.cancel_requested = True
            active.stop_tools.set()
            self._decided.set()
            remote = active.remote
            if remote is not None:
                remote.cancel()
            else:
                self.engine.cancel()

    def wait(self, timeout: float = 30.0) -> None:
        """Join the worker (used at shutdown and by tests)."""
        active = self.active
        if active is not None and active.thread is not None:
            active.thread.join(timeout)

    def load_model(self, path: str, force: bool = False) -> None:
        """Load a model in the background (progress through the model* signals);
        ``force`` reloads it even if it is loaded (new load settings)."""
        if parse_ref(path) is not None:
            return  # a server's model: nothing to load here
        if self.busy:
            raise PaddockError("wait for the current answer to finish, or stop it, before switching models")
        thread = threading.Thread(target=self._load_worker, args=(path, force), name="model-load", daemon=True)
        self._threads.append(thread)
        thread.start()

    def shutdown(self) -> None:
        self.stop()
        self.wait(10)
        for thread in self._threads:
            thread.join(10)
        self.engine.close()

    # -- internals -------------------------------------------------------------

    def _check_can_start(self, conv_id: int) -> Conversation:
        if self.active is not None:
            raise PaddockError("Paddock is still answering: stop that answer first")
        conv = self.store.conversation(conv_id)
        if not conv.model:
            raise PaddockError("choose a model for this chat first (the model menu above the chat)")
        return conv

    def _start_turn(self, conv: Conversation, active: ActiveStream | None = None) -> None:
        if active is None:
            answer = self.store.add_message(conv.id, "assistant", "", status="streaming", model=conv.model)
            active = ActiveStream(conv.id, answer.id)
        with self._lock:
            self.active = active
        self.messagesChanged.emit(conv.id)
        self.busyChanged.emit(True)
        self.streamStarted.emit(conv.id, active.message_id)
        thread = threading.Thread(target=self._turn_worker, args=(conv, active), name="chat-turn", daemon=True)
        active.thread = thread
        thread.start()

    def _run_tool_calls(self, conv_id: int, active: ActiveStream, calls: list[dict[str, Any]],
                        specs: list[ToolSpec]) -> list[dict[str, Any]]:
        """Ask the user about each call (unless always allowed in this chat), run the approved
        ones, and return the records with their results.  Nothing runs without approval."""
        assert self.tools is not None
        records = [_call_record(c, find_tool(specs, str(c.get("name", "")))) for c in calls]
        self._save_calls(conv_id, active, records)  # shown under the answer, waiting
        for record in records:
            spec = find_tool(specs, record["name"])
            if active.stop_tools.is_set():
                record.update(status="stopped", result="Stopped before it ran.", is_error=True)
                continue
            if spec is None:
                names = ", ".join(s.name for s in specs) or "none"
                record.update(status="error", is_error=True,
                              result=f"There is no tool called {record['name']!r} (available: {names}).")
                self._save_calls(conv_id, active, records)
                continue
            if not self.tools.always_allowed(conv_id, spec):
                self._decided.clear()
                self._decision = None
                self.toolApprovalRequested.emit(conv_id, active.message_id, dict(record))
                while not self._decided.wait(0.1):
                    pass
                decision = "deny" if active.stop_tools.is_set() else self._decision
                if decision == "always":
                    self.tools.allow_always(conv_id, spec)
                elif decision != "once":
                    record.update(status="denied", result="The user declined this call.", is_error=True)
                    self._save_calls(conv_id, active, records)
                    continue
            record["status"] = "running"
            self._save_calls(conv_id, active, records)
            try:
                outcome = self.tools.run(spec, dict(record["arguments"]), active.stop_tools)
                record.update(status="error" if outcome.is_error else "done", result=outcome.text,
                              is_error=outcome.is_error)
            except ToolError as exc:
                record.update(status="error", result=str(exc), is_error=True)
            self._save_calls(conv_id, active, records)
        return records

    def _save_calls(self, conv_id: int, active: ActiveStream, records: list[dict[str, Any]]) -> None:
        self.store.update_message(active.message_id, tool_calls=records)
        self.toolCallsChanged.emit(conv_id, active.message_id)

    def _ensure_model(self, path: str, force: bool = False) -> LoadedModel:
        # One load at a time: a message sent while the chosen model is still loading waits for that
        # load instead of starting a second one (which doubled the wait for a large model).
        with self._load_lock:
            loaded = self.engine.loaded
            if not force and loaded is not None and Path(loaded.path) == Path(path) and self.engine.is_alive():
                return loaded
            if self.before_load is not None:
                self.before_load(Path(path))  # e.g. the license of a downloaded model is still accepted
            self.modelLoading.emit(path)
            loaded = self.engine.load(path, self.load_settings)
            self.modelLoaded.emit(loaded)
            for n in loaded.notices:
                self.notice.emit(n)
            return loaded

    def _load_worker(self, path: str, force: bool) -> None:
        try:
            self._ensure_model(path, force)
        except PaddockError as exc:
            self.modelFailed.emit(str(exc))
        except Exception as exc:
            log.exception("model load failed")
            self.modelFailed.emit(f"Unexpected error while loading the model: {exc}")

    def _turn_worker(self, conv: Conversation, active: ActiveStream) -> None:
        status: MessageStatus = "complete"
        error = ""
        stats: dict[str, Any] = {}
        last_emit = last_save = time.monotonic()
        sent_len = saved_len = len(active.text)
        thinking_sent = thinking_saved = len(active.thinking)
        try:
            assert conv.model is not None
            remote_ref = parse_ref(conv.model)
            n_ctx = REMOTE_CONTEXT_GUESS
            if remote_ref is None:
                n_ctx = self._ensure_model(conv.model).n_ctx
            history = [m for m in self.store.messages(conv.id) if m.id != active.message_id or active.continuing]
            history = [m for m in history if m.sent_to_model]
            messages = sent_history(conv.system_prompt, history)
            if active.continuing:
                messages[-1] = ChatMessage("assistant", active.text, active.thinking)
            elif history and history[-1].role == "user":
                question = history[-1]
                messages[-1] = ChatMessage("user", question.content)  # the question as typed, passages anew
                if self.with_documents is not None:
                    turn = self.with_documents(conv.id, messages, n_ctx, latest_sources(history[:-1]))
                    messages = turn.messages
                    for n in turn.notices:
                        self.notice.emit(n)
                    if turn.sent is not None:
                        self.store.update_message(question.id, sent=turn.sent)
                    if turn.sources:
                        self.store.update_message(active.message_id, sources=turn.sources)
                        self.sourcesReady.emit(conv.id, active.message_id)
            specs: list[ToolSpec] = []
            if self.tools is not None and not active.continuing:
                specs, problems = self.tools.tools(conv.id)
                for problem in problems:
                    self.notice.emit(problem)
            rounds = 0
            while True:
                if active.cancel_requested:
                    raise _Cancelled
                gen: Generation | RemoteGeneration
                if remote_ref is not None:
                    gen = self.remotes.client(remote_ref[0]).stream(
                        remote_ref[1], messages, conv.sampling, tools=[t.function() for t in specs],
                        tool_choice=conv.sampling.tool_choice if rounds == 0 else "auto")
                    active.remote = gen
                    if active.cancel_requested:
                        raise _Cancelled
                else:
                    gen = self.engine.stream(messages, conv.sampling, continue_final=active.continuing,
                                             tools=[t.function() for t in specs],
                                             tool_choice=conv.sampling.tool_choice if rounds == 0 else "auto")
                for kind, piece in gen.deltas():
                    if kind == "thinking":
                        active.thinking += piece
                    else:
                        active.text += piece
                    now = time.monotonic()
                    if now - last_emit >= DISPLAY_INTERVAL_S:
                        if len(active.thinking) > thinking_sent:
                            self.streamThinking.emit(conv.id, active.message_id, active.thinking[thinking_sent:])
                            thinking_sent = len(active.thinking)
                        if len(active.text) > sent_len:
                            self.streamText.emit(conv.id, active.message_id, active.text[sent_len:])
                            sent_len = len(active.text)
                        last_emit = now
                    changed = len(active.text) != saved_len or len(active.thinking) != thinking_saved
                    if now - last_save >= SAVE_INTERVAL_S and changed:
                        self.store.update_message(active.message_id, content=active.text,
                                                  reasoning=active.thinking)
                        saved_len, thinking_saved, last_save = len(active.text), len(active.thinking), now
                result = gen.result
                assert result is not None
                stats = result.stats.to_dict()
                if result.reasoning_s:
                    stats["reasoning_s"] = round(result.reasoning_s, 2)
                if result.stats.finish_reason == "cancelled":
                    status, error = "interrupted", "Stopped"
                for n in result.notices:
                    self.notice.emit(n)
                calls = list(getattr(result, "tool_calls", ()) or ())
                if not calls or not specs or status != "complete":
                    break
                if rounds >= MAX_ROUNDS:
                    self.notice.emit(f"The model kept asking for tools; Paddock stopped after {MAX_ROUNDS} rounds.")
                    break
                rounds += 1
                # This answer asked for tools: run them (each approved by the user), keep the
                # answer with its calls and results, and let the model go on in a new answer.
                if len(active.text) > sent_len:
                    self.streamText.emit(conv.id, active.message_id, active.text[sent_len:])
                done = self._run_tool_calls(conv.id, active, calls, specs)
                self.store.update_message(active.message_id, content=active.text, status="complete", stats=stats,
                                          reasoning=active.thinking, tool_calls=done)
                messages += self.store.message(active.message_id).as_chat_messages()
                if active.cancel_requested:
                    raise _Cancelled
                answer = self.store.add_message(conv.id, "assistant", "", status="streaming", model=conv.model)
                active.message_id, active.text, active.thinking = answer.id, "", ""
                sent_len = saved_len = thinking_sent = thinking_saved = 0
                stats = {}
                self.messagesChanged.emit(conv.id)
                self.streamStarted.emit(conv.id, answer.id)
        except _Cancelled:
            status, error = "interrupted", "Stopped"
        except EngineCrashedError as exc:
            status, error = "error", str(exc)
        except RemoteError as exc:
            status, error = ("interrupted" if exc.partial_text else "error"), str(exc)
        except PaddockError as exc:
            status, error = "error", str(exc)
        except Exception as exc:
            log.exception("chat turn failed")
            status, error = "error", f"Unexpected error: {exc}"
        finally:
            if len(active.thinking) > thinking_sent:
                self.streamThinking.emit(conv.id, active.message_id, active.thinking[thinking_sent:])
            if len(active.text) > sent_len:
                self.streamText.emit(conv.id, active.message_id, active.text[sent_len:])
            try:
                self.store.update_message(
                    active.message_id, content=active.text, status=status, error=error or None, stats=stats,
                    reasoning=active.thinking,
                )
                self.store.touch(conv.id)
            except PaddockError as exc:
                error = f"{error} (and the answer could not be saved: {exc})".strip()
                status = "error"
            with self._lock:
                self.active = None
            self.busyChanged.emit(False)
            self.streamFinished.emit(conv.id, active.message_id, status, error, stats)
            self.conversationsChanged.emit()


def _call_record(call: dict[str, Any], spec: ToolSpec | None) -> dict[str, Any]:
    return {"id": call.get("id", ""), "name": call.get("name", ""), "arguments": call.get("arguments", {}),
            "server": spec.server_name if spec else "", "status": "pending", "result": None, "is_error": False}


class _Cancelled(Exception):
    pass


