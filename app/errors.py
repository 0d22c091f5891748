"""Paddock's error types.

Every error a user can meet is a :class:`PaddockError` whose ``str()`` is a
sentence the user can act on.  The UI translates them into messages in one
place; anything else that escapes is a bug and is reported as such.
"""

from __future__ import annotations


class PaddockError(Exception):
    """Base class: ``str(error)`` is the user-facing message."""


class InvalidModelError(PaddockError):
    """The file is not a usable GGUF model (checked before llama.cpp sees it)."""


class ModelNotFoundError(PaddockError):
    """No model with that path or library id."""


class EngineError(PaddockError):
    """llama.cpp reported a failure (load, decode) inside the engine process."""


class EngineCrashedError(EngineError):
    """The engine process died (segfault, abort, killed, out of memory).

    Attributes:
        partial_text: everything generated before the crash.
        exitcode: the child's exit code (negative: killed by that signal).
    """

    def __init__(self, message: str, partial_text: str = "", exitcode: int | None = None) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.exitcode = exitcode


class ModelLoadError(EngineError):
    """llama.cpp could not load the model."""


class ContextOverflowError(PaddockError):
    """The request cannot fit the model's context even after dropping history."""


class InvalidRequestError(PaddockError):
    """A request asks for something the model cannot do as given (a token id outside the
    vocabulary, a grammar llama.cpp cannot parse): the API answers 400."""


class TemplateError(PaddockError):
    """The model's chat template failed to render (or tried to leave the sandbox)."""


class StoreError(PaddockError):
    """The chat database cannot be used."""


class NewerDatabaseError(StoreError):
    """The database was written by a newer Paddock; it is left untouched."""


class HubError(PaddockError):
    """Hugging Face (or a compatible hub) refused or could not answer a request.

    Attributes:
        kind: what went wrong, for the UI to offer the right next step:
            ``not_signed_in``, ``license_not_accepted``, ``fine_grained``,
            ``invalid_token``, ``not_found``, ``rate_limited``, ``offline``, ``server``.
        url: a page the user can open to fix it (the repo page, the token settings).
    """

    def __init__(self, message: str, kind: str = "server", url: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.url = url


class DownloadError(PaddockError):
    """A download failed; ``resumable`` says whether the partial file was kept."""

    def __init__(self, message: str, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable


class IntegrityError(DownloadError):
    """The downloaded bytes do not match the Hub's size or sha256; nothing was registered."""


class DiskSpaceError(PaddockError):
    """Not enough free disk space; the message gives how much is needed."""


class LicenseNotAcceptedError(PaddockError):
    """The model's license has not been accepted in Paddock yet."""


class UnsafePathError(PaddockError):
    """A file name from a repo listing would escape the models folder."""


class DocumentError(PaddockError):
    """A document could not be indexed: unreadable, unsupported, protected, or a 'bomb'."""
