"""No web page can use the local API: Host and Origin checked, JSON only (issue: CVE-2024-28224's hole).

Each refusal is checked through the real server with raw HTTP, and shown to start no work: the
engine's request counter does not move.  The openai client keeps working unchanged.
"""

from __future__ import annotations

import httpx
import pytest

from app.api.guard import Guard
from tests.api.conftest import Served, http

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _requests(smol: Served) -> int:
    return smol.engine().requests


@pytest.mark.parametrize(("headers", "body", "status", "code"), [
    ({"Host": "attacker.example.com"}, None, 403, "host_not_allowed"),
    # DNS rebinding: the page's own name re-pointed at 127.0.0.1, the port kept
    ({"Host": "rebind.example:{port}"}, None, 403, "host_not_allowed"),
    ({"Origin": "http://attacker.example.com"}, None, 403, "origin_not_allowed"),
    ({"Origin": "null"}, None, 403, "origin_not_allowed"),
    ({"Content-Type": "text/plain"}, "raw", 415, "unsupported_media_type"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, "raw", 415, "unsupported_media_type"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, "raw", 415, "unsupported_media_type"),
    # the issue's own request: foreign Host and Origin, text/plain
    ({"Host": "attacker.example.com", "Origin": "http://attacker.example.com", "Content-Type": "text/plain"},
     "raw", 403, "host_not_allowed"),
])
def test_what_a_web_page_can_send_is_refused_before_any_work(smol: Served, headers: dict[str, str],
                                                              body: str | None, status: int, code: str) -> None:
    import json

    before = _requests(smol)
    headers = {k: v.format(port=smol.server.port) for k, v in headers.items()}
    payload = {"model": smol.model, **CHAT}
    for path in ("/v1/chat/completions", "/api/chat"):
        if body == "raw":
            r = http.post(smol.base + path, content=json.dumps(payload), headers=headers)
        else:
            r = http.post(smol.base + path, json=payload, headers=headers)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        if path.startswith("/v1"):
            assert error["code"] == code
            assert error["message"]
        else:
            assert isinstance(error, str)
        assert "access-control-allow-origin" not in r.headers
    reads = http.get(smol.base + "/v1/models", headers={k: v for k, v in headers.items() if k != "Content-Type"})
    if status == 403:
        assert reads.status_code == 403  # nor can such a page read the model list
    assert _requests(smol) == before


def test_a_preflight_from_a_foreign_origin_is_refused(smol: Served) -> None:
    r = http.options(smol.base + "/v1/chat/completions",
                      headers={"Origin": "http://attacker.example.com", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers


def test_ordinary_clients_and_local_names_are_served(smol: Served) -> None:
    before = _requests(smol)
    for host in (f"localhost:{smol.server.port}", f"127.0.0.1:{smol.server.port}", "[::1]", "localhost"):
        r = http.post(smol.base + "/v1/chat/completions", json={"model": smol.model, **CHAT}, headers={"Host": host})
        assert r.status_code == 200, host
    page_here = http.post(smol.base + "/v1/chat/completions", json={"model": smol.model, **CHAT},
                           headers={"Origin": "http://localhost:3000"})
    assert page_here.status_code == 200
    assert "access-control-allow-origin" not in page_here.headers  # served, but no CORS unless --cors
    charset = http.post(smol.base + "/v1/chat/completions", content=b'{"model": "%s", "messages": [{"role": '
                         b'"user", "content": "hi"}], "max_tokens": 2}' % smol.model.encode(),
                         headers={"Content-Type": "application/json; charset=utf-8"})
    assert charset.status_code == 200
    reply = smol.client.chat.completions.create(model=smol.model, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=2)
    assert reply.choices
    assert _requests(smol) == before + 7


async def _ok(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _client(guard: Guard, host: str) -> httpx.AsyncClient:
    # The guard alone, in process: a listener on another interface is not something a test here may open.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url=f"http://{host}")


def test_cors_origins_and_allowed_hosts() -> None:
    import asyncio

    async def run() -> None:
        loop = Guard(_ok, listen_host="127.0.0.1", cors=["http://localhost:3000", "https://app.example"])
        async with _client(loop, "127.0.0.1:8080") as c:
            pre = await c.options("/v1/chat/completions", headers={"Origin": "https://app.example",
                                                                    "Access-Control-Request-Method": "POST",
                                                                    "Access-Control-Request-Headers": "content-type"})
            assert pre.status_code == 204
            assert pre.headers["access-control-allow-origin"] == "https://app.example"
            r = await c.post("/v1/chat/completions", json={}, headers={"Origin": "https://app.example"})
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "https://app.example"
        wide = Guard(_ok, listen_host="0.0.0.0", allow_hosts=["paddock.lan"], api_key="k")
        auth = {"Authorization": "Bearer k"}
        for host, status in (("paddock.lan:8080", 200), ("192.168.1.20:8080", 200), ("localhost", 200),
                             ("evil.example", 403)):
            async with _client(wide, host) as c:
                assert (await c.get("/v1/models", headers=auth)).status_code == status, host
        async with _client(wide, "paddock.lan") as c:
            assert (await c.get("/v1/models")).status_code == 401
            assert (await c.get("/health")).status_code == 200

    asyncio.run(run())
