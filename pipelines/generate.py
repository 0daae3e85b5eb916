"""Deterministic sample data set: deal events plus the seven reference tables.

``generate_dataset`` writes, under ``out_dir``:

* ``events/part-NNNNN.jsonl`` (or ``.parquet``): at least two files, about one
  per ``EVENTS_PER_FILE`` records, exactly ``events`` lines/rows in total;
* ``reference/<table>.csv`` for the seven tables and ``account_splits``, with exactly the columns of
  ``schemas.reference.REFERENCE_FILE_COLUMNS`` (empty cell = null/open-ended);
* ``manifest.json``: arguments, ``planted`` counts of every hard case, and
  ``expected``: what a correct pipeline reports for the events (records,
  accepted, duplicates, quarantined per reason, attribution statuses).

Same arguments, same bytes: every draw comes from ``numpy.random.default_rng``
seeded from ``seed`` (one stream for the reference data, one per event file);
nothing reads the clock or depends on set/dict order. Events are built
column-wise (numpy draws, pyarrow string kernels), one file at a time, so
memory stays bounded by the file size.

Planted cases (all present from ~2,000 events on): out-of-order records, exact,
equivalent (same payload, amount as number vs string) and conflicting
duplicates, unknown accounts, accounts without an account manager (none at all
or a gap), accounts outside every territory rule (``FR``), odd-case/padded
geography, realigned and tied territory rules, states without a manager
(walk-up), manager changes and reassignments inside the period with events on
both sides and exactly at the boundary instant; with ``bad_rate > 0`` records
with exactly one defect each, cycling through every quarantine reason but
``conflicting_duplicate`` (``malformed`` cannot exist in Parquet).
"""

from __future__ import annotations

import csv
import json
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.events import EVENT_FIELDS, EVENT_TYPES, QUARANTINE_REASONS, REQUIRED_FIELDS
from schemas.money import DEFAULT_REPORTING_CURRENCY, minor_units
from schemas.outputs import ATTRIBUTION_STATUSES
from schemas.reference import REFERENCE_FILE_COLUMNS

EVENTS_PER_FILE = 100_000
MIN_FILES = 2
EVENT_FORMATS = ("jsonl", "parquet")
PERIOD_START = datetime(2026, 1, 1, tzinfo=UTC)
PERIOD_DAYS = 90
MAX_BAD_RATE = 0.5

_US = 1_000_000
_DAY = 86_400
_START = int(PERIOD_START.timestamp())
_END = _START + PERIOD_DAYS * _DAY

CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP", "CAD", "JPY")
_DIGITS = np.array([minor_units(c) for c in CURRENCIES], dtype=np.int64)
_PER_USD = (1.0, 0.92, 0.79, 1.37, 150.0)  # currency units per USD, for amounts
_FX_START = {"CAD": 0.7391, "EUR": 1.0834125, "GBP": 1.2675, "JPY": 0.0066871}
_FX_SCALE = {"CAD": 8, "EUR": 7, "GBP": 6, "JPY": 10}  # fractional digits of the rates
_FX_FIRST_DAY = date(2025, 12, 29)
_FX_LAST_DAY = date(2026, 4, 1)
NO_FX_CURRENCIES: tuple[str, ...] = ("CHF", "SEK", "AUD", "NOK")  # ISO codes without rates

_OFFSETS: tuple[tuple[str, int], ...] = (
    ("Z", 0), ("-05:00", -300), ("-08:00", -480), ("+01:00", 60), ("+05:30", 330), ("+00:00", 0),
)
_OFFSET_P = (0.80, 0.07, 0.04, 0.06, 0.01, 0.02)
_OFFSET_CODE = {text: code for code, (text, _) in enumerate(_OFFSETS)}
_TYPE = {name: code for code, name in enumerate(EVENT_TYPES)}
_STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost")
_PRODUCTS = ("Platform", "Analytics Add-on", "Support Premium", "Data Connectors",
             "Professional Services", "Training")
_SOURCE_SYSTEMS = ("salesforce", "hubspot", "dynamics")
# Key order of compact lines (JSON key order is free; this one lets the per-deal fields
# form one pre-rendered piece) and of the spaced lines of another exporter.
_JSON_ORDER = ("event_id", "event_type", "stage", "event_time", "deal_id", "account_id",
               "currency", "product", "opportunity_owner_id", "source_system", "amount",
               "crm_meta")
_DEAL_FIELDS = ("deal_id", "account_id", "currency", "product", "opportunity_owner_id",
                "source_system")
_ALT_ORDER = ("event_type", "event_id", "event_time", "account_id", "deal_id", "currency",
              "amount", "product", "stage", "opportunity_owner_id", "crm_meta", "source_system")
_PARQUET_COLUMNS = EVENT_FIELDS + ("source_system",)
_UNKNOWN_ACCOUNTS = 25  # ids in events that accounts.csv does not know

# Attribution statuses the generator predicts (index = code in the "status" column).
_STATUSES = ("attributed", "unknown_account", "no_account_manager", "no_territory")
_ATTRIBUTION_KEYS = _STATUSES[1:]


# ----------------------------------------------------------------------------- geography

# country -> groups -> states: (id code, region value, name, cities (name, postal prefix),
# towns without a territory of their own (name, postal prefix)).
_GEOGRAPHY: tuple = (
    ("US", "United States", (
        ("US-West", (
            ("CA", "CA", "California", (("San Francisco", "941"), ("Los Angeles", "900"),
                                        ("San Diego", "921"), ("San Jose", "951")),
             (("Fresno", "937"),)),
            ("WA", "WA", "Washington", (("Seattle", "981"), ("Spokane", "992")),
             (("Tacoma", "984"),)),
            ("OR", "OR", "Oregon", (("Portland", "972"),), (("Eugene", "974"),)),
        )),
        ("US-East", (
            ("NY", "NY", "New York", (("New York", "100"), ("Buffalo", "142")),
             (("Albany", "122"),)),
            ("MA", "MA", "Massachusetts", (("Boston", "0211"), ("Cambridge", "0213")),
             (("Worcester", "016"),)),
            ("NJ", "NJ", "New Jersey", (("Newark", "071"),), (("Trenton", "086"),)),
        )),
        ("US-Central", (
            ("TX", "TX", "Texas", (("Austin", "787"), ("Dallas", "752"), ("Houston", "770")),
             (("El Paso", "799"),)),
            ("IL", "IL", "Illinois", (("Chicago", "606"),), (("Peoria", "616"),)),
        )),
    )),
    ("CA", "Canada", (
        ("CA-West", (
            ("BC", "BC", "British Columbia", (("Vancouver", "V6B"), ("Victoria", "V8W")),
             (("Kelowna", "V1Y"),)),
            ("AB", "AB", "Alberta", (("Calgary", "T2P"), ("Edmonton", "T5J")),
             (("Red Deer", "T4N"),)),
        )),
        ("CA-East", (
            ("ON", "ON", "Ontario", (("Toronto", "M5V"), ("Ottawa", "K1P")),
             (("Hamilton", "L8P"),)),
            ("QC", "QC", "Quebec", (("Montréal", "H2Y"), ("Québec", "G1R")),
             (("Laval", "H7T"),)),
        )),
    )),
    ("DE", "Germany", (
        ("DE-North", (
            ("HH", "Hamburg", "Hamburg", (("Hamburg", "20"),), ()),
            ("BE", "Berlin", "Berlin", (("Berlin", "10"),), ()),
            ("NI", "Niedersachsen", "Niedersachsen", (("Hannover", "30"),),
             (("Göttingen", "37"),)),
        )),
        ("DE-South", (
            ("BY", "Bayern", "Bayern", (("München", "80"), ("Nürnberg", "90")),
             (("Augsburg", "86"),)),
            ("BW", "Baden-Württemberg", "Baden-Württemberg", (("Stuttgart", "70"),),
             (("Karlsruhe", "76"),)),
        )),
    )),
    ("GB", "United Kingdom", (
        ("UK-South", (
            ("ENG", "England", "England", (("London", "EC"), ("Bristol", "BS")),
             (("Brighton", "BN"),)),
            ("WLS", "Wales", "Wales", (("Cardiff", "CF"),), ()),
        )),
        ("UK-North", (
            ("SCT", "Scotland", "Scotland", (("Edinburgh", "EH"), ("Glasgow", "G")),
             (("Aberdeen", "AB"),)),
        )),
    )),
)
# Accounts here match no territory rule (no rule for FR): attribution_status no_territory.
_NO_RULE_LOCATIONS = (("FR", "Île-de-France", "Paris", "75"),
                      ("FR", "Auvergne-Rhône-Alpes", "Lyon", "69"))
_COUNTRY_CURRENCY = {"US": "USD", "CA": "CAD", "DE": "EUR", "GB": "GBP", "FR": "EUR"}
_NO_MANAGER_STATES = ("T-US-NJ", "T-US-IL", "T-CA-AB", "T-DE-NI", "T-GB-WLS")
_CITY_PREFIXES = ("Oak", "Maple", "River", "Cedar", "Pine", "Lake", "Fair", "Green", "Elm", "Ash",
                  "Birch", "Stone")
_CITY_SUFFIXES = ("field", "ton", "view", "wood", "dale", "port", "ville", "brook", "ford", "haven")

# Boundary instants inside the period (seconds since the epoch, UTC).
_REASSIGN_AT = int(datetime(2026, 2, 10, 14, 30, tzinfo=UTC).timestamp())
_WA_MANAGER_CHANGE = int(datetime(2026, 2, 17, 16, 45, tzinfo=UTC).timestamp())
_BY_MANAGER_CHANGE = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())
_REALIGN_AT = int(datetime(2026, 2, 15, 12, 0, tzinfo=UTC).timestamp())
_AUSTIN_RULE_FROM = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
_CAMBRIDGE_RULE_TO = int(datetime(2026, 3, 15, tzinfo=UTC).timestamp())

# The first accounts anchor the boundary cases: (country, region, city, postal prefix).
_ANCHOR_ACCOUNTS = (
    ("US", "CA", "San Francisco", "941"),  # reassigned at _REASSIGN_AT
    ("US", "WA", "Tacoma", "984"),  # state T-US-WA changes manager at _WA_MANAGER_CHANGE
    ("US", "OR", "Portland", "972"),  # Portland rule realigned at _REALIGN_AT
    ("US", "TX", "Houston", "770"),  # two equally specific Houston rules (tie)
    ("DE", "Bayern", "Augsburg", "86"),  # state T-DE-BY changes manager at a date
    ("US", "NJ", "Trenton", "086"),  # NJ has no manager: US-East's manager applies
)
_MIN_ACCOUNTS = len(_ANCHOR_ACCOUNTS) + 6

_FIRST_NAMES = ("Ava", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jonas",
                "Kara", "Liam", "Maya", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara",
                "Umar", "Vera", "Will", "Xenia", "Yusuf", "Zoe", "Anna", "Lukas", "Mila", "Omar",
                "Priya", "Ravi", "Sofia", "Theo", "Lena", "Marco", "Nina", "Oscar", "Ines", "Jack")
