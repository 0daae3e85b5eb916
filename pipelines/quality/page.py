"""The data-quality page: one self-contained HTML file per run (no external assets).

Stages are listed with those holding failures first; within a stage, critical
failures, then warnings, then passed checks. Every value comes from the data:
control and bidi characters are replaced and long values cut
(``pipelines.reports.inert``), then jinja2's autoescaping escapes it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import pyarrow as pa

from pipelines.reports.inert import display

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "quality.html.j2"
VALUE_LIMIT = 1000  # characters of one value shown (quarantined raw text is up to 4,096)
# Pipeline order of the stages; unknown stages follow alphabetically.
STAGE_ORDER: tuple[str, ...] = (
    "reference", "raw_events", "enriched_events", "attributed_events", "territory_revenue",
    "account_manager_revenue", "reconciliation", "publish",
)


def _inert(value: Any) -> Any:
    """Jinja ``finalize``: data text made inert for display (control and bidi characters
    replaced, cut to ``VALUE_LIMIT``) before autoescaping."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return display(value, VALUE_LIMIT)
    return value


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_inert,
    )


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _examples(text: str | None) -> dict[str, Any]:
    """Examples JSON -> a small table (list of objects) or a list of values; else raw text."""
    if not text:
        return {"example_table": None, "example_values": None}
    try:
        items = json.loads(text)
    except (ValueError, TypeError):
        return {"example_table": None, "example_values": None}
    if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
        columns: list[str] = []
        for item in items:
            columns.extend(k for k in item if k not in columns)
        rows = [[_cell(item.get(c)) for c in columns] for item in items]
        return {"example_table": {"columns": columns, "rows": rows}, "example_values": None}
    if isinstance(items, list):
        return {"example_table": None, "example_values": [_cell(i) for i in items]}
    return {"example_table": None, "example_values": [_cell(items)]}


def _rank(row: dict[str, Any]) -> int:
    """Critical failures first, then other failures, then passed checks."""
    if not row["success"]:
        return 0 if row["severity"] == "critical" else 1
    return 2


def page_context(results: pa.Table, run_id: str) -> dict[str, Any]:
    rows = results.to_pylist()
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for position, row in enumerate(rows):
        by_stage.setdefault(row["stage"], []).append({**row, "_position": position,
                                                      **_examples(row.get("examples"))})
    stages = []
    for name, stage_rows in by_stage.items():
        stage_rows.sort(key=lambda r: (_rank(r), r["_position"]))
        critical = sum(1 for r in stage_rows if not r["success"] and r["severity"] == "critical")
        warning = sum(1 for r in stage_rows if not r["success"] and r["severity"] != "critical")
        stages.append({"name": name, "rows": stage_rows, "critical": critical,
                       "warning": warning})
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    stages.sort(key=lambda s: (0 if s["critical"] else 1 if s["warning"] else 2,
                               order.get(s["name"], len(order)), s["name"]))
    failed_critical = sum(s["critical"] for s in stages)
    failed_warning = sum(s["warning"] for s in stages)
    return {
        "run_id": run_id,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "stages": stages,
        "totals": {"checks": len(rows), "critical": failed_critical, "warning": failed_warning,
                   "passed": len(rows) - failed_critical - failed_warning},
    }


def render_quality_page(results: pa.Table, run_id: str, out_path: Path) -> Path:
    """Write the page for ``results`` (``CHECK_RESULT_SCHEMA`` rows) to ``out_path``."""
    out_path = Path(out_path)
    html = _environment().get_template(TEMPLATE).render(**page_context(results, run_id))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out_path)
    return out_path
