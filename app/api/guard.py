"""What the local API checks before any handler runs, so that no web page can use it.

A browser lets any page send a "simple" request (a form, or ``text/plain``) to
127.0.0.1 without asking first, and with DNS rebinding (the page's own host name
re-pointed at 127.0.0.1) it can read the answers too: Ollama's CVE-2024-28224.
So, in this order, before a byte of the body is read:

1. **Host**: on a loopback listener only loopback names are served (``127.0.0.1``,
   ``localhost``, ``[::1]``, any port); a rebound name is refused.  On another
   listener: loopback names, IP addresses (a literal address cannot be rebound) and
   the names given with ``--allow-host``.
2. **Origin**: a request from a web page (it carries ``Origin``) is served only if
   the page is on a loopback address or listed with ``--cors``; CORS headers, and
   preflight answers, only for ``--cors`` origins.
3. **JSON only**: a POST body must be ``application/json`` (415 otherwise), so no
   form or ``text/plain`` request is ever processed.
4. **Key**: with ``--api-key``, ``Authorization: Bearer KEY`` (``/health`` is open).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import ApiError

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/health", "/", "/api/version"})  # no key needed: nothing to read or run


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> str:
    """The name of a ``Host`` header value, without port or IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    """ASGI middleware: the Host, Origin, content-type and key checks above.

    Args:
        listen_host: the address the server listens on.
        allow_hosts: further host names served on a non-loopback listener (``--allow-host``).
        cors: origins (``scheme://host[:port]``) a browser client may use the API from (``--cors``).
        api_key: the key every request but ``OPEN_PATHS`` must carry, or None.
    """

    def __init__(self, app: ASGIApp, *, listen_host: str, allow_hosts: Iterable[str] = (),
                 cors: Iterable[str] = (), api_key: str | None = None) -> None:
        self.app = app
        self.loopback_only = is_loopback(listen_host)
        self.allow_hosts = {h.lower().rstrip(".") for h in allow_hosts}
        if not self.loopback_only and listen_host not in ("0.0.0.0", "::"):
            self.allow_hosts.add(listen_host.lower().strip("[]"))
        self.cors = {o.rstrip("/").lower() for o in cors}
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope.get("path", "")
        origin = headers.get("origin")
        try:
            self._check_host(headers.get("host", ""))
            cors_ok = self._check_origin(origin)
            if scope["method"] == "OPTIONS":
                await self._preflight(origin, headers, send)
                return
            if scope["method"] in ("POST", "PUT", "PATCH"):
                self._check_json(headers.get("content-type", ""))
            if path not in OPEN_PATHS:
                self._check_key(headers.get("authorization", ""))
        except ApiError as exc:
            log.warning("refused %s %s: %s", scope["method"], path, exc.message)
            await exc.response(path)(scope, receive, send)
            return
        if not cors_ok:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                raw.append((b"access-control-allow-origin", (origin or "").encode("latin-1")))
                raw.append((b"vary", b"Origin"))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _check_host(self, value: str) -> None:
        name = _split_host(value)
        if not name:
            raise ApiError(403, "the request has no Host header: Paddock's API answers only requests addressed to it")
        if name in LOOPBACK_NAMES or is_loopback(name):
            return
        if not self.loopback_only and (name in self.allow_hosts or _is_ip(name)):
            return
        hint = ("Paddock listens on this computer only, so a request naming another host comes from a "
                "web page that re-pointed its own name here (DNS rebinding)") if self.loopback_only else \
            "add the name with --allow-host if this server is meant to be reached by it"
        raise ApiError(403, f"requests for host {name!r} are not served: {hint}", code="host_not_allowed")

    def _check_origin(self, origin: str | None) -> bool:
        """True if CORS headers go on the answer (an allowed ``--cors`` origin)."""
        if origin is None:
            return False
        normalised = origin.rstrip("/").lower()
        if normalised in self.cors:
            return True
        host = urlsplit(normalised).hostname if normalised != "null" else None
        if host is not None and is_loopback(host):
            return False  # a page on this computer: served, though without CORS its script cannot read it
        raise ApiError(403, f"requests from web pages at {origin} are not served: start the server with "
                            f"--cors {origin} to let that page use it", code="origin_not_allowed")

    async def _preflight(self, origin: str | None, headers: Headers, send: Send) -> None:
        if origin is None or origin.rstrip("/").lower() not in self.cors:
            raise ApiError(403, "cross-origin requests are not allowed: start the server with --cors ORIGIN "
                                "to let a browser client use it", code="origin_not_allowed")
        response = Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": headers.get("access-control-request-headers",
                                                        "authorization, content-type"),
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        })
        await response({"type": "http"}, _no_receive, send)

    def _check_json(self, content_type: str) -> None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise ApiError(415, f"the request body must be JSON sent as Content-Type: application/json (got "
                                f"{media or 'no content type'}); with curl add -H 'Content-Type: application/json'",
                           code="unsupported_media_type")

    def _check_key(self, header: str) -> None:
        if self.api_key is None:
            return
        if not hmac.compare_digest(header.encode(), f"Bearer {self.api_key}".encode()):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
