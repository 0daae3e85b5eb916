"""WindowedViews: the two revenue views as event-time daily windows with triggered panes.

Streaming counterpart of ``AggregateViews`` (same rules, same CombineFn):

1. each attributed batch is split, vectorised, by *window* (the calendar day of
   ``event_time`` in the reporting timezone) and pre-aggregated per view with
   ``rules.aggregate.aggregate_view``; each partial is emitted as a
   ``TimestampedValue`` stamped with the earliest ``event_time`` it holds (inside
   its window), keyed by view name;
2. ``WindowInto`` daily windows with ``AfterWatermark(early=AfterProcessingTime(N),
   late=AfterCount(1))``, **accumulating** panes and the allowed lateness;
3. ``CombinePerKey(MergeViewPartials(view))``: each pane is the whole window's
   table so far (``rules.aggregate.merge_partials``);
4. the pane's window and ``PaneInfo`` are captured into a plain ``Pane`` record
   and the records are re-windowed into the global window for the sink, which
   *replaces* the stored value of (view, key, day, window) by the pane's.

The view tables keep the contract's grain, (key, UTC ``day``), whatever the
reporting timezone: with a non-UTC timezone a window (a local day) spans two UTC
days, and a UTC day is covered by two windows; the sink keeps one stored pane
value per window, so both add up.

``TrackClosedDays`` tells the sink when the watermark has passed the end of the
last window covering a UTC day plus the allowed lateness: from then on, Beam
drops that day's events from the windows (they are still written as facts), and
the sink repairs the day from the facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import NamedTuple
from zoneinfo import ZoneInfo

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import coders
from apache_beam.transforms import trigger as triggers
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import (
    FixedWindows,
    GlobalWindows,
    IntervalWindow,
    NonMergingWindowFn,
    TimestampedValue,
)
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines.rules.aggregate import VIEW_SCHEMAS, aggregate_view
from pipelines.transforms.aggregate_views import MergeViewPartials

DAY_MICROS = 86_400 * 1_000_000
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Z", "utc"})


def check_timezone(name: str) -> str:
    """The IANA name if known (``ValueError`` otherwise)."""
    if name in UTC_NAMES:
        return "UTC"
    try:
        ZoneInfo(name)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError for odd keys
        raise ValueError(f"unknown timezone {name!r}") from exc
    return name


def day_windows(micros: np.ndarray, timezone: str = "UTC") -> tuple[np.ndarray, np.ndarray]:
    """(start, end) in UTC microseconds of the reporting-timezone calendar day of each instant.

    A day runs from local midnight to the next local midnight (23 or 25 hours
    across a DST change); a midnight that does not exist (DST gap at 00:00) starts
    the day at the transition.
    """
    micros = np.asarray(micros, dtype=np.int64)
    if timezone in UTC_NAMES:
        start = np.floor_divide(micros, DAY_MICROS) * DAY_MICROS
        return start, start + DAY_MICROS
    instants = pa.array(micros, pa.timestamp("us", tz=timezone))
    local_day = pc.floor_temporal(pc.local_timestamp(instants), unit="day")
    next_day = pc.add(local_day, pa.scalar(dt.timedelta(days=1), pa.duration("us")))

    def utc(local: pa.Array) -> np.ndarray:
        at = pc.assume_timezone(local, timezone, ambiguous="earliest", nonexistent="latest")
        return at.cast(pa.int64()).to_numpy()

    return utc(local_day), utc(next_day.cast(pa.timestamp("us")))


class CalendarDayWindows(NonMergingWindowFn):
    """Daily windows from local midnight to local midnight in an IANA timezone.

    ``FixedWindows(86400)`` is used for UTC; this serves other timezones, whose
    days are not all 24 hours long.
    """

    def __init__(self, timezone: str) -> None:
        self.timezone = timezone

    def assign(self, context):  # noqa: ANN001, ANN201 (Beam's signature)
        start, end = day_windows(np.array([context.timestamp.micros]), self.timezone)
        return [IntervalWindow(Timestamp(micros=int(start[0])), Timestamp(micros=int(end[0])))]

    def get_window_coder(self) -> coders.Coder:
        return coders.coders.IntervalWindowCoder()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CalendarDayWindows) and other.timezone == self.timezone

    def __hash__(self) -> int:
        return hash((CalendarDayWindows, self.timezone))


def daily_windows(timezone: str = "UTC") -> beam.transforms.window.WindowFn:
    """The window function of the views: one window per reporting-timezone day."""
    if timezone in UTC_NAMES:
        return FixedWindows(86_400)
    return CalendarDayWindows(timezone)


def event_micros(table: pa.Table) -> np.ndarray:
    """``event_time`` of each row as UTC microseconds."""
    return table["event_time"].combine_chunks().cast(pa.int64()).to_numpy()


def expiry_micros(window_end: np.ndarray, allowed_lateness_s: int) -> np.ndarray:
    """When data of windows ending at ``window_end`` is surely dropped (UTC micros).

    Beam drops an element when ``watermark > window.end + allowed_lateness``; event-time
    timers have millisecond precision on the portable runners (a timer set at a
    microsecond fires at the millisecond below it), so this is the millisecond after.
    """
    return np.asarray(window_end, dtype=np.int64) + allowed_lateness_s * 1_000_000 + 1_000


def stamp_with_event_time(events: pa.Table) -> TimestampedValue:
    """A typed batch stamped with its earliest ``event_time``.

    Downstream, every timer (dedupe expiry, closed days) and every re-stamped partial
    lies at or after this instant, as the Beam model wants of outputs and holds.
    """
    micros = event_micros(events)
    return TimestampedValue(events, Timestamp(micros=int(micros.min()) if len(micros) else 0))


class Pane(NamedTuple):
    """One fired pane of one view, as the sink receives it."""

    view: str
    window_start: int  # UTC microseconds
    window_end: int
    index: int  # PaneInfo.index: 0, 1, 2, ... per window and view
    timing: str  # EARLY, ON_TIME, LATE
    is_last: bool
    table: pa.Table  # VIEW_SCHEMAS[view]: the window's totals so far (accumulating)


_TIMING = {0: "EARLY", 1: "ON_TIME", 2: "LATE", 3: "UNKNOWN"}


def split_by_window(
    events: pa.Table, timezone: str = "UTC"
) -> Iterator[TimestampedValue]:
    """Partial aggregates per (window, view), stamped inside their window."""
    if events.num_rows == 0:
        return
    micros = event_micros(events)
    starts, _ = day_windows(micros, timezone)
    for start in np.unique(starts):
        mask = starts == start
        rows = events.filter(pa.array(mask))
        stamp = Timestamp(micros=int(micros[mask].min()))
        for view in VIEW_SCHEMAS:
            yield TimestampedValue((view, aggregate_view(rows, view)), stamp)


class _CapturePane(beam.DoFn):
    """(view, table) in a window -> a ``Pane`` record (window and pane info made data)."""

    def process(
        self,
        element: tuple[str, pa.Table],
        window=beam.DoFn.WindowParam,  # noqa: B008 (Beam's parameter markers)
        pane=beam.DoFn.PaneInfoParam,  # noqa: B008
    ) -> Iterator[Pane]:
        view, table = element
        yield Pane(
            view=view,
            window_start=int(window.start.micros),
            window_end=int(window.end.micros),
            index=int(pane.index),
            timing=_TIMING.get(int(pane.timing), "UNKNOWN"),
            is_last=bool(pane.is_last),
            table=table,
        )


class WindowedViews(beam.PTransform):
    """Attributed events -> ``Pane`` records of both views (global window)."""

    def __init__(
        self,
        timezone: str = "UTC",
        early_firing_seconds: int = 60,
        allowed_lateness_seconds: int = 3 * 86_400,
    ) -> None:
        super().__init__()
        self.timezone = check_timezone(timezone)
        self.early_firing_seconds = early_firing_seconds
        self.allowed_lateness_seconds = allowed_lateness_seconds

    def trigger(self) -> triggers.TriggerFn:
        early = (
            triggers.AfterProcessingTime(self.early_firing_seconds)
            if self.early_firing_seconds > 0
            else None
        )
        return triggers.AfterWatermark(early=early, late=triggers.AfterCount(1))

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        partials = events | "SplitByWindowAndView" >> beam.FlatMap(
            split_by_window, self.timezone
        )
        panes = []
        for view in VIEW_SCHEMAS:
            panes.append(
                partials
                | f"Only_{view}" >> beam.Filter(lambda kv, v=view: kv[0] == v)
                | f"DailyWindows_{view}"
                >> beam.WindowInto(
                    daily_windows(self.timezone),
                    trigger=self.trigger(),
                    accumulation_mode=triggers.AccumulationMode.ACCUMULATING,
                    allowed_lateness=Duration(seconds=self.allowed_lateness_seconds),
                )
                | f"MergePartials_{view}" >> beam.CombinePerKey(MergeViewPartials(view))
                | f"CapturePane_{view}" >> beam.ParDo(_CapturePane())
            )
        return (
            panes
            | "GatherPanes" >> beam.Flatten()
            | "ToGlobalWindow" >> beam.WindowInto(GlobalWindows())
        )


# --------------------------------------------------------------------------- closed days


def day_expiry_micros(day: dt.date, timezone: str, allowed_lateness_s: int) -> int:
    """When the last window covering UTC ``day`` stops accepting data (UTC micros)."""
    last_instant = (
        dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
        * 1_000_000
        - 1
    )
    _, end = day_windows(np.array([int(last_instant)]), timezone)
    return int(expiry_micros(end, allowed_lateness_s)[0])


def _days_of(events: pa.Table) -> Iterator[tuple[str, str]]:
    days = pc.unique(pc.cast(events["event_time"], pa.date32())).to_pylist()
    for day in days:
        yield day.isoformat(), day.isoformat()


class _CloseDay(beam.DoFn):
    """Keyed by UTC day: an event-time timer at the day's expiry emits the day once passed.

    New events of the day re-set the timer to the same instant; if the watermark
    is already past it, the timer fires at the next watermark update, so a day
    first seen by a too-late event is still reported closed.
    """

    EXPIRY = userstate.TimerSpec("expiry", TimeDomain.WATERMARK)
    DAY = userstate.ReadModifyWriteStateSpec("day", coders.StrUtf8Coder())

    def __init__(self, timezone: str, allowed_lateness_seconds: int) -> None:
        self.timezone = timezone
        self.allowed_lateness_seconds = allowed_lateness_seconds

    def process(
        self,
        element: tuple[str, str],
        expiry=beam.DoFn.TimerParam(EXPIRY),  # noqa: B008
        day_state=beam.DoFn.StateParam(DAY),  # noqa: B008
    ) -> None:
        key, _ = element
        day_state.write(key)
        at = day_expiry_micros(
            dt.date.fromisoformat(key), self.timezone, self.allowed_lateness_seconds
        )
        expiry.set(Timestamp(micros=at))

    @userstate.on_timer(EXPIRY)
    def closed(self, day_state=beam.DoFn.StateParam(DAY)) -> Iterator[dt.date]:  # noqa: B008
        key = day_state.read()
        day_state.clear()
        if key:
            yield dt.date.fromisoformat(key)


class TrackClosedDays(beam.PTransform):
    """Attributed events -> UTC days whose windows the watermark has closed (global window)."""

    def __init__(self, timezone: str = "UTC", allowed_lateness_seconds: int = 3 * 86_400) -> None:
        super().__init__()
        self.timezone = check_timezone(timezone)
        self.allowed_lateness_seconds = allowed_lateness_seconds

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return (
            events
            | "DaysOfBatch"
            >> beam.FlatMap(_days_of).with_output_types(beam.typehints.KV[str, str])
            | "CloseWhenExpired"
            >> beam.ParDo(_CloseDay(self.timezone, self.allowed_lateness_seconds))
        )
