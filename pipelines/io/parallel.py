"""Work on a few threads, results in input order, memory bounded by what is in flight."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(work: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(work, items)`` on ``workers`` threads (for code that releases the GIL:
    numpy, pyarrow). Results come in input order; at most ``2 * workers`` items are
    taken ahead of the consumer, so a lazy ``items`` is never read whole. The first
    error is raised where its result would have been; the items after it are dropped."""
    if workers <= 1:
        yield from map(work, items)
        return
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="revattr-map") as pool:
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error, or a consumer that stopped early: drop what has not started
            for future in pending:
                future.cancel()
