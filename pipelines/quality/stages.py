"""Which suites a pipeline run checks, at which stage: one list for every executor.

Each check reads the inputs its suite names (``stage_frames.INPUTS``): ``events``
(parsed events), ``attributed_events``, the two views and the reference tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.quality.stage_check import DEFAULT_SAMPLE_ROWS_PER_BATCH
from schemas.outputs import REVENUE_VIEWS


@dataclass(frozen=True)
class StageCheck:
    """One suite run on one stage's outputs."""

    label: str  # Beam step label
    stage: str
    suite: str
    sample_rows_per_batch: int | None = DEFAULT_SAMPLE_ROWS_PER_BATCH  # None: every row


STAGE_CHECKS: tuple[StageCheck, ...] = (
    StageCheck("CheckReference", "reference", "reference", None),
    StageCheck("CheckParsedEvents", "parsed", "raw_events"),
    StageCheck("CheckEnrichedEvents", "enriched", "enriched_events"),
    StageCheck("CheckReconciliation", "aggregated", "reconciliation"),
    # Views are small and their key uniqueness is checked exhaustively: not sampled.
    *(StageCheck(f"Check_{view}", "aggregated", view, None) for view in REVENUE_VIEWS),
)
