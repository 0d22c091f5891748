"""The local API server: OpenAI's and Ollama's routes behind :class:`~app.api.guard.Guard`.

``paddock serve`` runs it over a :class:`~app.api.models.ModelPool`; the app's
"Serve the loaded model" switch over the window's own engine.  Binding to
anything but loopback needs an API key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.api.errors import ApiError
from app.api.guard import Guard, is_loopback
from app.api.models import LoadedModelSource, ModelPool, ModelSource
from app.api.ollama_api import OllamaRoutes
from app.api.openai_api import OpenAIRoutes
from app.engine.client import Engine
from app.errors import PaddockError

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


def _handled(handler: Handler) -> Handler:
    """Refusals (:class:`ApiError`) become answers in the shape of the route's protocol."""
    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response(request.url.path)
        except PaddockError as exc:
            return ApiError(500, str(exc)).response(request.url.path)

    return route


class ApiServer:
    """The local API over a source of models (an engine, or ``paddock serve``'s pool).

    Args:
        source: an :class:`Engine` (the window: its loaded model) or a :class:`ModelSource`.
        allow_hosts: host names served on a non-loopback listener besides its address (``--allow-host``).
        cors: browser origins allowed to use the API (``--cors``); none by default.
    """

    def __init__(self, source: Engine | ModelSource, *, host: str = "127.0.0.1", port: int = 8080,
                 api_key: str | None = None, allow_hosts: Iterable[str] = (), cors: Iterable[str] = ()) -> None:
        if not is_loopback(host) and not api_key:
            raise PaddockError(
                f"serving on {host} would let other machines use your model: set an API key (--api-key) "
                "or serve on 127.0.0.1"
            )
        self.source: ModelSource = LoadedModelSource(source) if isinstance(source, Engine) else source
        self.host = host
        self.port = port
        self.api_key = api_key
        openai_routes = OpenAIRoutes(self.source)
        unload = self.source.unload if isinstance(self.source, ModelPool) else None
        ollama = OllamaRoutes(self.source, unload)
        routes = [
            ("/health", self.health, ["GET"]),
            ("/", self.root, ["GET"]),
            ("/v1/models", openai_routes.models, ["GET"]),
            ("/v1/models/{model:path}", openai_routes.model, ["GET"]),
            ("/v1/chat/completions", openai_routes.chat, ["POST"]),
            ("/v1/completions", openai_routes.completions, ["POST"]),
            ("/v1/embeddings", openai_routes.embeddings, ["POST"]),
            ("/api/version", ollama.version, ["GET"]),
            ("/api/tags", ollama.tags, ["GET"]),
            ("/api/ps", ollama.ps, ["GET"]),
            ("/api/show", ollama.show, ["POST"]),
            ("/api/chat", ollama.chat, ["POST"]),
            ("/api/generate", ollama.generate, ["POST"]),
            ("/api/embed", ollama.embed, ["POST"]),
            ("/api/embeddings", ollama.embeddings, ["POST"]),
        ]
        routes += [(p, ollama.unsupported, ["POST", "DELETE"]) for p in
                   ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete")]
        app = Starlette(routes=[Route(path, _handled(fn), methods=methods) for path, fn, methods in routes],
                        exception_handlers={HTTPException: self._http_error})  # type: ignore[dict-item]
        self.app = Guard(app, listen_host=host, allow_hosts=allow_hosts, cors=cors, api_key=api_key)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> None:
        """Serve on a background thread; returns once the socket is listening."""
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive():
                raise PaddockError(f"could not serve on {self.host}:{self.port} (is the port in use?)")
            if time.monotonic() > deadline:
                raise PaddockError(f"the API server did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        if self.port == 0:
            self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def serve_forever(self) -> None:
        uvicorn.run(self.app, host=self.host, port=self.port, log_level="info", lifespan="off")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    # -- routes of its own ------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        running = self.source.running()
        return JSONResponse({"status": "ok", "models_loaded": [e.id for e, _ in running]})

    async def root(self, request: Request) -> Response:
        return JSONResponse({"name": "Paddock", "openai": "/v1", "ollama": "/api"})

    async def _http_error(self, request: Request, exc: HTTPException) -> Response:
        message = f"{request.method} {request.url.path} is not part of Paddock's API" if exc.status_code in (404, 405) \
            else str(exc.detail)
        return ApiError(exc.status_code, message).response(request.url.path)
