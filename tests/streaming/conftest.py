"""Fixtures of the streaming tests."""

from __future__ import annotations

import pytest

from pipelines.io.streaming_sink import close_connections


@pytest.fixture(autouse=True)
def _close_sink_connections():
    """The sink keeps one connection per database per process: close it after each test."""
    yield
    close_connections()
