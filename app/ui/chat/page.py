"""The chat page: one conversation, its model, its documents and the message box.

Header (title, model menu, settings toggle), notice bar, the conversation
(:class:`ChatView`), the documents panel, the composer with Send / Stop /
Attach, and the per-chat settings panel.  Turns go through the
:class:`ChatController`; errors and notices go to the :class:`MessageBridge`.

Signals:
    conversationShown(int): a conversation is now on the page (-1: none).
    addServerRequested(): *Add remote models…* in the model menu.
    modelChosen(str): the chat's model changed (a path or a remote model reference; the status bar names it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.docs.prompt import cited_numbers
from app.engine.gguf_file import read_gguf
from app.engine.remote import parse_ref
from app.engine.types import LoadedModel, SamplingParams
from app.errors import PaddockError
from app.store.chats import ChatStore
from app.tools.hub import ToolHub
from app.ui.chat.attachments import ImageStrip, image_suffixes, is_image_file
from app.ui.chat.composer import Composer
from app.ui.chat.controller import ChatController
from app.ui.chat.edit_dialog import EditMessageDialog
from app.ui.chat.itemmodels import MessageListModel
from app.ui.chat.model_picker import ModelChoices, ModelPicker
from app.ui.chat.reading import ReadingBar
from app.ui.chat.settings_panel import SettingsPanel
from app.ui.chat.view import ChatView
from app.ui.common.elided import ElidedLabel
from app.ui.common.folders import open_file, open_files
from app.ui.common.messages import MessageBridge
from app.ui.documents.panel import DocsHub, DocumentsPanel, PassageDialog, choose_files, choose_folder
from app.ui.settings.servers import ServerHub
from app.ui.tools.widgets import ApprovalBar, ChatToolsPanel

NO_CONVERSATION = -1


class ChatPage(QWidget):
    conversationShown = Signal(int)
    addServerRequested = Signal()
    modelChosen = Signal(str)

    def __init__(self, controller: ChatController, docs: DocsHub, choices: ModelChoices, servers: ServerHub, *,
                 bridge: MessageBridge, dark: bool = False, tools: ToolHub | None = None) -> None:
        super().__init__()
        self.controller = controller
        self.store: ChatStore = controller.store
        self.docs = docs
        self.choices = choices
        controller.projector_for = choices.library.projector_for  # models that see load their paired projector
        self.servers = servers
        self.bridge = bridge
        self.current_conv: int | None = None
        self.closed = False
        self.passage_dialog: PassageDialog | None = None
        # Notices belong to a chat (and a model's to the chats that use it): shown again when the chat is.
        self._chat_notices: dict[int, list[str]] = {}
        self._model_notices: dict[str, list[str]] = {}
        self.messages = MessageListModel(self.store, self)

        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        main = QVBoxLayout()
        main.setContentsMargins(0, 0, 0, 0)
        main.setSpacing(0)
        main.addWidget(self._build_header())
        self.notice_bar = QLabel()
        self.notice_bar.setObjectName("noticeBar")
        self.notice_bar.setWordWrap(True)
        self.notice_bar.hide()
        main.addWidget(self.notice_bar)
        self.chat_view = ChatView(self.messages, dark=dark)
        self.chat_view.editRequested.connect(self.edit_message)
        self.chat_view.regenerateRequested.connect(self.regenerate)
        self.chat_view.continueRequested.connect(self.continue_answer)
        self.chat_view.citationRequested.connect(self.open_citation)
        self.chat_view.versionRequested.connect(self.show_version)
        main.addWidget(self.chat_view, 1)
        self.docs_panel = DocumentsPanel(docs)
        main.addWidget(self.docs_panel)
        self.approval = ApprovalBar()
        self.approval.decided.connect(controller.decide_tool_call)
        main.addWidget(self.approval)
        self.reading = ReadingBar()  # passages or whole documents, by the composer
        self.reading.answerAgain.connect(self.answer_again_as)
        self.reading.hide()
        main.addWidget(self.reading)
        main.addWidget(self._build_composer())
        self.composer.textChanged.connect(lambda: self.reading.propose(self.composer.toPlainText()))
        docs.changed.connect(self._update_reading)
        controller.whole_documents = docs.whole_reader  # answers over every passage of the chat's documents
        outer.addLayout(main, 1)
        self.settings_panel = SettingsPanel(self.save_chat_settings, self._adapter_choices)
        self.tools_panel: ChatToolsPanel | None = None
        if tools is not None:
            self.tools_panel = ChatToolsPanel(tools, bridge.status, self._require_tools)
            self.settings_panel.outer.insertWidget(1, self.tools_panel)
        self.settings_panel.hide()
        self.settings_button.toggled.connect(self.settings_panel.setVisible)
        outer.addWidget(self.settings_panel)

    def _build_header(self) -> QFrame:
        header = QFrame()
        header.setObjectName("chatHeader")
        head = QHBoxLayout(header)
        head.setContentsMargins(16, 8, 12, 8)
        self.title_label = ElidedLabel(min_chars=9)  # a short title whole, a long one its first words
        self.title_label.setObjectName("chatTitle")
        head.addWidget(self.title_label, 1)
        self.model_combo = ModelPicker(self.choices)  # no "Model" label: its room goes to the title
        self.model_combo.setToolTip("The model this chat uses")
        self.model_combo.chosen.connect(self._on_model_chosen)
        self.model_combo.openFileRequested.connect(self.open_model_file)
        self.model_combo.addServerRequested.connect(self.addServerRequested.emit)
        head.addWidget(self.model_combo)
        self.settings_button = QPushButton("Chat settings")  # this chat's; the sidebar's are the app's
        self.settings_button.setCheckable(True)
        self.settings_button.setToolTip("System prompt and sampling for this chat")
        head.addWidget(self.settings_button)
        return header

    def _build_composer(self) -> QFrame:
        box = QFrame()
        box.setObjectName("composerBox")
        row = QHBoxLayout(box)
        row.setContentsMargins(16, 8, 16, 12)
        self.composer = Composer(self.send, self.paste_images)
        self.image_strip = ImageStrip()  # pictures for the next message: thumbnails with a remove button
        column = QVBoxLayout()
        column.addWidget(self.image_strip)
        column.addWidget(self.composer, 1)
        row.addLayout(column, 1)
        buttons = QVBoxLayout()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("primaryButton")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.clicked.connect(self.controller.stop)
        self.stop_button.hide()
        self.attach_button = QPushButton("Attach")
        self.attach_button.setObjectName("attachButton")
        self.attach_button.setToolTip("Add documents to this chat (or drop files and folders on the window)")
        attach_menu = QMenu(self.attach_button)
        attach_menu.addAction("Files…", lambda: self.attach_paths(choose_files(self)))
        attach_menu.addAction("Folder…", lambda: self.attach_paths(choose_folder(self)))
        attach_menu.addAction("Images…", self.choose_images)
        self.attach_button.setMenu(attach_menu)
        for button in (self.send_button, self.stop_button, self.attach_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        row.addLayout(buttons)
        return box

    def controller_slots(self) -> list[tuple[object, object]]:
        """(signal, slot) pairs the window connects, and disconnects at shutdown."""
        c = self.controller
        return [
            (c.messagesChanged, self._on_messages_changed),
            (c.streamText, self._on_stream_text),
            (c.streamThinking, self._on_stream_thinking),
            (c.toolApprovalRequested, self._on_tool_approval),
            (c.toolCallsChanged, self._on_tool_calls),
            (c.modelLoaded, self._on_model_loaded),
            (c.streamFinished, self._on_stream_finished),
            (c.modelFailed, self._on_model_failed),
            (c.busyChanged, self._on_busy),
            (c.sourcesReady, self._on_sources_ready),
            (c.readingProgress, self._on_reading_progress),
        ]

    # -- conversations ---------------------------------------------------------

    def show_conversation(self, conv_id: int | None) -> None:
        self.current_conv = conv_id
        if conv_id is None:
            self.messages.load(None)
            self.docs_panel.set_conversation(None)
            self.conversationShown.emit(NO_CONVERSATION)
            return
        conv = self.store.conversation(conv_id)
        self.messages.load(conv_id, self.controller.live_texts())
        self.title_label.setText(conv.title)
        self.settings_panel.show_settings(conv.system_prompt, conv.sampling)
        self.settings_panel.adapters.set_adapters(self.store.chat_adapters(conv_id))
        self.model_combo.fill(conv.model)
        self._show_notices()
        self.docs_panel.set_conversation(conv_id)
        if self.tools_panel is not None:
            self.tools_panel.show_chat(conv_id, conv.sampling.tool_choice == "required")
        self._update_reading()
        self.conversationShown.emit(conv_id)
        self.composer.setFocus()

    def new_chat(self, model: str | None = None) -> None:
        """A new conversation with ``model``, else the current chat's, else the first known model."""
        if model is None and self.current_conv is not None:
            model = self.store.conversation(self.current_conv).model
        if model is None:
            known = self.choices.known()
            model = known[0][0] if known else None
        empty = next((c for c in self.store.conversations() if c.title == "New chat" and not
                      self.store.messages(c.id)), None)
        if empty is not None:
            # Ctrl+N again: the empty chat already there is the new one (no pile of empty "New chat"s),
            # with what a new chat gets now (the defaults may have changed since it was made).
            self.store.update_conversation(
                empty.id, model=model, system_prompt=self.store.get_setting("default_system_prompt", ""),
                sampling=SamplingParams.from_dict(self.store.get_setting("default_sampling")))
            self.store.touch(empty.id)
            self.controller.conversationsChanged.emit()
            self.show_conversation(empty.id)
            return
        conv = self.controller.new_conversation(model=model)
        self.show_conversation(conv.id)

    def set_title(self, title: str) -> None:
        self.title_label.setText(title)

    def refill_models(self) -> None:
        if self.current_conv is not None:
            self.model_combo.fill(self.store.conversation(self.current_conv).model)

    def show_notice(self, text: str) -> None:
        """A notice for the chat on screen; it stays with that chat until it is no longer true."""
        model_said = any(text in texts for texts in self._model_notices.values())
        if self.current_conv is not None and not model_said:
            kept = self._chat_notices.setdefault(self.current_conv, [])
            if text not in kept:
                kept.append(text)
        self._show_notices(extra=[] if self.current_conv is not None else [text])

    def withdraw_notice(self, text: str) -> None:
        """A notice that is no longer true (the API was switched off): gone from every chat."""
        for kept in self._chat_notices.values():
            if text in kept:
                kept.remove(text)
        self._show_notices()

    def _show_notices(self, extra: list[str] | None = None) -> None:
        texts: list[str] = []
        if self.current_conv is not None:
            model = self.store.conversation(self.current_conv).model
            texts += self._model_notices.get(str(Path(model)), []) if model else []
            texts += [t for t in self._chat_notices.get(self.current_conv, []) if t not in texts]
        texts += extra or []
        self.notice_bar.setText("\n".join(texts[-3:]))
        self.notice_bar.setVisible(bool(texts))

    # -- models ----------------------------------------------------------------

    def open_model_file(self) -> None:
        path = open_file(self, "Open a GGUF model", "GGUF models (*.gguf)")
        if path is not None:
            self.use_model_file(str(path))
        else:
            self.refill_models()

    def use_model_file(self, path: str) -> None:
        """Check a GGUF file, remember it, and use it for the current (or a new) chat."""
        try:
            read_gguf(path)
        except PaddockError as exc:
            self.bridge.error(str(exc), title="This file cannot be used")
            self.refill_models()
            return
        self.choices.remember(path)
        if self.current_conv is None:
            self.new_chat(model=path)
        else:
            self.store.update_conversation(self.current_conv, model=path)
            self.show_conversation(self.current_conv)
        self.modelChosen.emit(path)
        self.preload(path)

    def _on_model_chosen(self, ref: str) -> None:
        if self.current_conv is not None:
            self.store.update_conversation(self.current_conv, model=ref)
            self.modelChosen.emit(ref)
            self.preload(ref)

    def preload(self, path: str) -> None:
        if parse_ref(path) is not None:
            return  # a remote model: nothing to load here
        loaded = self.controller.loaded
        if self.controller.busy or (loaded is not None and Path(loaded.path) == Path(path)):
            return
        try:
            self.controller.load_model(path)
        except PaddockError as exc:
            self.bridge.error(str(exc))

    def _on_model_failed(self, message: str) -> None:
        self.bridge.error(message, title="The model could not be loaded")

    # -- turns -----------------------------------------------------------------

    def send(self) -> None:
        text = self.composer.toPlainText().strip()
        images = self.image_strip.images()
        if (not text and not images) or self.current_conv is None:
            return
        if self.controller.busy:  # Enter while an answer streams: no modal box, the text stays in the box
            self.bridge.status("Still answering: your message stays in the box. Press Stop (Esc) to end the answer.")
            return
        try:
            self.save_chat_settings()
            self.controller.send(self.current_conv, text, images,
                                 self.reading.mode() if self.reading.isVisible() else "passages")
        except PaddockError as exc:
            self.bridge.error(str(exc))  # the text and the pictures stay in the box
            return
        self.composer.clear()
        self.image_strip.clear()
        self.reading.question_sent()

    def regenerate(self) -> None:
        self._answer_again(self.controller.regenerate)

    def answer_again_as(self, mode: str) -> None:
        """The last answer again, with the documents read the other way (passages / whole)."""
        self.reading.set_mode("whole" if mode == "whole" else "passages")
        self._answer_again(lambda conv: self.controller.regenerate(conv, "whole" if mode == "whole" else "passages"))

    def continue_answer(self) -> None:
        self._answer_again(self.controller.continue_answer)

    def _answer_again(self, action: Callable[[int], None]) -> None:
        """Regenerate or Continue in the current chat, with its settings as they are now."""
        if self.current_conv is None:
            return
        try:
            self.save_chat_settings()
            action(self.current_conv)
        except PaddockError as exc:
            self.bridge.error(str(exc))

    def show_version(self, message_id: int) -> None:
        """Show that version of a message, and the conversation below it."""
        try:
            self.controller.show_version(message_id)
        except PaddockError as exc:
            self.bridge.error(str(exc))

    def edit_message(self, message_id: int) -> None:
        dialog = EditMessageDialog(self, self.store.message(message_id).content)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.text().strip():
            try:
                self.controller.edit_and_resend(message_id, dialog.text())
            except PaddockError as exc:
                self.bridge.error(str(exc))

    def save_chat_settings(self) -> None:
        """Store the settings panel's values for the current chat: only those that changed, since each write
        waits for the disk (``synchronous=FULL``) on this thread, and every send comes through here."""
        if self.current_conv is None:
            return
        conv = self.store.conversation(self.current_conv)
        system = self.settings_panel.system.toPlainText()
        sampling = self.settings_panel.sampling(conv.sampling)
        changes: dict[str, object] = {}
        if system != conv.system_prompt:
            changes["system_prompt"] = system
        if sampling != conv.sampling:
            changes["sampling"] = sampling
        if changes:
            self.store.update_conversation(self.current_conv, **changes)
        adapters = self.settings_panel.adapters.adapters()
        if adapters != self.store.chat_adapters(self.current_conv):
            self.store.set_chat_adapters(self.current_conv, adapters)

    def _adapter_choices(self) -> list[tuple[str, str]]:
        """The library's adapters for the current chat's model (the settings panel's *Add adapter* menu)."""
        if self.current_conv is None:
            return []
        model = self.store.conversation(self.current_conv).model
        return self.choices.adapters_for(model) if model else []

    def _on_messages_changed(self, conv_id: int) -> None:
        if conv_id == self.current_conv and not self.closed:
            self.messages.reload(self.controller.live_texts())

    def _on_stream_text(self, conv_id: int, message_id: int, text: str) -> None:
        if conv_id == self.current_conv:
            self.messages.append_text(message_id, text)

    def _on_stream_thinking(self, conv_id: int, message_id: int, text: str) -> None:
        if conv_id == self.current_conv:
            self.messages.append_thinking(message_id, text)

    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        self.settings_panel.set_thinking_switch(loaded.thinking_switch, loaded.thinking_default)
        # What the model's notices say (no chat template...) holds for every chat that uses it.
        self._model_notices = {str(Path(loaded.path)): list(loaded.notices)}

    def _on_stream_finished(self, conv_id: int, message_id: int, _status: str, _error: str, _stats: dict) -> None:
        if conv_id == self.current_conv:
            self.messages.finish(message_id)
            self.reading.clear_progress()
            self._update_reading()

    def _on_reading_progress(self, conv_id: int, _message_id: int, text: str) -> None:
        if conv_id == self.current_conv and not self.closed:
            self.reading.show_progress(text)

    def _update_reading(self) -> None:
        """The reading bar shows when the chat has documents; after an answer from them, it offers
        the answer again read the other way."""
        if self.closed:
            return
        conv_id = self.current_conv
        has_docs = conv_id is not None and bool(self.docs.documents(conv_id))
        self.reading.setVisible(has_docs)
        if has_docs and conv_id is not None:
            loaded = self.controller.loaded
            n_ctx = loaded.n_ctx if loaded is not None else (self.controller.load_settings.n_ctx or 4096)
            self.reading.fits = self.docs.fits_context(conv_id, n_ctx)
        newest = self.store.last_message(conv_id) if has_docs and conv_id is not None else None  # not the whole chat
        answered = [m for m in [newest] if m is not None and m.role == "assistant" and m.status != "streaming"
                    and not self.controller.busy]
        if answered and (answered[0].sources or (answered[0].stats or {}).get("whole")):
            self.reading.offer_again("whole" if (answered[0].stats or {}).get("whole") else "passages")
        else:
            self.reading.offer_again(None)

    def _on_sources_ready(self, conv_id: int, message_id: int) -> None:
        if conv_id == self.current_conv and not self.closed:
            self.messages.refresh_message(message_id)

    def _require_tools(self, on: bool) -> None:
        if self.current_conv is not None:
            conv = self.store.conversation(self.current_conv)
            self.store.update_conversation(self.current_conv, sampling=dataclasses.replace(
                conv.sampling, tool_choice="required" if on else "auto"))

    def _on_tool_approval(self, conv_id: int, _message_id: int, call: dict) -> None:
        if conv_id != self.current_conv:
            self.show_conversation(conv_id)  # the call waits in its own chat, in view
        self.approval.ask(call)

    def _on_tool_calls(self, conv_id: int, message_id: int) -> None:
        if conv_id == self.current_conv and not self.closed:
            self.messages.refresh_tool_calls(message_id)

    def _on_busy(self, busy: bool) -> None:
        if not busy:
            self.approval.hide()  # a call still waiting when the answer ended (Stop) is gone
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.model_combo.setEnabled(not busy)

    # -- documents -------------------------------------------------------------

    def choose_images(self) -> None:
        suffixes = " ".join(f"*{s}" for s in sorted(image_suffixes()))
        self.add_images(open_files(self, "Attach images", f"Images ({suffixes})"))

    def paste_images(self, mime: QMimeData) -> bool:
        """Pictures pasted or dropped into the composer go with the next message; False if none were."""
        errors = self.image_strip.add_mime(mime)
        if errors is None:
            return False
        self._images_added(errors)
        return True

    def add_images(self, paths: list[Path]) -> None:
        if paths:
            self._images_added(self.image_strip.add_files(paths))

    def _images_added(self, errors: list[str]) -> None:
        for error in errors:
            self.bridge.error(error, title="This image cannot be shown to the model")
        if self.current_conv is None or not self.image_strip.images():
            return
        refusal = self.controller.vision_refusal(self.current_conv)
        if refusal:
            self.bridge.status(refusal)  # told now, not after sending

    def attach_paths(self, items: list[Path]) -> None:
        """Add files and folders to the current chat (a new chat if there is none): pictures go with the next
        message, documents are indexed for the chat."""
        pictures = [p for p in items if is_image_file(p)]
        if pictures:
            self.add_images(pictures)
            items = [p for p in items if p not in pictures]
        if not items:
            return
        if self.current_conv is None:
            self.new_chat()
        if self.current_conv is None:
            return
        self.docs.add_to_chat(self.current_conv, items)
        # Said in the documents panel, which follows the indexing (a status line outlived it).
        names = ", ".join(p.name for p in items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
        self.docs_panel.adding(names)

    def open_citation(self, message_id: int, number: int) -> PassageDialog | None:
        try:
            msg = self.store.message(message_id)
        except PaddockError:
            return None
        if not msg.sources:
            return None
        dialog = PassageDialog(msg.sources, number or 1, self.docs, cited_numbers(msg.content, len(msg.sources)),
                               self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.passage_dialog = dialog
        return dialog
