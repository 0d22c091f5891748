"""Errors of the local API, in the shape each protocol's clients read.

OpenAI clients read ``{"error": {"message", "type", "param", "code"}}`` and raise
by status (400 ``BadRequestError``, 404 ``NotFoundError``, 503 ...); Ollama
clients read ``{"error": "message"}``.  Every refusal goes through
:class:`ApiError`, so a handler only says what is wrong and with which status.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "forbidden", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
          501: "not_implemented", 503: "server_error"}


class ApiError(Exception):
    """A request refused (4xx) or not served right now (5xx), with a message the caller can act on.

    Attributes:
        retry_after: seconds a client should wait before trying again (503 while a model reloads).
    """

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def openai(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": _TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self._headers())

    def ollama(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=self.status, headers=self._headers())

    def response(self, path: str) -> JSONResponse:
        """In the shape of the protocol ``path`` belongs to."""
        return self.ollama() if path.startswith("/api/") else self.openai()

    def _headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)
