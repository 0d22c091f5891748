"""Fixtures of the model-library tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.models.library import Library


@pytest.fixture
def library() -> Iterator[Library]:
    """The model library in the test's PADDOCK_HOME."""
    lib = Library()
    yield lib
    lib.close()
