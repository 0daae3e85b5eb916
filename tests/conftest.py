"""Test-session settings: the resolved-reference cache lives in a temporary folder of the
session (never the user's ``~/.cache``); each xdist worker has its own."""

from __future__ import annotations

import os
import tempfile

import pytest

from pipelines.io.reference_cache import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def _reference_cache_dir() -> None:
    with tempfile.TemporaryDirectory(prefix="revattr-cache-") as folder:
        previous = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = folder
        yield
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = previous
