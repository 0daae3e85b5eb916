"""Test-session settings: the resolved-reference cache lives in a temporary folder of the
session (never the user's ``~/.cache``); each xdist worker has its own.

Collection order, for ``make test`` (``pytest -n 2``): the longest modules come first.
xdist's load scheduler hands each worker a first run of consecutive tests (about an
eighth of the suite), then more as it goes: the long modules thus start at once, each
whole on one worker (its module fixture built once, a module's closing check after its
property test), and none is left running alone at the end while the other worker idles.
(``--dist loadgroup`` cannot keep a module together here: pytest-xdist 3.8 renames
``item._nodeid``, which pytest 9 no longer reads.)"""

from __future__ import annotations

import os
import tempfile

import pytest

from pipelines.io.reference_cache import CACHE_ENV

# Longest first (seconds of one module on a 2-core machine, from --durations); modules
# not named keep their order, after these.
SLOW_MODULES = (
    "tests/test_crash_anywhere.py",  # ~130 s, 5 tests share 2 reference runs (~12 s)
    "tests/reports/test_scope_property.py",  # ~50-100 s; the last test checks the counts
    "tests/test_invariance.py",  # ~55 s, a module baseline
    "tests/test_fuzz_inputs.py",  # ~40 s; a module data set, closing bad-record count
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: place for place, module in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable


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
