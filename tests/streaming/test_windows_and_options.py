"""Daily windows in the reporting timezone, lateness instants, duration flags."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pipelines.streaming_options import parse_duration
from pipelines.transforms.windowed_views import day_expiry_micros, day_windows
from tests.streaming.helpers import epoch


def micros(text: str) -> int:
    return int(epoch(text) * 1_000_000)


def utc(value: int) -> str:
    return dt.datetime.fromtimestamp(value / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_utc_days_are_midnight_to_midnight():
    start, end = day_windows(np.array([micros("2026-03-01T23:59:59Z")]))
    assert (utc(start[0]), utc(end[0])) == ("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z")


@pytest.mark.parametrize(
    ("instant", "window"),
    [
        # EST (UTC-5) before the change, the 23-hour local day of 8 March, then EDT.
        ("2026-03-02T03:00:00Z", ("2026-03-01T05:00:00Z", "2026-03-02T05:00:00Z")),
        ("2026-03-08T12:00:00Z", ("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z")),
        ("2026-03-09T03:59:59Z", ("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z")),
        ("2026-03-09T04:00:00Z", ("2026-03-09T04:00:00Z", "2026-03-10T04:00:00Z")),
    ],
)
def test_local_days_follow_daylight_saving_time(instant, window):
    start, end = day_windows(np.array([micros(instant)]), "America/New_York")
    assert (utc(start[0]), utc(end[0])) == window


def test_a_day_stops_accepting_data_once_the_watermark_passes_its_end_plus_the_lateness():
    expiry = day_expiry_micros(dt.date(2026, 3, 1), "UTC", 3 * 86_400)
    assert expiry == micros("2026-03-05T00:00:00Z") + 1_000
    # In New York the UTC day 1 March is last covered by the local day ending 2 March 05:00Z.
    expiry = day_expiry_micros(dt.date(2026, 3, 1), "America/New_York", 86_400)
    assert expiry == micros("2026-03-03T05:00:00Z") + 1_000


@pytest.mark.parametrize(
    ("text", "seconds"), [("3d", 259_200), ("12h", 43_200), ("30m", 1_800), ("45s", 45),
                          ("90", 90), ("1.5h", 5_400), ("0", 0)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3 days", "-1", "1w"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)