_LAST_NAMES = ("Smith", "Mueller", "Garcia", "Chen", "Brown", "Schmidt", "Patel", "Martin",
               "Wilson", "Fischer", "Lopez", "Kim", "Taylor", "Weber", "Nguyen", "Clark", "Wagner",
               "Singh", "Lewis", "Becker", "Young", "Hoffmann", "King", "Scott", "Meyer", "Green",
               "Baker", "Adams", "Wright", "Koch", "Hill", "Nelson", "Carter", "Richter", "Evans",
               "Wolf", "Turner", "Parker", "Collins", "Stewart")
_NAME_WORDS = ("North", "Blue", "Summit", "Bright", "Iron", "Silver", "Harbor", "Pioneer", "Atlas",
               "Vertex", "Crescent", "Granite", "Nova", "Keystone", "Evergreen", "Polar")
_NAME_NOUNS = ("Analytics", "Logistics", "Foods", "Robotics", "Health", "Energy", "Media",
               "Systems", "Partners", "Labs", "Retail", "Capital", "Motors", "Software")
_NAME_SUFFIXES = {"US": ("Inc.", "LLC", "Corp."), "CA": ("Inc.", "Ltd.", "Ltée"),
                  "DE": ("GmbH", "AG", "KG"), "GB": ("Ltd", "PLC", "LLP"), "FR": ("SARL", "SA")}
_INDUSTRIES = ("Software", "Manufacturing", "Retail", "Financial Services", "Healthcare",
               "Logistics", "Energy", "Media", "Education", "Public Sector")


# ----------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class GenerationSummary:
    """What ``generate_dataset`` wrote."""

    events_written: int  # lines/rows in the events files, planted bad and duplicates included
    files: tuple[str, ...]  # event files, relative to out_dir (POSIX paths)
    planted: dict[str, int]  # counts of planted cases (see the module docstring)


