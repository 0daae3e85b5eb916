"""CheckStage wiring: sampling per batch, combining, one suite run, empty inputs."""

from __future__ import annotations

from decimal import Decimal

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that

from pipelines.quality.gx_runner import CHECK_RESULT_SCHEMA
from pipelines.quality.suites import load_suite
from pipelines.transforms.check_stage import CheckStage, ReduceInput
from tests import quality as c


def one_result(failing: set[str], suite: str, observed_contains: dict[str, str] | None = None):
    """Matcher: exactly one results table, every expectation of ``suite``, ``failing`` failed."""

    def _match(tables: list[pa.Table]) -> None:
        if len(tables) != 1:
            raise BeamAssertException(f"expected one results table, got {len(tables)}")
        [table] = tables
        if table.schema != CHECK_RESULT_SCHEMA:
            raise BeamAssertException(f"schema differs: {table.schema}")
        rows = table.to_pylist()
        names = [r["expectation"] for r in rows]
        expected_names = [e.name for e in load_suite(suite).expectations]
        if names != expected_names:
            raise BeamAssertException(f"expectations {names} != {expected_names}")
        failed = {r["expectation"] for r in rows if not r["success"]}
        if failed != failing:
            raise BeamAssertException(f"failed {sorted(failed)}, expected {sorted(failing)}")
        observed = {r["expectation"]: r["observed"] for r in rows}
        for name, text in (observed_contains or {}).items():
            if text not in observed[name]:
                raise BeamAssertException(f"{name}: {text!r} not in {observed[name]!r}")

    return _match


def test_clean_batches_pass_and_a_defect_in_a_later_batch_is_found():
    events = c.events()
    first, second = events.slice(0, 5), events.slice(5)
    bad = c.set_value(second, "event_type", 0, "deal_teleported")
    with TestPipeline() as p:
        clean = p | "Clean" >> beam.Create([first, second]) | "CheckClean" >> CheckStage(
            "parse", "raw_events")
        dirty = p | "Dirty" >> beam.Create([first, bad]) | "CheckDirty" >> CheckStage(
            "parse", "raw_events")
        assert_that(clean, one_result(set(), "raw_events"), label="CleanResults")
        assert_that(dirty, one_result({"event_type_known"}, "raw_events"), label="DirtyResults")


def test_samples_every_kth_row_of_each_batch_and_says_so():
    events = c.attributed_events()
    big = pa.concat_tables([events] * 30)  # 300 rows, event ids repeat
    with TestPipeline() as p:
        results = p | beam.Create([big]) | CheckStage("attribute", "enriched_events",
                                                      sample_rows_per_batch=10)
        # Every 30th row of 30 stacked copies is the same event: the sample repeats e01.
        assert_that(results, one_result({"event_id_unique"}, "enriched_events", {
            "unassigned_territory_share": "built from 10 of 300 attributed_events rows"}))


def test_empty_input_gives_results_without_crashing():
    with TestPipeline() as p:
        empty = p | beam.Create([]).with_output_types(pa.Table)
        results = empty | CheckStage("attribute", "enriched_events")
        assert_that(results, one_result(set(), "enriched_events", {
            "unassigned_territory_share": "not evaluated: no rows",
            "event_id_unique": "0 of 0"}))


def test_view_suite_reads_the_view_and_exact_totals_of_all_facts():
    facts = c.attributed_events()
    view = c.view("territory_revenue")
    off = c.set_value(view, "booked_revenue", 0, c.row(view, 0)["booked_revenue"] + Decimal("1"))
    with TestPipeline() as p:
        fact_batches = p | "Facts" >> beam.Create([facts.slice(0, 3), facts.slice(3)])
        good = {"territory_revenue": p | "View" >> beam.Create([view]),
                "attributed_events": fact_batches}
        bad = {"territory_revenue": p | "OffView" >> beam.Create([off]),
               "attributed_events": fact_batches}
        assert_that(good | "CheckGood" >> CheckStage("aggregate", "territory_revenue",
                                                     sample_rows_per_batch=1),
                    one_result(set(), "territory_revenue"), label="Good")
        assert_that(bad | "CheckBad" >> CheckStage("aggregate", "territory_revenue"),
                    one_result({"totals_match_facts"}, "territory_revenue"), label="Bad")


def test_reduce_input_bounds_the_combined_sample():
    combine = ReduceInput("rows", "events", sample_rows_per_batch=None, max_rows=15)
    events = c.events()
    accumulator = combine.create_accumulator()
    for _ in range(4):
        accumulator = combine.add_input(accumulator, events)
    table, seen = combine.extract_output(accumulator)
    assert seen == 40 and table.num_rows <= 15


def test_a_multi_input_suite_needs_a_dict():
    with pytest.raises(ValueError, match="pass a dict"):
        with TestPipeline() as p:
            _ = p | beam.Create([c.view("territory_revenue")]) | CheckStage(
                "aggregate", "territory_revenue")
