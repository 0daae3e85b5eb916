"""Hostile CRM text is inert in every report, CSV, mail and terminal line.

Account, territory and people names carry HTML, CSV formulas (also behind an
RTL override or a zero-width space), bidi controls, control characters and
escape sequences, CR/LF and Unicode line separators (header injection), and a
10,000-character name. One small history is published with them and every
manager's report is rendered and mailed (built, not sent).
"""

from __future__ import annotations

import csv
import io
import re
from email import message_from_bytes, policy
from email.utils import getaddresses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.reports import mail
from pipelines.reports.csv_safe import _LEADING, TRIGGERS
from pipelines.reports.data import CSV_COLUMNS
from pipelines.reports.inert import DISPLAY_LIMIT, NAME_LIMIT, display
from pipelines.reports.periods import parse_period
from pipelines.reports.render import write_reports
from tests.reports.histories import NOW, History, publish

pytestmark = pytest.mark.slow
runner = CliRunner()

LONG = "L" * 9_990 + "-LONGNAME"  # 9,999 characters
RTL = "Acme\u202efdp.exe"
ISOLATE = "Iso\u2066late\u2069\u200f"
CONTROL = "Bell\x07\x1b[2J\x85\x9bName"
SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://x")'
HIDDEN_FORMULA = "\u202e=cmd|' /C calc'!A0"
ZW_FORMULA = "\u200b@SUM(1+1)"  # (the loader trims a leading space)
CRLF = "Eve\r\nBcc: evil@example.com"
LSEP = "Bob\u2028Bcc: evil@example.com\u0085X-Evil: 1"
ACCOUNT_NAMES = [LONG, RTL, ISOLATE, CONTROL, SCRIPT, FORMULA, HIDDEN_FORMULA, ZW_FORMULA]
PEOPLE = {"TM-1": LONG, "TM-2": CRLF, "AM-1": LSEP, "AM-2": RTL, "AM-3": CONTROL}
# What must never reach a page, a header or a terminal (tab, LF, CR are whitespace in HTML).
UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)


def _history() -> History:
    accounts = [
        {"account_id": f"ACC-{i}", "account_name": name, "country": "US", "city": name[:50]}
        for i, name in enumerate(ACCOUNT_NAMES)
    ]
    return History(
        reference={
            "territories": [
                {"territory_id": "T-ROOT", "territory_name": RTL, "level": "global"},
                {"territory_id": "T-US", "territory_name": LONG, "parent_territory_id": "T-ROOT",
                 "level": "country"},
            ],
            "territory_rules": [{"territory_id": "T-US", "country": "US"}],
            "territory_managers": [
                {"territory_id": "T-ROOT", "manager_id": "TM-1"},
                {"territory_id": "T-US", "manager_id": "TM-2"},
            ],
            "people": [
                {"person_id": p, "name": name, "email": f"{p.lower()}@example.com",
                 "role": "territory_manager" if p.startswith("TM") else "account_manager"}
                for p, name in PEOPLE.items()
            ],
            "accounts": accounts,
            "account_assignments": [
                {"account_id": a["account_id"], "account_manager_id": f"AM-{i % 3 + 1}"}
                for i, a in enumerate(accounts)
            ],
            "fx_rates": [{"currency": "USD", "rate_date": "2020-01-01",
                          "rate_to_reporting": "1"}],
        },
        events=[
            {"event_id": f"E-{i}", "event_type": "deal_won",
             "event_time": f"2026-03-{i + 2:02d}T10:00:00Z", "deal_id": f"D-{i}",
             "account_id": a["account_id"], "amount": f"{1000 + i}.00", "currency": "USD"}
            for i, a in enumerate(accounts)
        ],
    )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("hostile-text")
    db = publish(folder / "data", _history())
    reports = write_reports(db, folder / "reports", parse_period("2026-03"), now=NOW)
    assert {r.person_id for r in reports.written} == set(PEOPLE)
    return db, folder / "reports", reports


