"""The Hugging Face token: in the OS keyring, never in a file, a setting, a log or SQLite.

Order of lookup: ``HF_TOKEN`` from the environment (read only, never stored),
then the keyring, then a token kept in memory for this session. Saving reads the
value back, because some backends accept a write and drop it; when no keyring
works the user is told and the token lives for this session only.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Literal

import keyring
import keyring.backends.fail
import keyring.errors

log = logging.getLogger(__name__)

SERVICE = "Paddock"
ACCOUNT = "huggingface-token"
TokenSource = Literal["environment", "keyring", "session", "none"]


@dataclass(frozen=True)
class SaveResult:
    persistent: bool
    message: str


class TokenStore:
    """Where Paddock keeps a secret: the Hugging Face token, or a server's API key (``account``)."""

    def __init__(self, account: str = ACCOUNT, env_var: str | None = "HF_TOKEN") -> None:
        self.account = account
        self.env_var = env_var
        self._session: str | None = None
        self._lock = threading.Lock()

    def _env(self) -> str:
        return os.environ.get(self.env_var, "").strip() if self.env_var else ""

    def _keyring_get(self) -> str | None:
        try:
            return keyring.get_password(SERVICE, self.account)
        except Exception as exc:
            log.info("keyring unavailable for reading: %s", type(exc).__name__)
            return None

    def get(self) -> str | None:
        env = self._env()
        if env:
            return env
        with self._lock:
            if self._session:
                return self._session
        return self._keyring_get() or None

    def source(self) -> TokenSource:
        if self._env():
            return "environment"
        with self._lock:
            if self._session:
                return "session"
        return "keyring" if self._keyring_get() else "none"

    def save(self, token: str) -> SaveResult:
        """Store ``token``; if the keyring fails or drops it, keep it for this session and say so."""
        token = token.strip()
        if not token:
            raise ValueError("empty token")
        problem: str | None = None
        try:
            keyring.set_password(SERVICE, self.account, token)
        except keyring.errors.NoKeyringError:
            problem = "no system keyring is available"
        except keyring.errors.KeyringLocked:
            problem = "the system keyring is locked"
        except Exception as exc:
            problem = f"the system keyring refused it ({type(exc).__name__})"
        if problem is None and self._keyring_get() != token:
            problem = "the system keyring did not keep it (it read back differently)"
        with self._lock:
            self._session = None if problem is None else token
        if problem is None:
            return SaveResult(True, "Token saved in the system keyring.")
        log.warning("token kept for this session only: %s", problem)
        return SaveResult(
            False,
            f"The token could not be saved: {problem}. Paddock will use it until you quit, "
            "and ask again next time.",
        )

    def clear(self) -> None:
        with self._lock:
            self._session = None
        try:
            keyring.delete_password(SERVICE, self.account)
        except Exception as exc:
            log.debug("keyring delete: %s", type(exc).__name__)


def keyring_problem() -> str | None:
    """Why secrets cannot be kept in a system keyring here (None: there is one; a save still checks it)."""
    try:
        backend = keyring.get_keyring()
    except Exception as exc:
        return f"the system keyring cannot be reached ({type(exc).__name__})"
    if isinstance(backend, keyring.backends.fail.Keyring):
        return "no system keyring is available"
    return None


_STORE = TokenStore()


def token_store() -> TokenStore:
    """The process's token store (the session token is shared by the CLI command or the app)."""
    return _STORE
