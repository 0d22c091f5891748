"""By the composer: how the chat's documents are read for a question, and the reading's progress.

*Passages* answers from the passages that match the question best (fast, right for
"what does the lease say about pets?"); *whole documents* reads every passage
(``app.docs.whole``: summaries, "list every…", "how many…", comparisons).  Paddock
proposes one per question as it is typed; a click overrides the proposal for that
question.  After an answer, *Answer again…* reads the documents the other way.

Signals:
    answerAgain(str): the last answer again, with the documents read this way ("passages" | "whole").
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QButtonGroup, QFrame, QHBoxLayout, QLabel, QToolButton

from app.docs.whole import Mode, propose_mode

WHOLE_TIP = ("Read every passage of the chat's documents (slower; for summaries, lists, counts and comparisons). "
             "The answer says how much it read; Stop ends the reading and keeps an answer about what was read.")
PASSAGES_TIP = "Answer from the passages that match the question best (fast; for questions about one detail)."


def whole_label(whole: dict[str, Any]) -> str:
    """The line under a whole-document answer: what was read and what it cost."""
    read, total = whole.get("passages_read", 0), whole.get("passages_total", 0)
    done = f"read all {total} passages" if whole.get("complete") else f"read {read} of {total} passages"
    kept = int(whole.get("passages_from_cache") or 0)
    extra = f" ({kept} read before, kept)" if kept else ""
    calls = int(whole.get("map_calls", 0)) + int(whole.get("reduce_calls", 0))
    return f"whole documents · {done}{extra} · {calls} model calls · {float(whole.get('elapsed_s', 0)):.1f} s"


class ReadingBar(QFrame):
    answerAgain = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("readingBar")
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 4, 16, 0)
        row.addWidget(QLabel("Documents:"))
        self.passages_button = QToolButton()
        self.passages_button.setText("Best passages")
        self.passages_button.setToolTip(PASSAGES_TIP)
        self.whole_button = QToolButton()
        self.whole_button.setText("Whole documents")
        self.whole_button.setToolTip(WHOLE_TIP)
        self.group = QButtonGroup(self)
        for button in (self.passages_button, self.whole_button):
            button.setCheckable(True)
            self.group.addButton(button)
            row.addWidget(button)
        self.passages_button.setChecked(True)
        self.group.buttonClicked.connect(self._chosen)
        self.hint = QLabel()
        self.hint.setObjectName("readingHint")
        row.addWidget(self.hint)
        self.progress = QLabel()
        self.progress.setObjectName("readingProgress")
        row.addWidget(self.progress, 1)
        self.again_button = QToolButton()
        self.again_button.clicked.connect(lambda: self.answerAgain.emit(self._again_mode))
        self.again_button.hide()
        row.addWidget(self.again_button)
        self._manual = False  # the user chose for the question being typed
        self.fits = False  # the chat's documents fit the context whole (then passages read all of them)
        self._again_mode: Mode = "whole"

    def mode(self) -> Mode:
        return "whole" if self.whole_button.isChecked() else "passages"

    def set_mode(self, mode: Mode) -> None:
        (self.whole_button if mode == "whole" else self.passages_button).setChecked(True)

    def propose(self, question: str) -> None:
        """Follow the question being typed, unless the user chose for it."""
        if self._manual:
            return
        proposed = propose_mode(question, self.fits) if question.strip() else "passages"
        self.set_mode(proposed)
        self.hint.setText("proposed for this question" if proposed == "whole" else "")

    def question_sent(self) -> None:
        """The next question gets its own proposal."""
        self._manual = False
        self.hint.setText("")

    def _chosen(self, _button: object) -> None:
        self._manual = True
        self.hint.setText("")

    def show_progress(self, text: str) -> None:
        self.progress.setText(text)

    def clear_progress(self) -> None:
        self.progress.setText("")

    def offer_again(self, last_mode: Mode | None) -> None:
        """After an answer from documents (``last_mode``), offer it again read the other way."""
        if last_mode is None:
            self.again_button.hide()
            return
        self._again_mode = "passages" if last_mode == "whole" else "whole"
        self.again_button.setText("Answer again from passages" if self._again_mode == "passages"
                                  else "Answer again over whole documents")
        self.again_button.show()