def test_pages_hold_no_control_or_bidi_character_and_cut_the_long_name(hostile):
    _db, out, _reports = hostile
    pages = [out / "index.html", *out.glob("*/*.html")]
    assert len(pages) == 1 + len(PEOPLE)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not UNSAFE.search(text), (page.name, UNSAFE.search(text))
        assert "<script>" not in text and "HYPERLINK(" not in text.split("</style>")[0]
        assert "L" * DISPLAY_LIMIT not in text, page.name  # never the whole long name
    tm1 = (out / "territory_managers" / "TM-1.html").read_text(encoding="utf-8")
    assert "L" * (DISPLAY_LIMIT - 1) + "…" in tm1  # the person's name, cut with an ellipsis
    am1 = (out / "account_managers" / "AM-1.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in am1 or "&lt;script&gt;" in tm1
    assert "Acme\ufffdfdp.exe" in tm1  # the override is shown as a replacement character


def test_csv_keeps_full_values_and_no_cell_starts_a_formula(hostile):
    _db, out, _reports = hostile
    cells = set()
    for path in out.glob("*/*.csv"):
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
        assert tuple(rows[0]) == CSV_COLUMNS
        for row in rows[1:]:
            for column, cell in zip(CSV_COLUMNS, row, strict=True):
                cells.add(cell)
                if column in {"amount", "booked_revenue", "pipeline_created", "refunds",
                              "won_deals", "lost_deals", "created_deals"}:
                    continue
                rest = cell[_LEADING.match(cell).end():]
                assert not rest.startswith(TRIGGERS), (path.name, column, cell)
    assert LONG in cells and RTL in cells  # the CSV has the full, unaltered value
    assert "'" + FORMULA in cells and "'" + HIDDEN_FORMULA in cells and "'" + ZW_FORMULA in cells


def _message(delivery: mail.Delivery, reports) -> bytes:  # noqa: ANN001
    return bytes(mail.build_message(delivery, reports, "reports@example.com"))


def test_mail_headers_are_one_bounded_line_with_the_one_intended_recipient(hostile):
    _db, _out, reports = hostile
    deliveries = mail.plan(reports)
    assert len(deliveries) == len(PEOPLE) and not any(d.problem for d in deliveries)
    for d in deliveries:
        raw = _message(d, reports)  # U+2028 / U+0085 in a name used to raise here
        message = message_from_bytes(raw, policy=policy.default)
        subject = str(message["Subject"]).strip()  # a folded header parses with a space
        assert subject == d.subject
        assert not UNSAFE.search(subject) and "\n" not in subject and "\r" not in subject
        assert len(subject) <= len("Revenue report 2026-03: territory manager ") + NAME_LIMIT
        assert getaddresses([str(message["To"])])[0][1] == d.to
        assert len(getaddresses([str(message["To"])])) == 1
        assert message["Bcc"] is None and message["X-Evil"] is None
        assert {k.lower() for k in message} <= {"from", "to", "subject", "message-id",
                                                 "mime-version", "content-type"}
        body = message.get_body(preferencelist=("plain",)).get_content()
        assert not UNSAFE.search(body.splitlines()[0]), body.splitlines()[0]
    subjects = {d.report.person_id: d.subject for d in deliveries}
    assert subjects["TM-1"].endswith("L…")  # the 10k name is cut
    assert subjects["AM-2"] == "Revenue report 2026-03: account manager Acme fdp.exe"
    assert subjects["AM-1"] == (
        "Revenue report 2026-03: account manager Bob Bcc: evil@example.com X-Evil: 1")


def test_terminal_output_carries_no_escape_sequence_or_bidi_control(hostile, tmp_path: Path):
    db, _out, _reports = hostile
    result = runner.invoke(
        app, ["report", "--db", str(db), "--out", str(tmp_path), "--period", "2026-03",
              "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would send" in result.output
    assert "\x1b" not in result.output and not UNSAFE.search(result.output)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (RTL, "Acme\ufffdfdp.exe"),
        ("a\x00b\x1bc\x9bd", "a\ufffdb\ufffdc\ufffdd"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),  # whitespace in HTML, kept
        ("x" * 10_000, "x" * (DISPLAY_LIMIT - 1) + "…"),
        ("Zoë \u200d👩\u200d💻 \u0641\u0627\u0631\u0633\u06cc", None),  # ZWJ, Persian: kept
    ],
)
def test_display_replaces_only_dangerous_characters(text: str, shown: str | None) -> None:
    assert display(text) == (text if shown is None else shown)
