"""Frame builders: exact totals, derived counts, reconciliation, merging partial reductions."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from pipelines.quality import stage_frames as sf
from tests import quality as c


def test_facts_totals_derive_counts_from_the_event_type_and_match_the_view():
    facts = c.attributed_events()
    counts = [m for m in ("won_deals", "lost_deals", "created_deals") if m in facts.column_names]
    derived = sf.measure_totals(facts.drop_columns(counts))
    assert derived.equals(sf.measure_totals(facts))
    totals = dict(zip(*derived.to_pydict().values(), strict=True))
    assert totals["won_deals"] == Decimal(2)  # three wins, one reopen
    assert totals["booked_revenue"] == Decimal("124.50")
    frame = sf.frames_from_tables("territory_revenue", c.view_inputs("territory_revenue"))
    assert frame["totals"]["facts_total"].equals(frame["totals"]["view_total"])


def test_partial_reductions_merge_to_the_whole():
    facts = c.attributed_events()
    for kind in ("totals", "daily"):
        parts = [sf.reduce_input(kind, facts.slice(i, 3), "attributed_events")
                 for i in range(0, facts.num_rows, 3)]
        whole = sf.reduce_input(kind, facts, "attributed_events")
        assert sf.merge_reduced(kind, parts, "attributed_events").equals(whole)
        assert sf.merge_reduced(kind, [], "attributed_events").num_rows in (0, 6)


def test_a_day_only_one_view_has_is_unbalanced():
    daily = sf.daily_booked(c.attributed_events())
    extra = pa.table({"day": daily["day"].slice(0, 1),
                      "booked_revenue": pa.array([Decimal("5.00")], sf.TOTAL_TYPE)})
    lonely = pa.table({"day": pa.array([20000], pa.int32()).cast(pa.date32()),
                       "booked_revenue": pa.array([Decimal("1.00")], sf.TOTAL_TYPE)})
    frame = sf.reconciliation_frame(daily, pa.concat_tables([daily, lonely]),
                                    sf.merge_daily([daily, extra]))
    rows = {r["day"].isoformat(): r for r in frame.to_pylist()}
    assert rows["2024-10-04"]["events_total"] == Decimal("0.00")
    assert rows["2024-10-04"]["balanced"] is False
    assert rows["2026-03-01"]["balanced"] is False  # manager view +5.00
    assert rows["2026-03-02"]["balanced"] is True


def test_unassigned_flags_are_zero_or_one_and_null_keys_count_as_zero():
    facts = c.set_value(c.attributed_events(), "territory_id", 0, None)
    flagged = sf.unassigned_flags(facts)
    assert flagged["is_unassigned_territory"].to_pylist() == [0] * 9 + [1]
    assert flagged["is_unassigned_account_manager"].to_pylist() == [0] * 9 + [1]
