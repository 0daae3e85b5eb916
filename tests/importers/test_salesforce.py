"""``revattr import salesforce``: the mapping functions, and a small export imported,
run and tied out to the cent against figures computed by hand from the fixture
(``fixtures/salesforce/``, Salesforce API field names)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.errors import UserError
from pipelines.importers import sf_reference as ref
from pipelines.importers.salesforce import import_salesforce
from pipelines.importers.sf_events import StageKinds, Step, opportunity_events, replay
from pipelines.importers.sf_export import SfObject, read_object
from pipelines.importers.sf_values import country_code, money, sf_datetime, sf_decimal, sf_id

FIXTURE = Path(__file__).parent / "fixtures" / "salesforce"
runner = CliRunner()

# The fixture's ids (18-character forms of 001Dn0000000001, ...).
U = {n: sf_id(f"005Dn0000{n:06d}") for n in range(1, 9)}
T = {n: sf_id(f"0MIDn0000{n:06d}") for n in range(1, 10)}
STAGES = StageKinds(frozenset({"closed won"}), frozenset({"closed lost"}))

# Contract section 1: booked_revenue of each event type (amount A, signed as sent).
BOOKED_SIGN = {"deal_won": 1, "deal_amended": 1, "deal_refunded": -1, "deal_reopened": -1}
WON_DELTA = {"deal_won": 1, "deal_reopened": -1}


def _obj(name: str, rows: list[dict]) -> SfObject:
    return SfObject(name, None, [dict(r) for r in rows], list(range(2, len(rows) + 2)))


def _at(day: int, month: int = 1) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


def _deal(steps: list[tuple[int, str, str]]) -> list[dict]:
    """Replay (day, stage, amount) steps of one USD deal; the first is the creation."""
    base = {"deal_id": "D", "deal_id_key": "sf-D", "account_id": "A",
            "opportunity_owner_id": None}
    parsed = [Step(f"sf-H{i}", _at(d), s, Decimal(a), STAGES.status(s))
              for i, (d, s, a) in enumerate(steps)]
    created = Step("sf-D", parsed[0].time, parsed[0].stage, parsed[0].amount, "open")
    events, _notes = replay(base, created, parsed, "USD")
    return events


def _booked(events: list[dict]) -> Decimal:
    return sum((Decimal(e["amount"]) * BOOKED_SIGN.get(e["event_type"], 0) for e in events),
               Decimal(0))


# ------------------------------------------------------------------------ values


def test_ids_are_normalised_to_18_characters():
    assert sf_id("001Dn0000000001") == "001Dn0000000001IAA"  # D and n: only D is upper case
    assert sf_id("001Dn0000000001IAA") == "001Dn0000000001IAA"
    assert sf_id(" ") is None


@pytest.mark.parametrize("text", ["2026-03-10T16:30:00.000Z", "2026-03-10T16:30:00Z",
                                  "2026-03-10T17:30:00.000+0100", "2026-03-10T08:30:00-08:00",
                                  "2026-03-10 16:30:00"])
def test_salesforce_datetimes_become_utc(text):
    assert sf_datetime(text) == datetime(2026, 3, 10, 16, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-02-30T10:00:00.000Z", "10/03/2026 16:30", "yesterday"])
def test_bad_datetimes_are_refused(text):
    with pytest.raises(ValueError):
        sf_datetime(text)


def test_money_is_exact_and_checked_against_the_currency_minor_unit():
    assert sf_decimal("1.2E7") == Decimal("12000000")
    assert str(money(Decimal("4000.5"), "EUR")) == "4000.50"
    assert str(money(Decimal("1500000.00"), "JPY")) == "1500000"
    with pytest.raises(ValueError, match="decimal place"):
        money(Decimal("1500.5"), "JPY")
    with pytest.raises(ValueError, match="ISO 4217"):
        money(Decimal("1"), "XXY")


@pytest.mark.parametrize(("code", "name", "expected"), [
    ("US", "United States", "US"), (None, "Japan", "JP"), (None, "de", "DE"),
    (None, "  United   Kingdom ", "GB"), (None, "Gotham", None), (None, None, None)])
def test_country_from_code_else_name(code, name, expected):
    assert country_code(code, name) == expected


# ------------------------------------------------------------------------ events


def test_amount_change_while_open_books_nothing_then_the_win_books_the_final_amount():
    events = _deal([(5, "Prospecting", "10000"), (10, "Negotiation", "12000"),
                    (20, "Closed Won", "12000")])
    assert [e["event_type"] for e in events] == ["deal_created", "deal_stage_changed",
                                                 "deal_won"]
    assert events[0]["amount"] == "10000.00"  # pipeline_created: the amount at creation
    assert _booked(events) == Decimal("12000")


def test_amount_change_while_won_is_a_signed_amendment():
    events = _deal([(1, "Prospecting", "20000"), (2, "Closed Won", "20000"),
                    (3, "Closed Won", "25000"), (4, "Closed Won", "23000")])
    amended = [e["amount"] for e in events if e["event_type"] == "deal_amended"]
    assert amended == ["5000.00", "-2000.00"]
    assert _booked(events) == Decimal("23000")


def test_reopening_reverses_the_win_and_its_amendments():
    events = _deal([(1, "Prospecting", "8000"), (2, "Closed Won", "8000"),
                    (3, "Closed Won", "8500"), (4, "Negotiation", "8500"),
                    (5, "Closed Won", "9000")])
    assert [e["event_type"] for e in events] == ["deal_created", "deal_won", "deal_amended",
                                                 "deal_reopened", "deal_won"]
    assert events[3]["amount"] == "8500.00"
    assert _booked(events) == Decimal("9000")
    assert sum(WON_DELTA.get(e["event_type"], 0) for e in events) == 1


def test_won_then_lost_is_reopened_then_lost():
    events = _deal([(1, "Prospecting", "6000"), (2, "Closed Won", "6000"),
                    (3, "Closed Lost", "6000")])
    assert [e["event_type"] for e in events][-2:] == ["deal_reopened", "deal_lost"]
    assert [e["event_id"] for e in events][-2:] == ["sf-H2-reopened", "sf-H2-lost"]
    assert _booked(events) == 0


@pytest.mark.parametrize("path", [
    ["Prospecting", "Closed Won", "Closed Lost", "Closed Won"],
    ["Closed Won", "Closed Won", "Prospecting", "Closed Lost"],
    ["Prospecting", "Closed Lost", "Prospecting", "Closed Won", "Closed Won"],
])
def test_booked_revenue_is_the_amount_while_won_and_zero_otherwise(path):
    steps = [(i + 1, stage, str(1000 + 250 * i)) for i, stage in enumerate(path)]
    events = _deal(steps)
    final_stage, final_amount = steps[-1][1], Decimal(steps[-1][2])
    assert _booked(events) == (final_amount if final_stage == "Closed Won" else 0)
    assert all(Decimal(e["amount"]) > 0 for e in events
               if e["event_type"] in ("deal_won", "deal_reopened"))


def test_closed_won_with_amount_zero_books_nothing_and_is_noted():
    opportunities = _obj("Opportunity", [{
        "Id": "006Dn0000000001IAA", "AccountId": "001Dn0000000001IAA", "StageName": "Closed Won",
        "Amount": "0", "CloseDate": "2026-03-01", "IsClosed": "true", "IsWon": "true",
        "CreatedDate": "2026-01-01T00:00:00.000Z", "LastModifiedDate": "2026-03-01T00:00:00Z"}])
    result = opportunity_events(opportunities, _obj("OpportunityHistory", []), STAGES,
                                default_currency="USD", convertible={"USD"})
    assert [e["event_type"] for e in result.events] == ["deal_created", "deal_stage_changed"]
    assert [r.reason for r in result.rejects] == ["zero_amount_won"]


def test_without_history_a_close_happens_on_the_close_date():
    opportunities = _obj("Opportunity", [{
        "Id": "006Dn0000000001IAA", "AccountId": "001Dn0000000001IAA", "StageName": "Closed Won",
        "Amount": "4000", "CloseDate": "2026-03-20", "IsClosed": "true", "IsWon": "true",
        "CreatedDate": "2026-01-15T12:00:00.000Z",
        "LastModifiedDate": "2026-03-20T16:00:00.000Z"}])
    result = opportunity_events(opportunities, _obj("OpportunityHistory", []), STAGES,
                                default_currency="USD", convertible={"USD"})
    won = result.events[-1]
    assert (won["event_type"], won["event_time"], won["amount"]) == (
        "deal_won", "2026-03-20T00:00:00Z", "4000.00")
    assert won["event_id"] == "sf-006Dn0000000001IAA-current-won"
    assert result.current_state_events == 1


# --------------------------------------------------------------------- reference


def test_fx_rates_are_cross_rates_from_the_corporate_currency():
    dated = _obj("DatedConversionRate", [
        {"IsoCode": "USD", "ConversionRate": "1.25", "StartDate": "2026-01-01"},
        {"IsoCode": "GBP", "ConversionRate": "0.85", "StartDate": "2026-01-01"},
        {"IsoCode": "USD", "ConversionRate": "1.2", "StartDate": "2026-02-01"},
    ])
    rows, rejects, convertible = ref.fx_rates(dated, _obj("CurrencyType", []),
                                              reporting="USD", corporate="EUR")
    assert rejects == [] and convertible == {"USD", "EUR", "GBP"}
    assert {(r["currency"], r["rate_date"]): r["rate_to_reporting"] for r in rows} == {
        ("EUR", "2026-01-01"): "1.2500000000", ("EUR", "2026-02-01"): "1.2000000000",
        ("GBP", "2026-01-01"): "1.4705882353", ("GBP", "2026-02-01"): "1.4117647059",
    }


def test_owner_history_gives_one_assignment_interval_per_owner():
    account = _obj("Account", [{"Id": "001Dn0000000001IAA", "OwnerId": U[3]}])
    history = _obj("AccountHistory", [
        {"Id": "h1", "AccountId": "001Dn0000000001", "Field": "Owner", "OldValue": "Ava Reed",
         "NewValue": "Ben Cole", "CreatedDate": "2026-01-10T00:00:00.000Z"},
        {"Id": "h2", "AccountId": "001Dn0000000001", "Field": "Owner",
         "OldValue": U[1][:15], "NewValue": U[2][:15], "CreatedDate": "2026-01-10T00:00:00.000Z"},
        {"Id": "h3", "AccountId": "001Dn0000000001", "Field": "Owner", "OldValue": U[2],
         "NewValue": U[3], "CreatedDate": "2026-02-01T08:00:00.000Z"},
    ])
    rows, rejects = ref.account_assignments(account, history)
    assert rejects == []
    assert [(r["account_manager_id"], r["valid_from"], r["valid_to"]) for r in rows] == [
        (U[1], None, "2026-01-10T00:00:00Z"),
        (U[2], "2026-01-10T00:00:00Z", "2026-02-01T08:00:00Z"),
        (U[3], "2026-02-01T08:00:00Z", None),
    ]


def test_territory_manager_is_the_forecast_user_else_an_owner_role():
    territory = _obj("Territory2", [{"Id": T[1], "ForecastUserId": U[1]}, {"Id": T[2]},
                                    {"Id": T[3]}])
    associations = _obj("UserTerritory2Association", [
        {"Id": "a1", "UserId": U[2], "Territory2Id": T[1], "RoleInTerritory2": "Owner"},
        {"Id": "a2", "UserId": U[4], "Territory2Id": T[2], "RoleInTerritory2": "Owner"},
        {"Id": "a3", "UserId": U[3], "Territory2Id": T[2], "RoleInTerritory2": "Owner"},
        {"Id": "a4", "UserId": U[5], "Territory2Id": T[3], "RoleInTerritory2": "Sales Rep"},
    ])
    rows, rejects = ref.territory_managers(territory, associations, {T[1], T[2], T[3]})
    assert {r["territory_id"]: r["manager_id"] for r in rows} == {T[1]: U[1], T[2]: U[3]}
    assert sorted((r.record_id, r.reason) for r in rejects) == [
        ("a1", "several_managers"), ("a2", "several_managers"), ("a4", "not_a_manager_role")]
    rows, _ = ref.territory_managers(territory, associations, {T[3]}, manager_roles=("*",))
    assert rows == [{"territory_id": T[3], "manager_id": U[5], "valid_from": None,
                     "valid_to": None}]


def test_two_accounts_at_one_address_in_different_territories_cannot_be_told_apart():
    accounts = [{"account_id": a, "country": "US", "region": "CA", "city": "San Francisco",
                 "postal_code": "94105"} for a in ("A1", "A2")]
    territories = [{"territory_id": t, "parent_territory_id": None} for t in ("T1", "T2")]
    associations = _obj("ObjectTerritory2Association", [
        {"Id": "o1", "ObjectId": "A1", "Territory2Id": "T1", "SobjectType": "Account"},
        {"Id": "o2", "ObjectId": "A2", "Territory2Id": "T2", "SobjectType": "Account"},
    ])
    rows, rejects = ref.territory_rules(associations, accounts, territories)
    assert [(r["territory_id"], r["postal_prefix"]) for r in rows] == [("T1", "94105")]
    assert [(r.record_id, r.reason) for r in rejects] == [("o2", "same_geography")]


# ------------------------------------------------------------------------ export


def test_rows_keep_their_physical_line_when_a_value_spans_lines(tmp_path):
    path = tmp_path / "Opportunity.csv"
    path.write_text('Id,AccountId,StageName,Amount,CloseDate,IsClosed,IsWon,OwnerId,CreatedDate,'
                    'LastModifiedDate,Description,IsDeleted\n'
                    'o1,a,S,1,2026-01-01,false,false,u,2026-01-01T00:00:00Z,,"two\nlines",false\n'
                    'o2,a,S,1,2026-01-01,false,false,u,2026-01-01T00:00:00Z,,,true\n'
                    'o3,a,S,1,2026-01-01,false,false,u,2026-01-01T00:00:00Z,,,false\n')
    obj, rejects = read_object("Opportunity", path)
    assert [r["Id"] for r in obj.rows] == ["o1", "o3"] and obj.lines == [2, 5]
    assert [(r.line, r.reason) for r in rejects] == [(4, "deleted")]


def test_a_missing_required_column_is_a_user_error_naming_the_file(tmp_path):
    (tmp_path / "Opportunity.csv").write_text("Id,Name\n")
    with pytest.raises(UserError, match="Opportunity.csv:1.*AccountId"):
        read_object("Opportunity", tmp_path / "Opportunity.csv")


# -------------------------------------------------------------------- end to end


def _rejects(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_import_is_deterministic_and_every_unmapped_row_is_listed(tmp_path):
    first = import_salesforce(FIXTURE, tmp_path / "a")
    import_salesforce(FIXTURE, tmp_path / "b")
    for name in ("events/salesforce.jsonl", "import_rejects.csv", "reference/fx_rates.csv",
                 "reference/territory_rules.csv", "reference/account_assignments.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    rejects = _rejects(first.rejects_file)
    assert len(rejects) == sum(first.rejects.values()) == 15
    where = {(r["file"], r["line"], r["reason"]) for r in rejects}
    assert ("Opportunity.csv", "16", "missing_field") in where  # after a 2-line Description
    assert ("Opportunity.csv", "17", "bad_currency") in where  # CHF: no dated rate
    assert ("Opportunity.csv", "18", "deleted") in where
    assert ("OpportunityHistory.csv", "32", "bad_timestamp") in where  # 2026-02-30
    assert ("OpportunityHistory.csv", "37", "unknown_opportunity") in where
    assert first.opportunities == 13 and first.history_rows == 31
    assert first.events == {"deal_created": 13, "deal_won": 12, "deal_reopened": 2,
                            "deal_amended": 2, "deal_lost": 2, "deal_stage_changed": 3}


# Booked revenue by hand, in USD (rates = 1 / DatedConversionRate.ConversionRate):
#   Ava Reed (Acme, Hooli): 12,000 (won after an open amount change) + 0 (won 6,000 then
#     lost) + 7,000 (Hooli, no territory)                                    = 19,000.00
#   Ben Cole (Globex, Stark, Umbrella before 15 Feb): 23,000 (20,000 +5,000 -2,000)
#     + 9,000 (won 8,000, reopened, won 9,000) + 4,000 (no history: CloseDate) + 1,280.00
#     (1,000 GBP x 1.28) + 10,000.00 (1,500,000 JPY x 0.0066666667 = 10,000.00005) = 47,280.00
#   Chen Liu (Initech, Umbrella from 15 Feb): 12,500.00 (10,000 EUR x 1.25) + 4,445.00
#     (4,000.50 EUR x 1.1111111111 after 1 March) + 3,840.00 (3,000 GBP x 1.28) = 20,785.00
EXPECTED_BY_ACCOUNT_MANAGER = {U[4]: Decimal("19000.00"), U[5]: Decimal("47280.00"),
                               U[6]: Decimal("20785.00")}
EXPECTED_BY_TERRITORY = {T[4]: Decimal("12000.00"), T[5]: Decimal("36000.00"),
                         T[6]: Decimal("16945.00"), T[7]: Decimal("5120.00"),
                         T[1]: Decimal("10000.00"), "UNASSIGNED": Decimal("7000.00")}
EXPECTED_ROLLUP = {T[1]: Decimal("80065.00"), T[2]: Decimal("48000.00"),
                   T[3]: Decimal("22065.00")}


@pytest.mark.slow
def test_import_then_run_ties_out_to_the_cent(tmp_path):
    out, db = tmp_path / "imported", tmp_path / "db" / "revenue.duckdb"
    result = runner.invoke(app, ["import", "salesforce", "--export", str(FIXTURE),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rejected rows" in result.output
    result = runner.invoke(app, ["run", "--events", str(out / "events"),
                                 "--reference", str(out / "reference"), "--db", str(db)])
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(db), read_only=True) as con:
        def totals(sql: str) -> dict:
            return dict(con.execute(sql).fetchall())

        assert totals("SELECT account_manager_id, sum(booked_revenue) FROM "
                      "account_manager_revenue GROUP BY 1") == EXPECTED_BY_ACCOUNT_MANAGER
        assert totals("SELECT territory_id, sum(booked_revenue) FROM territory_revenue "
                      "GROUP BY 1") == EXPECTED_BY_TERRITORY
        rollup = totals("SELECT territory_id, sum(booked_revenue) FROM "
                        "territory_revenue_rollup GROUP BY 1")
        assert {t: rollup[t] for t in EXPECTED_ROLLUP} == EXPECTED_ROLLUP
        won, lost, created, pipeline = con.execute(
            "SELECT sum(won_deals), sum(lost_deals), sum(created_deals), sum(pipeline_created) "
            "FROM account_manager_revenue").fetchone()
        # created at the rates of their day: 4,000.50 EUR x 1.25 = 5,000.625 -> 5,000.62
        assert (won, lost, created, pipeline) == (10, 2, 13, Decimal("107620.62"))
        managers = totals("SELECT DISTINCT territory_id, territory_manager_id "
                          "FROM attributed_events")
        assert managers[T[4]] == U[2]  # US West: a Sales Rep only -> its region's Owner
        assert managers[T[1]] == U[1]  # Global: the forecast manager
        runs = con.execute("SELECT input_records, accepted, quarantined, status "
                       "FROM pipeline_runs").fetchall()
        assert runs == [(34, 34, 0, "succeeded")]
        failed = con.execute("SELECT suite, expectation FROM dq_results "
                             "WHERE suite = 'reference' AND NOT success").fetchall()
        checked = con.execute("SELECT count(*) FROM dq_results "
                              "WHERE suite = 'reference'").fetchone()
        assert checked[0] > 0 and failed == []
        assert con.execute("SELECT bool_and(balanced) FROM reconciliation").fetchone() == (True,)
