"""ordered_map: input order, bounded read-ahead, errors where they happen."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.io.parallel import ordered_map


def test_results_come_in_input_order_even_when_later_items_finish_first():
    def slow_for_small(n: int) -> int:
        time.sleep(0.02 if n % 3 == 0 else 0)
        return n * n

    assert list(ordered_map(slow_for_small, range(20), workers=2)) == [n * n for n in range(20)]


def test_the_items_run_on_several_threads_at_once():
    both_running = threading.Barrier(2, timeout=5)

    def wait_for_the_other(n: int) -> int:
        both_running.wait()  # breaks (BrokenBarrierError) unless two items run together
        return n

    assert list(ordered_map(wait_for_the_other, range(4), workers=2)) == [0, 1, 2, 3]


def test_a_lazy_input_is_read_at_most_twice_the_workers_ahead():
    taken = []

    def items():
        for n in range(100):
            taken.append(n)
            yield n

    results = ordered_map(lambda n: n, items(), workers=2)
    assert next(results) == 0
    assert len(taken) <= 5  # 4 in flight when the first result is handed out, then one more
    results.close()


def test_an_error_is_raised_in_place_and_the_results_before_it_are_kept():
    def fail_on_five(n: int) -> int:
        if n == 5:
            raise ValueError("five")
        return n

    got = []
    with pytest.raises(ValueError, match="five"):
        for value in ordered_map(fail_on_five, range(10), workers=2):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


def test_one_worker_maps_in_this_thread():
    threads = set()
    list(ordered_map(lambda n: threads.add(threading.current_thread()), range(3), workers=1))
    assert threads == {threading.current_thread()}