def generate_dataset(
    out_dir: Path,
    events: int,
    seed: int,
    bad_rate: float = 0.0,
    event_format: str = "jsonl",
    accounts: int | None = None,
    territories: int | None = None,
    rule_tie: bool = False,
) -> GenerationSummary:
    """Write events, reference tables and ``manifest.json`` under ``out_dir``.

    ``rule_tie`` plants two equally specific Houston rules: a reference-data
    error that the reference checks report as critical (so a run with checks
    on refuses to publish); off by default so the sample data set publishes.

    ``accounts`` defaults to ``max(50, events // 200)`` (at least 12);
    ``territories`` to the built-in hierarchy (69 nodes; larger values add
    cities). Stale ``events/part-*`` files from an earlier run are removed.
    """
    _check_arguments(events, bad_rate, event_format)
    out_dir = Path(out_dir)
    n_accounts = max(_MIN_ACCOUNTS, accounts if accounts is not None else max(50, events // 200))
    reference = _build_reference(_rng(seed, 0), n_accounts, territories or 0, rule_tie,
                                 split_rng=_rng(seed, _SPLIT_STREAM))
    reference_files = _write_reference(out_dir / "reference", reference.tables)
    plan = _make_plan(events, bad_rate, event_format, len(reference.anchors))
    written = _write_events(out_dir / "events", plan, reference, seed)
    planted = {**written.planted, **reference.counts}
    summary = GenerationSummary(written.records, written.files, planted)
    manifest = _manifest(summary, reference, written, plan, reference_files,
                         {"seed": seed, "bad_rate": bad_rate, "accounts": accounts,
                          "territories": territories})
    (out_dir / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def _check_arguments(events: int, bad_rate: float, event_format: str) -> None:
    """ValueError for arguments the generator cannot honour."""
    if events < 1:
        raise ValueError(f"events must be >= 1, got {events}")
    if not 0.0 <= bad_rate <= MAX_BAD_RATE:
        raise ValueError(f"bad_rate must be within 0..{MAX_BAD_RATE}, got {bad_rate}")
    if event_format not in EVENT_FORMATS:
        raise ValueError(f"event_format must be one of {EVENT_FORMATS}, got {event_format!r}")


_SPLIT_STREAM = 2**32 - 1  # the account teams' own stream: the other tables stay as they were
_SPLIT_SHARE = 0.15  # of the accounts get an account team
_TEAM_SHAPES: tuple[tuple[str, ...], ...] = (("60", "40"), ("50", "50"),
                                             ("33.3333", "33.3333", "33.3334"), ("70", "20", "10"))


def _rng(seed: int, stream: int) -> np.random.Generator:
    """An independent, reproducible random stream (0 = reference, 1+ = event files)."""
    return np.random.default_rng([seed % 2**64, stream])


# ----------------------------------------------------------------------------- text helpers


def _instant_text(seconds: int, style: str = "utc", offset_minutes: int = 0) -> str:
    """RFC 3339 text of an instant: style ``date`` (midnight UTC only), ``utc`` or ``offset``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    if style == "date":
        if seconds % _DAY:
            raise ValueError("a date-only validity must be at midnight UTC")
        return moment.date().isoformat()
    if style == "utc" or offset_minutes == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    local = moment + timedelta(minutes=offset_minutes)
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{hours:02d}:{minutes:02d}"


def _join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of arrays and literal strings."""
    return pc.binary_join_element_wise(*parts, "")


def _repeat(text: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(text, pa.string()), n)


def _numbers(values: np.ndarray) -> pa.Array:
    """Integers as decimal strings."""
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, e.g. ``evt-000000042`` (numbers < 10**width)."""
    if len(numbers) and int(np.max(numbers)) >= 10**width:
        raise ValueError(f"{prefix} numbers exceed {width} digits")
    padded = _numbers(np.asarray(numbers, dtype=np.int64) + 10**width)  # "1000000042"
    return pc.binary_replace_slice(padded, start=0, stop=1, replacement=prefix)


def _pick(table: tuple[str, ...] | pa.Array, index: np.ndarray) -> pa.Array:
    """``table[index]`` per row; a negative index gives null (field absent)."""
    values = table if isinstance(table, pa.Array) else pa.array(table, pa.string())
    return values.take(pa.array(np.maximum(index, 0), mask=index < 0))


_DATE_BASE = _START // _DAY - 10  # first day number of the date table


@lru_cache(maxsize=1)
def _date_table() -> pa.Array:
    """``YYYY-MM-DD`` for the days around the period (local dates included)."""
    first = date(1970, 1, 1) + timedelta(days=_DATE_BASE)
    return pa.array([(first + timedelta(days=i)).isoformat() for i in range(PERIOD_DAYS + 20)])


@lru_cache(maxsize=1)
def _minute_table() -> pa.Array:
    """``YYYY-MM-DDTHH:MM`` for every minute of the date table's days."""
    days = len(_date_table())
    clock = pa.array([f"T{h:02d}:{m:02d}" for h in range(24) for m in range(60)])
    return _join(_date_table().take(pa.array(np.repeat(np.arange(days), 1440))),
                 clock.take(pa.array(np.tile(np.arange(1440), days))))


@lru_cache(maxsize=1)
def _second_table() -> pa.Array:
    """``:SS`` + offset suffix; index = offset code * 60 + second."""
    return pa.array([f":{s:02d}{text}" for text, _ in _OFFSETS for s in range(60)])


@lru_cache(maxsize=1)
def _cents_table() -> pa.Array:
    """Fraction texts: index 0 none, 1+c ``.cc``, 101+d ``.d``."""
    return pa.array([""] + [f".{c:02d}" for c in range(100)] + [f".{d}" for d in range(10)])


def _time_text(time_us: np.ndarray, offset: np.ndarray, frac_kind: np.ndarray) -> pa.Array:
    """RFC 3339 texts: local time at the offset, optional ``.mmm``/``.uuuuuu`` fraction."""
    shift = np.array([minutes for _, minutes in _OFFSETS], dtype=np.int64)[offset] * 60 * _US
    seconds, fraction = np.divmod(time_us + shift, _US)
    minute, second = np.divmod(seconds - _DATE_BASE * _DAY, 60)
    head = _minute_table().take(pa.array(minute))
    tail = _second_table().take(pa.array(offset * 60 + second))
    with_fraction = frac_kind > 0
    if with_fraction.any():
        kind, frac = frac_kind[with_fraction], fraction[with_fraction]
        digits = pc.utf8_lpad(_numbers(np.where(kind == 1, frac // 1000, frac)), width=6,
                              padding="0")
        digits = pc.if_else(pa.array(kind == 1), pc.utf8_slice_codeunits(digits, 3), digits)
        suffix = pa.array([text for text, _ in _OFFSETS]).take(pa.array(offset[with_fraction]))
        seconds_text = pa.array([f":{s:02d}" for s in range(60)]).take(
            pa.array(second[with_fraction]))
        tail = pc.replace_with_mask(tail, pa.array(with_fraction),
                                    _join(seconds_text, ".", digits, suffix))
    return _join(head, tail)


def _amount_text(minor: np.ndarray, digits: np.ndarray, style: np.ndarray) -> pa.Array:
    """Decimal texts from integer minor units (digits 0 or 2, no float).

    Style 0 always shows the cents (``1500.00``), 1 drops zero cents (``1500``),
    2 drops a trailing zero (``1500.5``).
    """
    magnitude = np.abs(minor)
    two = digits == 2
    cents = magnitude % 100
    index = np.where(two, 1 + cents, 0)
    index = np.where(two & (style == 1) & (cents == 0), 0, index)
    index = np.where(two & (style == 2) & (cents % 10 == 0), 101 + cents // 10, index)
    major = np.where(two, magnitude // 100, magnitude)
    text = _join(_numbers(major), _cents_table().take(pa.array(index)))
    negative = minor < 0
    if negative.any():
        mask = pa.array(negative)
        text = pc.replace_with_mask(text, mask, _join("-", text.filter(mask)))
    return text


# ----------------------------------------------------------------------------- reference data


@dataclass
class _State:
    """A state/province territory with its cities and its towns (no territory of their own)."""

    territory_id: str
    country: str
    region: str
    name: str
    group_id: str
    cities: list[tuple[str, str, str]]  # (territory_id, city, postal prefix)
    towns: tuple[tuple[str, str], ...]


@dataclass
class _Tree:
    """The territory hierarchy: file rows plus the lookups the rules need."""

    rows: list[tuple[str, str, str, str]]
    countries: list[str]
    groups: list[str]
    states: list[_State]
    parent: dict[str, str]
    city_id: dict[tuple[str, str, str], str]  # (country, region, city) -> territory_id


def _synthetic_city(index: int) -> str:
    """A made-up city name, unique per index (``Oakfield``, ``Mapleton``, ...)."""
    prefixes, suffixes = len(_CITY_PREFIXES), len(_CITY_SUFFIXES)
    name = _CITY_PREFIXES[index % prefixes] + _CITY_SUFFIXES[(index // prefixes) % suffixes]
    cycle = index // (prefixes * suffixes)
    return name if cycle == 0 else f"{name} {cycle + 1}"


def _territory_tree(target: int) -> _Tree:
    """Global -> countries -> groups -> states -> cities; ``target`` > 69 adds cities."""
    rows: list[tuple[str, str, str, str]] = [("T-GLOBAL", "Global", "", "global")]
    countries, groups, states = [], [], []
    for country, country_name, country_groups in _GEOGRAPHY:
        country_id = f"T-{country}"
        countries.append(country_id)
        rows.append((country_id, country_name, "T-GLOBAL", "country"))
        for group_name, group_states in country_groups:
            group_id = f"T-{group_name.upper()}"
            groups.append(group_id)
            rows.append((group_id, group_name, country_id, "group"))
            for code, region, name, cities, towns in group_states:
                state_id = f"T-{country}-{code}"
                rows.append((state_id, name, group_id, "state"))
                city_rows = [(f"{state_id}-{i:03d}", city, postal)
                             for i, (city, postal) in enumerate(cities, start=1)]
                states.append(_State(state_id, country, region, name, group_id, city_rows, towns))
    extra = max(0, target - len(rows) - sum(len(s.cities) for s in states))
    for i in range(extra):
        state = states[i % len(states)]
        postal = (state.towns or ((None, state.cities[0][2]),))[0][1]
        territory_id = f"{state.territory_id}-{len(state.cities) + 1:03d}"
        state.cities.append((territory_id, _synthetic_city(i // len(states)), postal))
    city_id = {}
    for state in states:
        for territory_id, city, _ in state.cities:
            rows.append((territory_id, city, state.territory_id, "city"))
            city_id[(state.country, state.region, city)] = territory_id
    parent = {row[0]: row[2] for row in rows}
    return _Tree(rows, countries, groups, states, parent, city_id)


class _People:
    """Allocates people with unique ``firstname.lastname@example.com`` emails."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self._order = rng.permutation(len(_FIRST_NAMES) * len(_LAST_NAMES))

    def add(self, role: str, reports_to: str) -> str:
        """A new person; returns the person_id."""
        k = len(self.rows)
        combo = int(self._order[k % len(self._order)])
        first = _FIRST_NAMES[combo % len(_FIRST_NAMES)]
        last = _LAST_NAMES[combo // len(_FIRST_NAMES)]
        cycle = k // len(self._order)
        number = "" if cycle == 0 else str(cycle + 1)
        person_id = f"P-{k + 1:05d}"
        email = f"{first.lower()}.{last.lower()}{number}@example.com"
        self.rows.append((person_id, f"{first} {last}", email, role, reports_to))
        return person_id


def _random_instant(rng: np.random.Generator, first_day: int, last_day: int) -> tuple[int, str]:
    """A validity boundary inside the period: (seconds, style); dates or mid-day timestamps."""
    day = _START + int(rng.integers(first_day, last_day)) * _DAY
    if rng.random() < 0.4:
        return day, "date"
    return day + int(rng.integers(8, 19)) * 3600 + int(rng.choice([0, 15, 30, 45])) * 60, "utc"


def _pick_one(options: tuple | list, u: float) -> object:
    """The option a uniform draw ``u`` in [0, 1) falls on."""
    return options[int(u * len(options))]


def _since(u: float, v: float) -> str:
    """valid_from of a first row: empty (since always) or a date in 2025 (u, v uniform)."""
    if u < 0.6:
        return ""
    day = date(2025, 1, 1) + timedelta(days=int(v * 364))
    return day.isoformat()


def _first_managers(tree: _Tree, people: _People, rng: np.random.Generator) -> dict[str, str]:
    """The first manager of every managed territory, top-down (reports_to = parent's)."""
    first = {"T-GLOBAL": people.add("territory_manager", "")}
    for country_id in tree.countries:
        first[country_id] = people.add("territory_manager", first["T-GLOBAL"])
    for group_id in tree.groups:
        first[group_id] = people.add("territory_manager", first[tree.parent[group_id]])
    for state in tree.states:
        if state.territory_id not in _NO_MANAGER_STATES:
            first[state.territory_id] = people.add("territory_manager", first[state.group_id])
    for state in tree.states:
        boss = first.get(state.territory_id, first[state.group_id])
        for territory_id, _, _ in state.cities:
            if rng.random() < 0.4:
                first[territory_id] = people.add("territory_manager", boss)
    return first


def _territory_managers(tree: _Tree, people: _People, rng: np.random.Generator,
                        ) -> tuple[list[tuple[str, ...]], dict[str, str], dict]:
    """Manager rows: ~10% change hands inside the period (two fixed), one city's manager
    starts late (walk-up before), some states have none. Also the first manager per node."""
    first = _first_managers(tree, people, rng)
    changes: dict[str, tuple[int, str]] = {
        "T-US-WA": (_WA_MANAGER_CHANGE, "utc"), "T-DE-BY": (_BY_MANAGER_CHANGE, "date")}
    candidates = [t for t in first if t != "T-GLOBAL" and t not in changes]
    for territory_id in candidates:
        if rng.random() < 0.1:
            changes[territory_id] = _random_instant(rng, 10, PERIOD_DAYS - 10)
    cities = [t for t in candidates if t not in changes and tree.parent[t] in first
              and len(t.split("-")) == 4]
    late = cities[int(rng.integers(len(cities)))] if cities else ""
    late_from = _instant_text(_START + int(rng.integers(20, 60)) * _DAY, "date")
    rows: list[tuple[str, ...]] = []
    for territory_id, manager in first.items():
        if territory_id == late:
            rows.append((territory_id, manager, late_from, ""))
        elif territory_id in changes:
            text = _instant_text(*changes[territory_id])
            successor = people.add("territory_manager", _boss_of(people, manager))
            rows.append((territory_id, manager, _since(*rng.random(2)), text))
            rows.append((territory_id, successor, text, ""))
        else:
            rows.append((territory_id, manager, _since(*rng.random(2)), ""))
    rows.sort(key=lambda row: (row[0], row[2]))
    notes = {"changes": {t: _instant_text(*changes[t]) for t in sorted(changes)},
             "late_start": late, "first": first}
    return rows, first, notes


def _boss_of(people: _People, person_id: str) -> str:
    """reports_to of an existing person."""
    return people.rows[int(person_id.split("-")[1]) - 1][4]


def _territory_rules(tree: _Tree, rule_tie: bool) -> tuple[list[tuple[str, ...]], dict]:
    """Country, state, city and postal rules: odd case, realignment, optionally a tie."""
    city = tree.city_id
    portland, seattle = city[("US", "OR", "Portland")], city[("US", "WA", "Seattle")]
    austin, dallas = city[("US", "TX", "Austin")], city[("US", "TX", "Dallas")]
    houston, boston = city[("US", "TX", "Houston")], city[("US", "MA", "Boston")]
    odd_region = {"T-US-NY": " ny ", "T-DE-BY": "BAYERN"}
    odd_city = {dallas: "dallas ", city[("DE", "Hamburg", "Hamburg")]: " HAMBURG"}
    special = {portland, austin, houston}
    rows: list[tuple[str, ...]] = [(c, c[2:], "", "", "", "", "") for c in tree.countries]
    for state in tree.states:
        region = odd_region.get(state.territory_id, state.region)
        rows.append((state.territory_id, state.country, region, "", "", "", ""))
        for territory_id, name, _ in state.cities:
            if territory_id not in special:
                name = odd_city.get(territory_id, name)
                rows.append((territory_id, state.country, state.region, name, "", "", ""))
    realign = _instant_text(_REALIGN_AT)
    rows += [
        (portland, "US", "OR", "Portland", "", "", realign),
        (seattle, "US", "OR", "Portland", "", realign, ""),
        (austin, "US", "TX", "Austin", "", _instant_text(_AUSTIN_RULE_FROM, "date"), ""),
        (houston, "US", "TX", "Houston", "", "", ""),
        *([(dallas, "US", "TX", "Houston", "", "", "")] if rule_tie else []),
        (boston, "US", "", "", "0213", "", _instant_text(_CAMBRIDGE_RULE_TO, "date")),
        (city[("DE", "Bayern", "München")], "DE", "", "", "80", "", ""),
        ("T-DE-BY", "DE", "", "", "809", "", ""),
        (city[("CA", "ON", "Toronto")], "CA", "ON", "", "M5", "", ""),
    ]
    rows.sort(key=lambda row: (row[0], row[5], row[1:5]))
    notes = {
        "rule_tie": {"country": "US", "region": "TX", "city": "Houston",
                     "territories": sorted([houston, dallas]) if rule_tie else [houston],
                     "resolved": min(houston, dallas) if rule_tie else houston},
        "realignments": [
            {"geography": "US/OR/Portland", "at": realign, "before": portland, "after": seattle},
            {"geography": "US/TX/Austin", "at": _instant_text(_AUSTIN_RULE_FROM, "date"),
             "before": "T-US-TX", "after": austin},
            {"geography": "US postal 0213* (Cambridge)",
             "at": _instant_text(_CAMBRIDGE_RULE_TO, "date"), "before": boston,
             "after": city[("US", "MA", "Cambridge")]},
        ],
    }
    return rows, notes


def _postal_code(country: str, prefix: str, u: float, v: float) -> str:
    """A postal code in the country's format that starts with ``prefix`` (u, v uniform)."""
    digits = f"{int(u * 10**6):06d}"
    letters = chr(65 + int(v * 26)) + chr(65 + int(v * 676) % 26)
    if country == "CA":
        return f"{prefix} {digits[0]}{letters[0]}{digits[1]}"
    if country == "GB":
        return f"{prefix}{digits[0]} {digits[1]}{letters}"
    return prefix + digits[: max(0, 5 - len(prefix))]


def _account_name(country: str, u: list[float]) -> str:
    """A company name; a few carry a comma or quotes (CSV quoting). ``u``: 4 draws."""
    word, noun = _pick_one(_NAME_WORDS, u[0]), _pick_one(_NAME_NOUNS, u[1])
    suffix = _pick_one(_NAME_SUFFIXES[country], u[2])
    if u[3] < 0.03:
        return f"{word} {noun}, {suffix}"
    if u[3] < 0.05:
        return f'"{word}" {noun} {suffix}'
    return f"{word} {noun} {suffix}"


def _mangle(region: str, city: str, u: float, v: float) -> tuple[str, str, bool]:
    """Odd case / padding on region or city for ~10% of accounts (matching ignores both)."""
    if u >= 0.1:
        return region, city, False
    kind = int(v * 5)
    if kind == 0:
        return region, city.upper(), True
    if kind == 1:
        return region, city.lower(), True
    if kind == 2:
        return region, f"  {city} ", True
    if kind == 3:
        return region.lower(), city, True
    return f" {region}", city, True


@dataclass
class _Accounts:
    """accounts.csv and account_assignments.csv rows plus per-account arrays for events."""

    rows: list[tuple[str, ...]] = field(default_factory=list)
    assignments: list[tuple[str, ...]] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    no_manager: list[bool] = field(default_factory=list)
    gap: list[tuple[int, int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    reassignment: dict = field(default_factory=dict)


def _locations(tree: _Tree) -> tuple[list[tuple[str, str, str, str]], np.ndarray]:
    """Where random accounts are: cities (weight 3), towns (1.5), ~3% in France."""
    places, weights = [], []
    for state in tree.states:
        for _, city, postal in state.cities:
            places.append((state.country, state.region, city, postal))
            weights.append(3.0)
        for town, postal in state.towns:
            places.append((state.country, state.region, town, postal))
            weights.append(1.5)
    france = sum(weights) * 0.03 / 0.97 / len(_NO_RULE_LOCATIONS)
    for place in _NO_RULE_LOCATIONS:
        places.append(place)
        weights.append(france)
    p = np.array(weights)
    return places, p / p.sum()


def _account_classes(rng: np.random.Generator, n: int, france: np.ndarray) -> np.ndarray:
    """Assignment class per account: 0 one row, 1 none, 2 gap, 3 reassigned, 4 twice."""
    roll = rng.random(n)
    classes = np.select([roll < 0.03, roll < 0.05, roll < 0.15, roll < 0.17], [1, 2, 3, 4], 0)
    anchors = len(_ANCHOR_ACCOUNTS)
    classes[:anchors] = 0
    classes[0] = 3
    classes[france] = 0
    eligible = [i for i in range(anchors, n) if not france[i]]
    for wanted in (1, 2):
        if not (classes == wanted).any():
            free = [i for i in eligible if classes[i] == 0]
            if free:
                classes[free[-1]] = wanted
    return classes


def _build_accounts(tree: _Tree, n: int, managers: list[str], rng: np.random.Generator,
                    ) -> _Accounts:
    """Accounts (anchors first, ~3% FR, odd case) and their effective-dated assignments."""
    out = _Accounts()
    places, p = _locations(tree)
    picks = rng.choice(len(places), size=n, p=p)
    geos = list(_ANCHOR_ACCOUNTS) + [places[int(i)] for i in picks[len(_ANCHOR_ACCOUNTS):]]
    france = np.array([g[0] == "FR" for g in geos])
    if not france.any():
        france[n - 1] = True
        geos[n - 1] = _NO_RULE_LOCATIONS[0]
    classes = _account_classes(rng, n, france)
    mangled = 0
    dice = rng.random((n, 16)).tolist()  # bulk draws: no generator call per account
    for i, (country, region, city, prefix) in enumerate(geos):
        u = dice[i]
        account_id = f"ACC-{i + 1:06d}"
        postal = _postal_code(country, prefix, u[0], u[1])
        if i >= len(_ANCHOR_ACCOUNTS):
            region, city, odd = _mangle(region, city, u[2], u[3])
            mangled += odd
            if city == "München" and u[4] < 0.3:
                city = "Munich"  # misses the city rule; the postal rule "80" still matches
            city = "" if u[5] < 0.02 else city
            postal = "" if u[6] < 0.03 else postal
        out.rows.append((account_id, _account_name(country, u[7:11]), country, region, city,
                         postal, _pick_one(_INDUSTRIES, u[11])))
        out.countries.append(country)
        _assign(out, account_id, int(classes[i]), country, managers, u[12:16], rng)
    out.counts = {
        "accounts_without_assignment": int((classes == 1).sum()),
        "accounts_with_gap": int((classes == 2).sum()),
        "account_reassignment": int(((classes == 3) | (classes == 4)).sum()),
        "no_territory_accounts": int(france.sum()),
        "odd_case_accounts": mangled,
    }
    return out


def _other(managers: list[str], manager: str, rng: np.random.Generator) -> str:
    """Another account manager than ``manager``."""
    k = managers.index(manager)
    return managers[(k + 1 + int(rng.integers(max(1, len(managers) - 1)))) % len(managers)]


def _assign(out: _Accounts, account_id: str, cls: int, country: str, managers: list[str],
            u: list[float], rng: np.random.Generator) -> None:
    """Append one account's assignment rows and its gap / no-manager facts.

    ``cls`` as in ``_account_classes``; ``u``: 3 uniform draws for the common case,
    the rarer classes draw from ``rng``."""
    out.no_manager.append(cls == 1)
    out.gap.append((0, 0))
    if cls == 1:
        return
    first, since = _pick_one(managers, u[0]), _since(u[1], u[2])
    if cls == 0:
        out.assignments.append((account_id, first, since, ""))
    elif cls == 2:
        start, style = _random_instant(rng, 5, PERIOD_DAYS - 30)
        end = start + int(rng.integers(3, 20)) * _DAY + int(rng.integers(0, 8)) * 3600
        out.assignments.append((account_id, first, since, _instant_text(start, style)))
        out.assignments.append((account_id, _other(managers, first, rng), _instant_text(end), ""))
        out.gap[-1] = (start * _US, end * _US)
    else:
        _reassign(out, account_id, cls - 2, country, managers, first, since, rng)


def _reassign(out: _Accounts, account_id: str, times: int, country: str, managers: list[str],
              first: str, since: str, rng: np.random.Generator) -> None:
    """Rows of an account reassigned ``times`` times inside the period: valid_to of one
    row = valid_from of the next (a date, a UTC timestamp or one in local offset)."""
    if account_id == "ACC-000001":
        moments = [(_REASSIGN_AT, "utc")]
    else:
        moments = sorted(_random_instant(rng, 8, PERIOD_DAYS - 8) for _ in range(times))
    offset = {"US": -300, "DE": 60}.get(country, 0)
    manager, valid_from = first, since
    for at, style in moments:
        if style != "date" and rng.random() < 0.2:
            style = "offset"  # same instant, written with the account's local offset
        text = _instant_text(at, style, offset)
        out.assignments.append((account_id, manager, valid_from, text))
        successor = _other(managers, manager, rng)
        if account_id == "ACC-000001":
            out.reassignment = {"kind": "account_reassignment", "account_id": account_id,
                                "at": text, "before": manager, "after": successor}
        manager, valid_from = successor, text
    out.assignments.append((account_id, manager, valid_from, ""))


def _fx_rates(rng: np.random.Generator) -> tuple[list[tuple[str, str, str]], int]:
    """One rate per currency per day (random walk), a few days missing; USD omitted (= 1)."""
    days = (_FX_LAST_DAY - _FX_FIRST_DAY).days + 1
    rows, missing = [], 0
    for currency in sorted(_FX_START):
        scale = _FX_SCALE[currency]
        walk = np.exp(np.cumsum(rng.normal(0.0, 0.003, days)))
        units = np.rint(_FX_START[currency] * walk * 10**scale).astype(np.int64)
        gaps = set(rng.choice(np.arange(1, days), size=3, replace=False).tolist())
        missing += len(gaps)
        for i in range(days):
            if i in gaps:
                continue
            whole, frac = divmod(int(units[i]), 10**scale)
            day = (_FX_FIRST_DAY + timedelta(days=i)).isoformat()
            rows.append((currency, day, f"{whole}.{frac:0{scale}d}"))
    return rows, missing


@dataclass(frozen=True)
class _Anchor:
    """A planted event at a boundary instant: (account index, time, offset, fraction)."""

    account: int
    time_us: int
    offset: str
    frac_kind: int = 0


def _anchors() -> list[_Anchor]:
    """Events just before, exactly at and after each boundary (offsets included)."""
    hour = 3600 * _US
    r, x, y = _REASSIGN_AT * _US, _WA_MANAGER_CHANGE * _US, _REALIGN_AT * _US
    d = _BY_MANAGER_CHANGE * _US
    return [
        _Anchor(0, r - 1, "Z", 2), _Anchor(0, r, "Z"), _Anchor(0, r, "-05:00"),
        _Anchor(0, r + hour, "Z"),
        _Anchor(1, x - 1, "Z", 2), _Anchor(1, x, "Z"), _Anchor(1, x, "+01:00"),
        _Anchor(1, x + 2 * hour, "-08:00"),
        _Anchor(2, y - 1, "Z", 2), _Anchor(2, y, "Z"), _Anchor(2, y + hour, "-08:00"),
        _Anchor(3, (_START + 20 * _DAY) * _US + 9 * hour, "-05:00"),
        _Anchor(3, (_START + 50 * _DAY) * _US + 15 * hour, "Z"),
        _Anchor(4, d - _US, "Z"), _Anchor(4, d, "Z"), _Anchor(4, d, "+01:00"),
        _Anchor(4, d + hour // 2, "-05:00"),  # local date 2026-01-31, UTC date 2026-02-01
        _Anchor(5, (_START + 30 * _DAY) * _US + 11 * hour, "Z"),
        _Anchor(5, (_START + 70 * _DAY) * _US + 16 * hour, "+01:00"),
    ]


@dataclass(frozen=True)
class _AccountIndex:
    """What the event generator needs about accounts (known ids first, then unknown)."""

    ids: pa.Array
    known: int
    weights: np.ndarray
    currency: np.ndarray
    no_manager: np.ndarray
    gap_from: np.ndarray
    gap_to: np.ndarray
    no_territory: np.ndarray
    owners: pa.Array


@dataclass
class _Reference:
    """Reference tables, the account index for events, anchors and manifest notes."""

    tables: dict[str, list[tuple[str, ...]]]
    index: _AccountIndex
    anchors: list[_Anchor]
    counts: dict[str, int]
    notes: dict


def _build_reference(rng: np.random.Generator, n_accounts: int, n_territories: int,
                     rule_tie: bool = False, split_rng: np.random.Generator | None = None,
                     ) -> _Reference:
    """All reference tables and the facts the event generator and manifest need."""
    people = _People(rng)
    tree = _territory_tree(n_territories)
    manager_rows, first, manager_notes = _territory_managers(tree, people, rng)
    rule_rows, rule_notes = _territory_rules(tree, rule_tie)
    group_managers = [first[g] for g in tree.groups]
    account_managers = [people.add("account_manager", group_managers[i % len(group_managers)])
                        for i in range(max(4, math.ceil(n_accounts / 40)))]
    for _ in range(2):
        people.add("sales_ops", first["T-GLOBAL"])
    accounts = _build_accounts(tree, n_accounts, account_managers, rng)
    fx_rows, fx_missing = _fx_rates(rng)
    tables = {
        "accounts": accounts.rows,
        "account_assignments": accounts.assignments,
        "territories": tree.rows,
        "territory_rules": rule_rows,
        "territory_managers": manager_rows,
        "people": people.rows,
        "fx_rates": fx_rows,
    }
    specialists = [row[0] for row in people.rows if row[3] == "sales_ops"]
    tables["account_splits"] = _account_splits(
        [row[0] for row in accounts.rows], account_managers, specialists,
        split_rng or np.random.default_rng(0))
    index = _account_index(accounts, account_managers, rng)
    counts = {
        **accounts.counts,
        "rule_tie": int(rule_tie),
        "rule_realignment": len(rule_notes["realignments"]),
        "postal_prefix_rules": sum(1 for row in rule_rows if row[4]),
        "territory_manager_change": len(manager_notes["changes"]),
        "territory_manager_late_start": 1 if manager_notes["late_start"] else 0,
        "states_without_manager": len(_NO_MANAGER_STATES),
        "unknown_account_ids": _UNKNOWN_ACCOUNTS,
        "fx_missing_days": fx_missing,
        "split_accounts": len({row[0] for row in tables["account_splits"]}),
        "split_team_changes": sum(1 for row in tables["account_splits"] if row[5]),
    }
    notes = _boundary_notes(tree, manager_rows, accounts, rule_notes, manager_notes)
    return _Reference(tables, index, _anchors(), counts, notes)


def _account_splits(account_ids: list[str], managers: list[str], specialists: list[str],
                    rng: np.random.Generator) -> list[tuple[str, ...]]:
    """account_splits.csv rows: ~15% of the accounts share their credit among 2-3 account
    managers (60/40, 50/50, thirds, 70/20/10); a third of those credit a sales-ops
    specialist 10% in addition (overlay); a quarter change team mid-period."""
    rows: list[tuple[str, ...]] = []
    midway = (PERIOD_START + timedelta(days=PERIOD_DAYS // 2)).date().isoformat()
    for account in account_ids:
        if rng.random() >= _SPLIT_SHARE:
            continue
        shape = _TEAM_SHAPES[int(rng.integers(len(_TEAM_SHAPES)))]
        team = [str(m) for m in rng.choice(managers, size=len(shape), replace=False)]
        changes = rng.random() < 0.25
        until = midway if changes else ""
        rows += [(account, person, "account_executive", "primary", share, "", until)
                 for person, share in zip(team, shape, strict=True)]
        if changes:  # from midway the first member keeps the whole account
            rows.append((account, team[0], "account_executive", "primary", "100", midway, ""))
        if specialists and rng.random() < 1 / 3:
            specialist = specialists[int(rng.integers(len(specialists)))]
            rows.append((account, specialist, "solutions_specialist", "overlay", "10", "", ""))
    return rows


def _account_index(accounts: _Accounts, managers: list[str], rng: np.random.Generator,
                   ) -> _AccountIndex:
    """Arrays over accounts for vectorised event generation and expected statuses."""
    known = len(accounts.rows)
    unknown = [f"ACC-{900001 + i:06d}" for i in range(_UNKNOWN_ACCOUNTS)]
    weights = rng.lognormal(0.0, 1.0, known)
    gaps = np.array(accounts.gap, dtype=np.int64).reshape(-1, 2)
    code = {c: i for i, c in enumerate(CURRENCIES)}
    owners = managers + [f"U-{7001 + i}" for i in range(8)]
    return _AccountIndex(
        ids=pa.array([row[0] for row in accounts.rows] + unknown, pa.string()),
        known=known,
        weights=weights / weights.sum(),
        currency=np.array([code[_COUNTRY_CURRENCY[c]] for c in accounts.countries], np.int64),
        no_manager=np.array(accounts.no_manager, dtype=bool),
        gap_from=gaps[:, 0].copy(),
        gap_to=gaps[:, 1].copy(),
        no_territory=np.array([c == "FR" for c in accounts.countries], dtype=bool),
        owners=pa.array(owners, pa.string()),
    )


def _boundary_notes(tree: _Tree, manager_rows: list[tuple[str, ...]], accounts: _Accounts,
                    rule_notes: dict, manager_notes: dict) -> dict:
    """Manifest notes: boundary instants with the values before and after them."""
    def change(territory_id: str, account_id: str) -> dict:
        rows = [r for r in manager_rows if r[0] == territory_id]
        return {"kind": "territory_manager_change", "territory_id": territory_id,
                "account_id": account_id, "at": rows[0][3], "before": rows[0][1],
                "after": rows[1][1]}

    walk_up = {"kind": "territory_manager_walk_up", "account_id": "ACC-000006",
               "territory_id": "T-US-NJ", "manager_from": "T-US-EAST",
               "manager": manager_notes["first"]["T-US-EAST"]}
    return {
        "boundaries": [accounts.reassignment, change("T-US-WA", "ACC-000002"),
                       change("T-DE-BY", "ACC-000005"), walk_up],
        "rule_tie": {**rule_notes["rule_tie"], "account_id": "ACC-000004"},
        "rule_realignments": rule_notes["realignments"],
        "territory_manager_changes": manager_notes["changes"],
        "territory_manager_late_start": manager_notes["late_start"],
        "states_without_manager": list(_NO_MANAGER_STATES),
        "territories": len(tree.rows),
    }


def _write_reference(directory: Path, tables: dict[str, list[tuple[str, ...]]]) -> list[str]:
    """``<table>.csv`` with a header row; empty cell = null / open-ended."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for table, columns in REFERENCE_FILE_COLUMNS.items():
        rows = tables[table]
        if any(len(row) != len(columns) for row in rows):
            raise AssertionError(f"{table}: row width differs from {columns}")
        with open(directory / f"{table}.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
        written.append(f"reference/{table}.csv")
    return written


# ----------------------------------------------------------------------------- event records


@dataclass
class _Rows:
    """Event records column-wise: text per field (null = absent) and numpy metadata.

    ``values`` holds texts computed so far (and a defect's replacements); the
    deal-level fields and type/stage are derived from ``meta`` on first use
    (``column``), as the compact JSON path never needs them per record. ``meta``
    holds ``key`` (sort key), ``time_us``, ``minor``, ``digits``, ``style``
    (amount text style), ``status`` (expected attribution, -1 for a bad record),
    ``reason`` (index into ``QUARANTINE_REASONS`` or -1), ``malformed`` (variant,
    0 none), ``alt`` (spaced layout), ``anchor``, ``raw:<field>`` (emit as a JSON
    literal) and the codes ``type``, ``stage``, ``deal``, ``account``,
    ``currency``, ``product``, ``owner``, ``source``.
    """

    values: dict[str, pa.Array]
    meta: dict[str, np.ndarray]
    index: _AccountIndex

    def __len__(self) -> int:
        return len(self.meta["key"])

    def column(self, name: str) -> pa.Array:
        """The texts of field ``name`` (null = absent)."""
        if name not in self.values:
            self.values[name] = _derive(self, name)
        return self.values[name]

    def take(self, index: np.ndarray) -> _Rows:
        positions = pa.array(np.asarray(index, dtype=np.int64))
        return _Rows({k: v.take(positions) for k, v in self.values.items()},
                     {k: v[index] for k, v in self.meta.items()}, self.index)

    @staticmethod
    def concat(parts: list[_Rows]) -> _Rows:
        names = list(dict.fromkeys(k for p in parts for k in p.values))
        return _Rows(
            {k: pa.concat_arrays([p.column(k) for p in parts]) for k in names},
            {k: np.concatenate([p.meta[k] for p in parts]) for k in parts[0].meta},
            parts[0].index,
        )


# Derived text columns: field -> (table, meta code); a negative code = absent.
_LOOKUPS: dict[str, tuple[tuple[str, ...], str]] = {
    "event_type": (EVENT_TYPES, "type"), "currency": (CURRENCIES, "currency"),
    "stage": (_STAGES, "stage"), "product": (_PRODUCTS, "product"),
    "source_system": (_SOURCE_SYSTEMS, "source"),
}


def _derive(rows: _Rows, name: str) -> pa.Array:
    """A text column computed from the codes in ``rows.meta``."""
    if name == "deal_id":
        return _ids("opp-", rows.meta["deal"], 8)
    if name == "account_id":
        return rows.index.ids.take(pa.array(rows.meta["account"]))
    if name == "opportunity_owner_id":
        return _pick(rows.index.owners, rows.meta["owner"])
    table, code = _LOOKUPS[name]
    return _pick(table, rows.meta[code])


@dataclass
class _Counters:
    """Running event and deal numbers across files (ids stay unique)."""

    event: int = 1
    deal: int = 1


def _base_amounts(rng: np.random.Generator, currency: np.ndarray) -> np.ndarray:
    """Deal sizes in integer minor units (round numbers often; JPY in whole 1000s)."""
    n = len(currency)
    usd = np.clip(np.exp(rng.normal(np.log(12_000), 1.0, n)), 250, 2_500_000)
    usd = np.where(rng.random(n) < 0.5, np.rint(usd / 100) * 100, np.rint(usd))
    units = np.rint(usd * np.array(_PER_USD)[currency]).astype(np.int64)
    cents = np.where(rng.random(n) < 0.3, rng.integers(1, 100, n), 0)
    two = _DIGITS[currency] == 2
    return np.where(two, units * 100 + cents, np.maximum(1, units // 1000) * 1000)


def _lifecycles(rng: np.random.Generator, n: int, index: _AccountIndex) -> dict[str, np.ndarray]:
    """Events of ``n`` deals, deal by deal: created, stage changes, won/lost, after-win."""
    unknown = rng.random(n) < 0.012
    account = rng.choice(index.known, size=n, p=index.weights)
    account = np.where(unknown, index.known + rng.integers(0, _UNKNOWN_ACCOUNTS, n), account)
    currency = np.where(unknown, rng.integers(0, len(CURRENCIES), n),
                        index.currency[np.minimum(account, index.known - 1)])
    override = rng.random(n) < 0.15
    currency = np.where(override, rng.choice(len(CURRENCIES), n, p=[.3, .2, .15, .15, .2]),
                        currency)
    base = _base_amounts(rng, currency)
    present = np.zeros((n, 8), dtype=bool)
    times = np.zeros((n, 8), dtype=np.int64)
    amounts = np.repeat(base[:, None], 8, axis=1)
    types = np.array([_TYPE["deal_created"]] + [_TYPE["deal_stage_changed"]] * 3
                     + [0, _TYPE["deal_amended"], _TYPE["deal_refunded"], _TYPE["deal_reopened"]])
    types = np.repeat(types[None, :], n, axis=0)
    start = _START + rng.integers(0, (PERIOD_DAYS - 1) * _DAY, n)
    present[:, 0], times[:, 0] = True, start
    amounts[:, 0] = np.where(rng.random(n) < 0.05, 0, base)
    stages = rng.choice(4, n, p=[0.25, 0.35, 0.25, 0.15])
    steps = start[:, None] + np.cumsum(rng.exponential(4 * _DAY, (n, 3)).astype(np.int64) + 60, 1)
    present[:, 1:4] = np.arange(3)[None, :] < stages[:, None]
    times[:, 1:4] = steps
    last = np.where(stages > 0, steps[np.arange(n), np.maximum(stages - 1, 0)], start)
    outcome = rng.choice(3, n, p=[0.25, 0.45, 0.30])  # open, won, lost
    won = outcome == 1
    close = last + rng.exponential(6 * _DAY, n).astype(np.int64) + 60
    present[:, 4], times[:, 4] = outcome > 0, close
    types[:, 4] = np.where(won, _TYPE["deal_won"], _TYPE["deal_lost"])
    amounts[:, 4] = np.where(won | (rng.random(n) < 0.7), base, 0)
    for slot, share, mean_days in ((5, 0.15, 10), (6, 0.07, 15), (7, 0.05, 12)):
        present[:, slot] = won & (rng.random(n) < share)
        times[:, slot] = close + rng.exponential(mean_days * _DAY, n).astype(np.int64) + 60
    change = np.maximum(1, base * rng.integers(5, 31, n) // 100)
    amounts[:, 5] = np.where(rng.random(n) < 0.35, -change, change)
    amounts[:, 6] = np.maximum(1, base * rng.integers(10, 101, n) // 100)
    present &= times < _END
    deal, slot = np.nonzero(present)
    return {
        "deal": deal, "slot": slot, "time": times[deal, slot], "type": types[deal, slot],
        "minor": amounts[deal, slot], "account": account[deal], "currency": currency[deal],
        "won": won[deal],
        "product": np.where(rng.random(n) < 0.1, -1, rng.integers(0, len(_PRODUCTS), n))[deal],
        "owner": _owner_index(rng, n, len(index.owners))[deal],
        "source": np.where(rng.random(n) < 0.65, -1,
                           rng.integers(0, len(_SOURCE_SYSTEMS), n))[deal],
    }


def _owner_index(rng: np.random.Generator, n: int, owners: int) -> np.ndarray:
    """opportunity_owner_id per deal: an index into the owners, -1 when absent (10%)."""
    return np.where(rng.random(n) < 0.1, -1, rng.integers(0, owners, n))


def _stage_index(slot: np.ndarray, won: np.ndarray) -> np.ndarray:
    """CRM stage name per lifecycle slot."""
    by_slot = np.array([0, 1, 2, 3, 4, 4, 4, 3])
    return np.where((slot == 4) & ~won, 5, by_slot[slot])


def _deal_events(rng: np.random.Generator, n_events: int, index: _AccountIndex,
                 counters: _Counters) -> dict[str, np.ndarray]:
    """Exactly ``n_events`` lifecycle events (deal order), with global deal numbers."""
    parts, total, deals = [], 0, 0
    while total < n_events or not parts:
        n_deals = math.ceil((n_events - total) / 2.8 * 1.1) + 8
        part = _lifecycles(rng, n_deals, index)
        part["deal"] = part["deal"] + deals
        parts.append(part)
        total += len(part["deal"])
        deals += n_deals
    events = {k: np.concatenate([p[k] for p in parts])[:n_events] for k in parts[0]}
    used = int(events["deal"].max()) + 1 if n_events else 0
    events["deal"] = events["deal"] + counters.deal
    counters.deal += used
    return events


def _expected_status(account: np.ndarray, time_us: np.ndarray, index: _AccountIndex,
                     ) -> np.ndarray:
    """Attribution status code each event must get (see ``_STATUSES``)."""
    known = account < index.known
    a = np.minimum(account, index.known - 1)
    in_gap = (time_us >= index.gap_from[a]) & (time_us < index.gap_to[a])
    status = np.zeros(len(account), dtype=np.int8)
    status[~known] = 1
    status[known & (index.no_manager[a] | in_gap)] = 2
    status[known & index.no_territory[a]] = 3
    return status


def _sort_keys(rng: np.random.Generator, time_us: np.ndarray) -> np.ndarray:
    """Arrival order: event time plus jitter (hours), ~5% arriving days late."""
    n = len(time_us)
    jitter = rng.normal(0.0, 3 * 3600 * _US, n).astype(np.int64)
    late = np.where(rng.random(n) < 0.05, rng.integers(1, 10, n) * _DAY * _US, 0)
    return time_us + jitter + late


def _rows_from(ev: dict[str, np.ndarray], show: dict[str, np.ndarray], index: _AccountIndex,
               counters: _Counters) -> _Rows:
    """Text columns for events ``ev`` rendered with presentation choices ``show``."""
    n = len(ev["time_us"])
    ids = np.arange(counters.event, counters.event + n)
    counters.event += n
    digits = _DIGITS[ev["currency"]]
    meta = {
        "key": ev["key"], "time_us": ev["time_us"], "minor": ev["minor"], "digits": digits,
        "style": show["style"], "status": _expected_status(ev["account"], ev["time_us"], index),
        "reason": np.full(n, -1, np.int8), "malformed": np.zeros(n, np.int8),
        "alt": show["alt"], "type": ev["type"], "stage": ev["stage"], "deal": ev["deal"],
        "account": ev["account"], "currency": ev["currency"], "product": ev["product"],
        "owner": ev["owner"], "source": ev["source"],
    }
    for name in REQUIRED_FIELDS:
        meta[f"raw:{name}"] = np.zeros(n, dtype=bool)
    meta["raw:amount"] = show["number"]
    meta["anchor"] = ev.get("anchor", np.zeros(n, dtype=bool))
    batch = np.where(show["meta"], _export_batch(ids), -1)
    deals, first, inverse = np.unique(ev["deal"], return_index=True, return_inverse=True)
    per_deal = {"deal": deals, "account": ev["account"][first],
                "currency": ev["currency"][first], "product": ev["product"][first],
                "opportunity_owner_id": ev["owner"][first], "source_system": ev["source"][first]}
    values = {
        "event_id": _ids("evt-", ids, 9),
        "event_time": _time_text(ev["time_us"], show["offset"], show["frac"]),
        "amount": _amount_text(ev["minor"], digits, show["style"]),
        "crm_meta": _crm_meta(batch),
        # Not a field: the deal-constant middle of a compact JSON line (_compact_lines).
        "_deal_json": _deal_json(per_deal, index).take(pa.array(inverse.astype(np.int64))),
    }
    return _Rows(values, meta, index)


def _fragment_table(name: str, values: tuple[str, ...] | pa.Array) -> pa.Array:
    """``["", ',"name":"v0"', ...]``: index 0 is the absent field."""
    texts = _join(f',"{name}":"', pa.array(values, pa.string()), '"')
    return pa.concat_arrays([pa.array([""]), texts])


def _deal_json(per_deal: dict[str, np.ndarray], index: _AccountIndex) -> pa.Array:
    """``","deal_id":"…",…,"amount":`` per deal: the deal-constant middle of a compact
    line, opened by the closing quote of event_time (see ``_compact_lines``)."""
    tables = {"currency": CURRENCIES, "product": _PRODUCTS,
              "opportunity_owner_id": index.owners, "source_system": _SOURCE_SYSTEMS}
    pieces: list[pa.Array | str] = [
        '","deal_id":"', _ids("opp-", per_deal["deal"], 8),
        '","account_id":"', index.ids.take(pa.array(per_deal["account"])), '"']
    for name, table in tables.items():
        pieces.append(_fragment_table(name, table).take(pa.array(per_deal[name] + 1)))
    pieces.append(',"amount":')
    return _join(*pieces)


def _export_batch(ids: np.ndarray) -> np.ndarray:
    """A deterministic export batch number derived from the event number."""
    return ids // 5000 + 1


def _crm_meta(batch: np.ndarray) -> pa.Array:
    """An unknown nested-object field (JSON only); null where ``batch`` < 0."""
    values = pa.nulls(len(batch), pa.string())
    present = batch >= 0
    if present.any():
        text = _join('{"batch":', _numbers(batch[present]), ',"replayed":false}')
        values = pc.replace_with_mask(values, pa.array(present), text)
    return values


def _random_show(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Presentation draws: offset, fraction kind, amount style/number, key order, extras."""
    return {
        "offset": rng.choice(len(_OFFSETS), n, p=_OFFSET_P),
        "frac": rng.choice(3, n, p=[0.95, 0.04, 0.01]),
        "style": rng.choice(3, n, p=[0.7, 0.2, 0.1]),
        "number": rng.random(n) < 0.3,
        "alt": np.zeros(n, dtype=bool),
        "meta": rng.random(n) < 0.02,
    }


def _event_rows(rng: np.random.Generator, n: int, index: _AccountIndex, counters: _Counters,
                alt: bool = False) -> _Rows:
    """``n`` random lifecycle events as records, in deal order (``alt``: spaced layout)."""
    ev = _deal_events(rng, n, index, counters)
    show = _random_show(rng, n)
    show["alt"][:] = alt
    fraction = np.where(show["frac"] == 1, rng.integers(0, 1000, n) * 1000,
                        np.where(show["frac"] == 2, rng.integers(1, _US, n), 0))
    ev["time_us"] = ev["time"] * _US + fraction
    ev["key"] = _sort_keys(rng, ev["time_us"])
    ev["stage"] = np.where(rng.random(n) < 0.15, -1, _stage_index(ev["slot"], ev["won"]))
    return _rows_from(ev, show, index, counters)


def _anchor_rows(anchors: list[_Anchor], index: _AccountIndex, counters: _Counters) -> _Rows:
    """The boundary events: deal_won, one deal each, plain presentation."""
    n = len(anchors)
    account = np.array([a.account for a in anchors], dtype=np.int64)
    currency = index.currency[account]
    time_us = np.array([a.time_us for a in anchors], dtype=np.int64)
    deals = np.arange(counters.deal, counters.deal + n)
    counters.deal += n
    ev = {
        "time_us": time_us, "key": time_us, "account": account, "currency": currency,
        "type": np.full(n, _TYPE["deal_won"]), "deal": deals,
        "minor": np.where(_DIGITS[currency] == 2, 125_000 + 100 * np.arange(n),
                          1_500_000 + 1000 * np.arange(n)),
        "stage": np.full(n, 4), "product": np.zeros(n, np.int64),
        "owner": np.zeros(n, np.int64), "source": np.full(n, -1),
        "anchor": np.ones(n, dtype=bool),
    }
    show = {
        "offset": np.array([_OFFSET_CODE[a.offset] for a in anchors]),
        "frac": np.array([a.frac_kind for a in anchors]),
        "style": np.zeros(n, np.int64), "number": np.zeros(n, bool),
        "alt": np.zeros(n, bool), "meta": np.zeros(n, bool),
    }
    return _rows_from(ev, show, index, counters)


# ----------------------------------------------------------------------------- bad records

# Variants per quarantine reason; names containing "json:" only exist in JSONL.
_VARIANTS: dict[str, tuple[str, ...]] = {
    "malformed": ("json:truncated", "json:array", "json:text", "json:null", "json:quotes"),
    "missing_field": ("absent:event_id", "absent:event_type", "absent:event_time",
                      "absent:deal_id", "absent:account_id", "absent:amount", "absent:currency",
                      "empty:account_id", "empty:event_type", "empty:deal_id",
                      "empty:currency", "empty:event_time"),
    "bad_type": ("json:number:deal_id", "json:object:deal_id", "json:number:account_id",
                 "json:array:account_id", "json:number:event_id", "json:number:event_time",
                 "json:object:amount", "long:deal_id", "long:account_id", "long:event_id"),
    "unknown_event_type": ("deal_closed", "deal_deleted", "opportunity_won", "deal-won"),
    "bad_timestamp": ("no_offset", "garbage", "feb30", "date_only", "us_format", "hour24"),
    "bad_amount": ("text", "comma", "two_points", "usd_3dp", "jpy_decimal", "won_negative",
                   "won_zero", "refund_negative", "amended_zero", "too_large",
                   "too_large_negative", "json:number_3dp"),
    "bad_currency": ("usd", "XYZ", "EURO", "Eur", "US$"),
    "no_fx_rate": NO_FX_CURRENCIES,
}
_MALFORMED_CODES = {v: i for i, v in enumerate(_VARIANTS["malformed"], start=1)}
_TIMESTAMPS = {"garbage": "last tuesday", "feb30": "2026-02-30T10:15:00Z",
               "us_format": "02/11/2026 10:15:00", "hour24": "2026-03-01T24:00:00Z"}
# bad_amount variant -> (amount text, currency or None to keep, event type or None to keep)
_BAD_AMOUNTS: dict[str, tuple[str, str | None, str | None]] = {
    "text": ("n/a", None, None),
    "comma": ("1.234,50", "EUR", None),
    "two_points": ("1.2.3", None, None),
    "usd_3dp": ("1234.567", "USD", None),
    "jpy_decimal": ("150000.5", "JPY", None),
    "won_negative": ("-2500.00", "USD", "deal_won"),
    "won_zero": ("0", "USD", "deal_won"),
    "refund_negative": ("-120.00", "USD", "deal_refunded"),
    "amended_zero": ("0.00", "USD", "deal_amended"),
    "too_large": ("10000000000000", "USD", "deal_won"),
    "too_large_negative": ("-25000000000000.00", "USD", "deal_amended"),
    "json:number_3dp": ("12.345", "USD", "deal_created"),
}


def _reasons_for(event_format: str) -> tuple[str, ...]:
    """Reasons a format can carry (a Parquet row is always a record: no malformed)."""
    reasons = tuple(r for r in QUARANTINE_REASONS if r != "conflicting_duplicate")
    return reasons if event_format == "jsonl" else tuple(r for r in reasons if r != "malformed")


def _variants_for(reason: str, event_format: str) -> tuple[str, ...]:
    variants = _VARIANTS[reason]
    return variants if event_format == "jsonl" else tuple(
        v for v in variants if not v.startswith("json:"))


def _plant_defects(bad: _Rows, first: int, event_format: str, rng: np.random.Generator,
                   ) -> _Rows:
    """Give each record exactly one defect; record ``k`` (global) gets reason ``k % R``."""
    reasons = _reasons_for(event_format)
    k = np.arange(first, first + len(bad))
    reason_index = k % len(reasons)
    groups = []
    for r, reason in enumerate(reasons):
        variants = _variants_for(reason, event_format)
        rows_r = np.nonzero(reason_index == r)[0]
        choice = (k[rows_r] // len(reasons)) % len(variants)
        for v, variant in enumerate(variants):
            picked = rows_r[choice == v]
            if len(picked):
                sub = bad.take(picked)
                _DEFECTS[reason](sub, variant, rng)
                sub.meta["reason"][:] = QUARANTINE_REASONS.index(reason)
                sub.meta["status"][:] = -1
                groups.append(sub)
    return _Rows.concat(groups) if groups else bad


def _set(rows: _Rows, name: str, values: pa.Array | str, raw: bool = False) -> None:
    """Replace a field for every row of ``rows`` (a text or a per-row array)."""
    if isinstance(values, str):
        values = _repeat(values, len(rows))
    rows.values[name] = values
    if f"raw:{name}" in rows.meta:
        rows.meta[f"raw:{name}"] = np.full(len(rows), raw)


def _defect_malformed(rows: _Rows, variant: str, rng: np.random.Generator) -> None:
    rows.meta["malformed"][:] = _MALFORMED_CODES[variant]


def _defect_missing(rows: _Rows, variant: str, rng: np.random.Generator) -> None:
    how, name = variant.split(":")
    _set(rows, name, pa.nulls(len(rows), pa.string()) if how == "absent" else "")


def _defect_type(rows: _Rows, variant: str, rng: np.random.Generator) -> None:
    parts = variant.split(":")
    kind, name = parts[-2], parts[-1]
    n, current = len(rows), rows.column(name)
    if kind == "long":
        _set(rows, name, _join(current, "-", "0" * 128))
    elif kind == "number" and name == "event_time":
        _set(rows, name, _numbers(rows.meta["time_us"] // _US), raw=True)
    elif kind == "number":
        _set(rows, name, _numbers(rng.integers(10**7, 10**9, n)), raw=True)
    elif kind == "object":
        key = "value" if name == "amount" else "id"
        _set(rows, name, _join('{"', key, '":"', current, '"}'), raw=True)
    else:
        _set(rows, name, _join('["', current, '"]'), raw=True)


def _defect_event_type(rows: _Rows, variant: str, rng: np.random.Generator) -> None:
    _set(rows, "event_type", variant)


def _defect_timestamp(rows: _Rows, variant: str, rng: np.random.Generator) -> None:
    current = rows.column("event_time")
    if variant == "no_offset":
        _set(rows, "event_time", pc.replace_substring_regex(current, r"(Z|[+-]\d\d:\d\d)$", ""))
    elif variant == "date_only":
        _set(rows, "event_time", pc.utf8_slice_codeunits(current, 0, 10))
    else:
        _set(rows, "event_time", _TIMESTAMPS[variant])


def _defect_amount(rows: _Rows, variant: str, rng: np.random.Generator) -> None:
    text, currency, event_type = _BAD_AMOUNTS[variant]
    _set(rows, "amount", text, raw=variant.startswith("json:"))
    if currency:
        _set(rows, "currency", currency)
    if event_type:
        _set(rows, "event_type", event_type)


def _positive_whole_amount(rows: _Rows) -> pa.Array:
    """A whole, positive amount: valid whatever the currency's minor units or the type."""
    major = np.abs(rows.meta["minor"]) // 10 ** rows.meta["digits"]
    return _numbers(np.maximum(1, major))


def _defect_currency(rows: _Rows, variant: str, rng: np.random.Generator) -> None:
    _set(rows, "currency", variant)
    _set(rows, "amount", _positive_whole_amount(rows))


_DEFECTS = {
    "malformed": _defect_malformed,
    "missing_field": _defect_missing,
    "bad_type": _defect_type,
    "unknown_event_type": _defect_event_type,
    "bad_timestamp": _defect_timestamp,
    "bad_amount": _defect_amount,
    "bad_currency": _defect_currency,
    "no_fx_rate": _defect_currency,
}


# ----------------------------------------------------------------------------- rendering


def _fragments(rows: _Rows, order: tuple[str, ...], comma: str, colon: str) -> pa.Array:
    """``{"k":v,...}`` per row; absent (null) fields are left out."""
    pieces = []
    for name in order:
        values = rows.column(name)
        prefix = f'{comma}"{name}"{colon}'
        quoted = _join(prefix + '"', values, '"')
        raw = rows.meta.get(f"raw:{name}")
        if name == "crm_meta":
            quoted = _join(prefix, values)
        elif raw is not None and raw.any():
            quoted = pc.if_else(pa.array(raw), _join(prefix, values), quoted)
        pieces.append(pc.fill_null(quoted, ""))
    body = pc.utf8_slice_codeunits(_join(*pieces), len(comma))
    return _join("{", body, "}")


def _malformed(lines: pa.Array, rows: _Rows) -> pa.Array:
    """Turn the lines of malformed records into non-objects / broken JSON."""
    code = rows.meta["malformed"]
    mask = code > 0
    if not mask.any():
        return lines
    selected = pa.array(mask)
    old, ids, codes = lines.filter(selected), rows.column("event_id").filter(selected), code[mask]
    new = old
    for variant, number in _MALFORMED_CODES.items():
        if not (codes == number).any():
            continue
        if variant == "json:truncated":
            text = pc.utf8_slice_codeunits(old, 0, 45)
        elif variant == "json:array":
            text = _join("[", old, "]")
        elif variant == "json:text":
            text = _join("ERROR 502 upstream timeout while exporting ", ids)
        elif variant == "json:null":
            text = _repeat("null", len(old))
        else:
            text = pc.replace_substring(old, '"', "'")
        new = pc.if_else(pa.array(codes == number), text, new)
    return pc.replace_with_mask(lines, selected, new)


@lru_cache(maxsize=1)
def _type_stage_table() -> pa.Array:
    """``","event_type":"…","stage":"…","event_time":"``; index = type * 7 + stage + 1."""
    texts = []
    for event_type in EVENT_TYPES:
        for stage in (None,) + _STAGES:
            stage_text = "" if stage is None else f',"stage":"{stage}"'
            texts.append(f'","event_type":"{event_type}"{stage_text},"event_time":"')
    return pa.array(texts)


def _compact_lines(rows: _Rows) -> pa.Array:
    """Compact JSON in ``_JSON_ORDER`` with one 8-piece join per line.

    Only right for valid records (fields as generated, no JSON literal but a numeric
    amount): the per-deal piece ``_deal_json`` and the (type, stage) table replace
    eight field joins. ``_render_jsonl`` sends every other record to ``_fragments``.
    """
    number = pa.array(rows.meta["raw:amount"].astype(np.int8))
    type_stage = pa.array(rows.meta["type"] * (len(_STAGES) + 1) + rows.meta["stage"] + 1)
    closing = pa.array(['"}', "}"]).take(number)
    with_meta = pc.is_valid(rows.values["crm_meta"])
    if pc.any(with_meta).as_py():
        meta = rows.values["crm_meta"].filter(with_meta)
        quote = pa.array(['"', ""]).take(number.filter(with_meta))
        closing = pc.replace_with_mask(closing, with_meta,
                                       _join(quote, ',"crm_meta":', meta, "}"))
    return _join('{"event_id":"', rows.values["event_id"],
                 _type_stage_table().take(type_stage), rows.values["event_time"],
                 rows.values["_deal_json"], pa.array(['"', ""]).take(number),
                 rows.values["amount"], closing)


def _render_jsonl(rows: _Rows) -> pa.Array:
    """One JSON text per record: compact, or spaced with another key order (``alt``);
    bad records go through the general path ``_fragments``."""
    alt = rows.meta["alt"]
    general = (rows.meta["reason"] >= 0) & ~alt
    if alt.all():
        return _malformed(_fragments(rows, _ALT_ORDER, ", ", ": "), rows)
    if general.all():
        return _malformed(_fragments(rows, _JSON_ORDER, ",", ":"), rows)
    lines = _compact_lines(rows)
    for mask, order, comma, colon in ((general, _JSON_ORDER, ",", ":"),
                                      (alt, _ALT_ORDER, ", ", ": ")):
        if mask.any():
            texts = _fragments(rows.take(np.nonzero(mask)[0]), order, comma, colon)
            lines = pc.replace_with_mask(lines, pa.array(mask), texts)
    return _malformed(lines, rows)


def _render_parquet(rows: _Rows) -> pa.Table:
    """The records as a table of string columns (null = absent)."""
    return pa.table({name: rows.column(name) for name in _PARQUET_COLUMNS})


def _render(rows: _Rows, event_format: str) -> pa.Array | pa.Table:
    return _render_jsonl(rows) if event_format == "jsonl" else _render_parquet(rows)


def _concat_rendered(parts: list[pa.Array | pa.Table]) -> pa.Array | pa.Table:
    if isinstance(parts[0], pa.Table):
        return pa.concat_tables(parts).combine_chunks()
    return pa.concat_arrays(parts)


def _write_rendered(path: Path, rendered: pa.Array | pa.Table) -> None:
    """Write JSONL lines (one buffer, no per-line Python) or a Parquet file."""
    if isinstance(rendered, pa.Table):
        pq.write_table(rendered, path, compression="snappy")
        return
    text = _join(rendered, "\n")
    if len(text) == 0:
        path.write_bytes(b"")
        return
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:
                                                                text.offset + len(text) + 1]
    with open(path, "wb") as handle:
        handle.write(memoryview(text.buffers()[2])[int(offsets[0]):int(offsets[-1])])


# ----------------------------------------------------------------------------- files


@dataclass(frozen=True)
class _Plan:
    """How many records of each kind go into each file."""

    event_format: str
    files: int
    valid: tuple[int, ...]
    bad: tuple[int, ...]
    exact: tuple[int, ...]
    equivalent: tuple[int, ...]
    conflicting: tuple[int, ...]
    with_anchors: bool

    def bad_offset(self, file: int) -> int:
        """Global number of the first bad record of ``file`` (reasons cycle globally)."""
        return sum(self.bad[:file])


def _split(total: int, parts: int) -> tuple[int, ...]:
    """``total`` spread evenly over ``parts``."""
    return tuple(total // parts + (1 if i < total % parts else 0) for i in range(parts))


def _make_plan(events: int, bad_rate: float, event_format: str, anchors: int) -> _Plan:
    """Counts per kind so that the files hold exactly ``events`` records."""
    files = max(MIN_FILES, math.ceil(events / EVENTS_PER_FILE))
    n_anchor = anchors if events >= 200 else 0
    exact = max(1, events // 250) if events >= 100 else 0
    equivalent = max(1, events // 2500) if events >= 500 and event_format == "jsonl" else 0
    conflicting = max(1, events // 1000) if events >= 100 else 0
    bad = 0
    if bad_rate > 0:
        bad = round(bad_rate * events)
        if events >= 100:
            bad = max(bad, len(_reasons_for(event_format)))
        bad = min(bad, events // 2)
    valid = events - n_anchor - exact - equivalent - conflicting - bad
    return _Plan(event_format, files, _split(valid, files), _split(bad, files),
                 _split(exact, files), _split(equivalent, files), _split(conflicting, files),
                 n_anchor > 0)


@dataclass
class _Written:
    """Totals over the event files."""

    records: int
    files: tuple[str, ...]
    planted: dict[str, int]
    expected: dict


def _copies(rows: _Rows, rng: np.random.Generator, exact: int, equivalent: int,
            conflicting: int) -> dict[str, _Rows]:
    """Repeats of distinct records of ``rows``: exact (same text), equivalent (amount as
    number vs string: same payload) and conflicting (same event_id, another amount)."""
    total = exact + equivalent + conflicting
    if total > len(rows):
        raise AssertionError("more duplicates planned than records to copy")
    picked = rng.choice(len(rows), size=total, replace=False)
    same = rows.take(picked[:exact])
    swapped = rows.take(picked[exact:exact + equivalent])
    swapped.meta["raw:amount"] = ~swapped.meta["raw:amount"]
    changed = rows.take(picked[exact + equivalent:])
    step = 1000  # 10.00 in a 2-digit currency, 1000 in JPY; keeps the sign rule
    changed.meta["minor"] = changed.meta["minor"] + np.where(changed.meta["minor"] < 0, -step,
                                                             step)
    changed.values["amount"] = _amount_text(changed.meta["minor"], changed.meta["digits"],
                                            changed.meta["style"])
    copies = {"exact_duplicate": same, "equivalent_duplicate": swapped,
              "conflicting_duplicate": changed}
    for part in copies.values():
        part.meta["key"] = part.meta["key"] + rng.integers(-3600, 3600, len(part)) * _US
    return copies


def _clear_stale(directory: Path) -> None:
    """Remove event files of an earlier run (only our ``part-*`` names)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in sorted(directory.glob("part-*")):
        if stale.suffix in (".jsonl", ".parquet"):
            stale.unlink()


def _tally(parts: dict[str, _Rows], planted: dict[str, int], statuses: np.ndarray) -> None:
    """Add a file's bad records per reason, boundary events and expected statuses."""
    for rows in parts.values():
        reason = rows.meta["reason"]
        good = reason < 0
        statuses += np.bincount(rows.meta["status"][good], minlength=len(_STATUSES))
        by_reason = np.bincount(reason[~good], minlength=len(QUARANTINE_REASONS))
        for r, count in enumerate(by_reason):
            planted[QUARANTINE_REASONS[r]] += int(count)
        planted["boundary_events"] += int((good & rows.meta["anchor"]).sum())


@dataclass
class _Batch:
    """Rendered records of one file (any order) with their sort keys."""

    rendered: list[pa.Array | pa.Table] = field(default_factory=list)
    keys: list[np.ndarray] = field(default_factory=list)

    def add(self, rows: _Rows, event_format: str) -> None:
        self.rendered.append(_render(rows, event_format))
        self.keys.append(rows.meta["key"])

    def sorted(self) -> pa.Array | pa.Table:
        """All records in arrival order (sort key, stable)."""
        order = pa.array(np.argsort(np.concatenate(self.keys), kind="stable"))
        return _concat_rendered(self.rendered).take(order)


def _write_events(directory: Path, plan: _Plan, reference: _Reference, seed: int) -> _Written:
    """Generate the event files one by one (a third of the copies land in the next file);
    a background thread writes file c while file c + 1 is generated."""
    _clear_stale(directory)
    counters = _Counters()
    planted = {reason: 0 for reason in QUARANTINE_REASONS}
    planted.update({k: 0 for k in ("exact_duplicate", "equivalent_duplicate", "boundary_events")
                    + _ATTRIBUTION_KEYS})
    statuses = np.zeros(len(_STATUSES), dtype=np.int64)
    files, records, carry = [], 0, _Batch()
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future | None = None
        for c in range(plan.files):
            rng = _rng(seed, c + 1)
            parts = _file_parts(c, plan, reference, counters, rng)
            _tally(parts, planted, statuses)
            batch, next_carry = _Batch(carry.rendered, carry.keys), _Batch()
            for rows in parts.values():
                batch.add(rows, plan.event_format)
            copies = _copies(parts["valid"], rng, plan.exact[c], plan.equivalent[c],
                             plan.conflicting[c])
            for kind, part in copies.items():
                planted[kind] += len(part)
                later = (np.arange(len(part)) % 3 == 0) & (c + 1 < plan.files)
                for mask, target in ((~later, batch), (later, next_carry)):
                    if mask.any():
                        target.add(part.take(np.nonzero(mask)[0]), plan.event_format)
            carry = next_carry
            merged = batch.sorted()
            name = f"part-{c:05d}.{plan.event_format}"
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_rendered, directory / name, merged)
            files.append(f"events/{name}")
            records += len(merged)
        if pending is not None:
            pending.result()
    for code, key in enumerate(_STATUSES[1:], start=1):
        planted[key] = int(statuses[code])
    return _Written(records, tuple(files), planted, _expected(planted, records, statuses))


def _file_parts(c: int, plan: _Plan, reference: _Reference, counters: _Counters,
                rng: np.random.Generator) -> dict[str, _Rows]:
    """Valid, bad and anchor records of file ``c`` (unsorted, rendered part by part).

    ~3% of the valid records come from another exporter (spaced JSON, other key order).
    """
    spaced = plan.valid[c] * 3 // 100 if plan.event_format == "jsonl" else 0
    parts = {"valid": _event_rows(rng, plan.valid[c] - spaced, reference.index, counters)}
    if spaced:
        parts["spaced"] = _event_rows(rng, spaced, reference.index, counters, alt=True)
    if plan.bad[c]:
        bad = _event_rows(rng, plan.bad[c], reference.index, counters)
        parts["bad"] = _plant_defects(bad, plan.bad_offset(c), plan.event_format, rng)
    if plan.with_anchors:
        mine = [a for i, a in enumerate(reference.anchors) if i % plan.files == c]
        if mine:
            parts["anchors"] = _anchor_rows(mine, reference.index, counters)
    return parts


def _expected(planted: dict[str, int], records: int, statuses: np.ndarray) -> dict:
    """What a correct pipeline reports for these files (reporting currency USD; the global
    territory always has a manager, so no_territory_manager cannot occur)."""
    quarantined = {reason: planted[reason] for reason in QUARANTINE_REASONS}
    duplicates = planted["exact_duplicate"] + planted["equivalent_duplicate"]
    status = {s: 0 for s in ATTRIBUTION_STATUSES}
    status.update({s: int(statuses[i]) for i, s in enumerate(_STATUSES)})
    return {
        "reporting_currency": DEFAULT_REPORTING_CURRENCY,
        "input_records": records,
        "accepted": int(statuses.sum()),
        "duplicates": duplicates,
        "quarantined": sum(quarantined.values()),
        "quarantined_by_reason": quarantined,
        "attribution_status": status,
    }


def _manifest(summary: GenerationSummary, reference: _Reference, written: _Written,
              plan: _Plan, reference_files: list[str], args: dict) -> dict:
    """manifest.json content (no clock, no paths outside out_dir)."""
    return {
        "generator": "revattr.generate/1",
        "seed": args["seed"],
        "args": {"events": summary.events_written, "event_format": plan.event_format, **args},
        "period": {"start": _instant_text(_START), "end": _instant_text(_END)},
        "events_written": summary.events_written,
        "files": list(summary.files),
        "reference_files": reference_files,
        "planted": dict(sorted(summary.planted.items())),
        "expected": written.expected,
        "reference": {"accounts": len(reference.tables["accounts"]),
                      **{k: v for k, v in reference.notes.items()}},
        "fx_currencies": sorted(_FX_START),
        "no_fx_currencies": list(NO_FX_CURRENCIES),
    }

