"""Fixtures of the API tests: `paddock serve`'s server over a pool of real models, on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from app.api import ApiServer
from app.api.models import ModelPool, entries_for
from app.engine.types import LoadSettings

# Raw HTTP for what the official clients would refuse to send; generous timeouts for a loaded machine.
http = httpx.Client(timeout=300)

# No kept states: these engines outlive one test's PADDOCK_HOME, and must write nothing outside it.
SETTINGS = LoadSettings(n_ctx=512, kept_states_ram_mb=0, kept_states_disk_mb=0)


@dataclass
class Served:
    server: ApiServer
    pool: ModelPool
    client: openai.OpenAI
    model: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def engine(self):  # type: ignore[no-untyped-def]
        lease = self.pool.lease(self.model)
        lease.release()
        return lease.engine


def serve(paths: list[Path], settings: LoadSettings = SETTINGS, **kwargs: object) -> Served:
    pool = ModelPool(entries_for([(p, None, None) for p in paths]), settings,
                     max_models=kwargs.pop("max_models", None))  # type: ignore[arg-type]
    server = ApiServer(pool, port=0, **kwargs)  # type: ignore[arg-type]
    server.start()
    client = openai.OpenAI(base_url=server.url, api_key=str(kwargs.get("api_key") or "none"), max_retries=0)
    return Served(server, pool, client, pool.entries()[0].id)


@pytest.fixture(scope="module")
def smol(instruct_model: Path) -> Iterator[Served]:
    """SmolLM2 served at a 512-token context (small enough to overflow on purpose)."""
    served = serve([instruct_model])
    served.engine()  # loaded once for the module
    yield served
    served.server.stop()
    served.pool.close()
