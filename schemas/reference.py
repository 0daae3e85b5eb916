"""Reference data: effective-dated dimension tables (CONTRACT.md section 2).

Files are CSV (header row) or Parquet, one per table, named ``<table>.csv`` or
``<table>.parquet`` in one directory (the seven tables of the contract, plus the
optional ``account_splits``: an absent file is an empty table).
``REFERENCE_FILE_COLUMNS`` is the file layout (every column read as text);
``REFERENCE_SCHEMAS`` the typed tables the loader produces. ``valid_from``/``valid_to``
become UTC timestamps, null meaning "since always" / "open-ended".
"""

from __future__ import annotations

import pyarrow as pa

from schemas.money import FX_RATE_TYPE

VALIDITY_TYPE = pa.timestamp("us", tz="UTC")
UNASSIGNED = "UNASSIGNED"

# Account-team splits (docs/contract.md "Account-team splits"): a percent with at most
# four decimals, 0 < percent <= 100; ``primary`` shares of an account split its credit
# (they sum to 100 at every instant), ``overlay`` ones are credited in addition.
PERCENT_TYPE = pa.decimal128(7, 4)
SPLIT_TYPES: tuple[str, ...] = ("primary", "overlay")
DEFAULT_SPLIT_ROLE = "account_manager"  # the role of the account manager's 100% default


def _validity() -> list[pa.Field]:
    return [pa.field("valid_from", VALIDITY_TYPE), pa.field("valid_to", VALIDITY_TYPE)]


def _text(*names: str, required: tuple[str, ...] = ()) -> list[pa.Field]:
    return [pa.field(n, pa.string(), nullable=n not in required) for n in names]


REFERENCE_SCHEMAS: dict[str, pa.Schema] = {
    "accounts": pa.schema(
        _text(
            "account_id",
            "account_name",
            "country",
            "region",
            "city",
            "postal_code",
            "industry",
            required=("account_id",),
        )
    ),
    "account_assignments": pa.schema(
        _text("account_id", "account_manager_id", required=("account_id", "account_manager_id"))
        + _validity()
    ),
    "territories": pa.schema(
        _text(
            "territory_id",
            "territory_name",
            "parent_territory_id",
            "level",
            required=("territory_id",),
        )
    ),
    "territory_rules": pa.schema(
        _text(
            "territory_id",
            "country",
            "region",
            "city",
            "postal_prefix",
            required=("territory_id", "country"),
        )
        + _validity()
    ),
    "territory_managers": pa.schema(
        _text("territory_id", "manager_id", required=("territory_id", "manager_id")) + _validity()
    ),
    "people": pa.schema(
        _text("person_id", "name", "email", "role", "reports_to", required=("person_id",))
    ),
    "fx_rates": pa.schema(
        [
            pa.field("currency", pa.string(), nullable=False),
            pa.field("rate_date", pa.date32(), nullable=False),
            pa.field("rate_to_reporting", FX_RATE_TYPE, nullable=False),
        ]
    ),
    "account_splits": pa.schema(
        _text("account_id", "person_id", "role", required=("account_id", "person_id"))
        + [pa.field("split_type", pa.string(), nullable=False),  # empty in a file: primary
           pa.field("percent", PERCENT_TYPE, nullable=False)]
        + _validity()
    ),
}

REFERENCE_TABLES: tuple[str, ...] = tuple(REFERENCE_SCHEMAS)
# Tables a reference folder may leave out (read as empty).
OPTIONAL_REFERENCE_TABLES: tuple[str, ...] = ("account_splits",)
REQUIRED_REFERENCE_TABLES: tuple[str, ...] = tuple(
    t for t in REFERENCE_TABLES if t not in OPTIONAL_REFERENCE_TABLES)

# Column names as they appear in the files (all read as text).
REFERENCE_FILE_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(schema.names) for name, schema in REFERENCE_SCHEMAS.items()
}

# Tables whose rows carry a validity interval.
EFFECTIVE_DATED: tuple[str, ...] = (
    "account_assignments",
    "territory_rules",
    "territory_managers",
    "account_splits",
)

# Business keys (unique per table, with valid_from for effective-dated tables).
REFERENCE_KEYS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id",),
    "account_assignments": ("account_id", "valid_from"),
    "territories": ("territory_id",),
    "territory_rules": ("territory_id", "country", "region", "city", "postal_prefix", "valid_from"),
    "territory_managers": ("territory_id", "valid_from"),
    "people": ("person_id",),
    "fx_rates": ("currency", "rate_date"),
    "account_splits": ("account_id", "person_id", "role", "split_type", "valid_from"),
}

# Fields compared, trimmed and case-insensitively, when matching territory rules.
RULE_MATCH_FIELDS: tuple[tuple[str, str], ...] = (
    # (rule column, account column)
    ("country", "country"),
    ("region", "region"),
    ("city", "city"),
)
