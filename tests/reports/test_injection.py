"""Untrusted CRM text is inert: escaped in HTML, neutralised in CSV, never a path."""

from __future__ import annotations

import csv
import io
import re

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.reports.csv_safe import TRIGGERS
from pipelines.reports.data import CSV_COLUMNS
from tests.utils import copy_database, edit_published

pytestmark = pytest.mark.slow
runner = CliRunner()

SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://x")'
IMG = "<img src=x onerror=alert(1)>"
PLUS = "+1+cmd|' /C calc'!A0"
NUMERIC = {
    "amount",
    "booked_revenue",
    "pipeline_created",
    "won_deals",
    "lost_deals",
    "created_deals",
    "refunds",
}


@pytest.fixture(scope="module")
def planted(published_db, tmp_path_factory):
    """A copy of the database with hostile names on one busy account's people and places."""
    db = copy_database(published_db, tmp_path_factory.mktemp("hostile") / "revenue.duckdb")
    with duckdb.connect(str(db), read_only=True) as con:
        accounts = con.execute(
            """SELECT account_id, any_value(account_manager_id), any_value(territory_manager_id),
                      any_value(territory_id)
               FROM attributed_events
               WHERE day >= DATE '2026-03-01' AND attribution_status = 'attributed'
               GROUP BY account_id ORDER BY count(*) DESC LIMIT 3"""
        ).fetchall()
    (a1, am, tm, territory), (a2, *_), (a3, *_) = accounts
    update = "UPDATE accounts SET account_name = ? WHERE account_id = ?"
    edit_published(
        db,
        "accounts",
        (update, [SCRIPT, a1]),
        (update, [FORMULA, a2]),
        ("UPDATE accounts SET account_name = ?, city = ? WHERE account_id = ?",
         [PLUS, "@SUM(1+1)*cmd", a3]),
    )
    edit_published(db, "territories", (
        "UPDATE territories SET territory_name = ? WHERE territory_id = ?", [IMG, territory]))
    edit_published(
        db,
        "people",
        ("UPDATE people SET name = ? WHERE person_id = ?", [SCRIPT, tm]),
        ("UPDATE people SET name = ? WHERE person_id = ?", [FORMULA, am]),
    )
    # A manager id that would escape the output folder if used as a file name.
    edit_published(db, "territory_managers", (
        "UPDATE territory_managers SET manager_id = '../../evil' WHERE manager_id = "
        "(SELECT min(manager_id) FROM territory_managers WHERE manager_id <> ?)",
        [tm],
    ))
    return db, am, tm


def _run(db, out, manager):
    return runner.invoke(app, ["report", "--db", str(db), "--out", str(out), "--manager", manager])


def test_html_shows_hostile_names_as_text(planted, tmp_path):
    db, am, tm = planted
    for manager in (am, tm):
        result = _run(db, tmp_path, manager)
        assert result.exit_code == 0, result.output
    pages = [tmp_path / "index.html", *tmp_path.glob("*/*.html")]
    assert len(pages) == 3
    seen = ""
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<script" not in text.lower()
        for tag in re.findall(r"<img[^>]*>", text, flags=re.IGNORECASE):  # only our charts
            assert re.fullmatch(
                r'<img class="chart" alt="[^"<>]*" src="data:image/svg\+xml;'
                r'base64,[A-Za-z0-9+/=]+">',
                tag,
            ), tag
        seen += text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in seen
    assert "&lt;img src=x onerror=alert(1)&gt;" in seen
    assert "=HYPERLINK(&#34;http://x&#34;)" in seen or "=HYPERLINK(&quot;http://x&quot;)" in seen


def test_csv_cells_never_start_a_formula(planted, tmp_path):
    db, am, tm = planted
    for manager in (am, tm):
        assert _run(db, tmp_path, manager).exit_code == 0
    found = set()
    for path in tmp_path.glob("*/*.csv"):
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
        assert tuple(rows[0]) == CSV_COLUMNS
        for row in rows[1:]:
            for column, cell in zip(CSV_COLUMNS, row, strict=True):
                if column in NUMERIC:
                    continue  # numbers may be negative; they are not formulas
                assert not cell.lstrip(" ").startswith(TRIGGERS), (column, cell)
                if "HYPERLINK" in cell or "cmd" in cell:
                    found.add(cell)
    assert "'" + FORMULA in found  # the account name and the account manager's name
    assert "'" + PLUS in found and "'@SUM(1+1)*cmd" in found


def test_a_person_id_that_is_not_a_file_name_gets_no_report(planted, tmp_path):
    db, *_ = planted
    result = _run(db, tmp_path / "out", "../../evil")
    assert result.exit_code == 1
    assert "not a safe file name" in result.output
    assert not (tmp_path / "evil.html").exists()
    assert {p.name for p in tmp_path.rglob("*") if p.is_file()} == {"index.html"}
