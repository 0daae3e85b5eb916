"""Expectation suite files: ``expectations/<suite>.json``, one per stage.

A suite file is a Great Expectations 1.x ``ExpectationSuite`` in its JSON form
(``name``, ``expectations`` with ``type``/``kwargs``/``meta``) with a few
conventions of ours, checked here without importing GX:

* the suite's ``meta.batches`` names the frames ("batches") the suite is
  validated on, each with ``id_columns`` (columns shown next to failing
  values) and a ``description``;
* the suite's ``meta.parameters`` declares run-time parameters with a
  ``type`` (``timestamp`` or ``number``) and a ``default``; expectations refer to
  them as ``{"$PARAMETER": "<name>"}`` and GX substitutes them at validation;
* every expectation's ``meta`` has a unique ``name`` (what the results call it),
  the ``batch`` it applies to, its ``severity`` (``critical``: attribution would
  be ambiguous or wrong; ``warning``: suspicious) and, when the check is sampled
  or aggregated, ``notes`` saying how.

A file that breaks these rules raises ``UserError`` naming the file (and the
expectation). Files are read once per process (re-read when they change).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pipelines.errors import UserError

SUITES: tuple[str, ...] = (
    "raw_events",
    "enriched_events",
    "territory_revenue",
    "account_manager_revenue",
    "reconciliation",
    "reference",
    "published",
)
SEVERITIES: tuple[str, ...] = ("critical", "warning")
PARAMETER_TYPES: tuple[str, ...] = ("timestamp", "number")
# Environment variable that points the pipeline at another suite directory.
SUITES_DIR_ENV = "REVATTR_EXPECTATIONS_DIR"
DEFAULT_SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RELATIVE = re.compile(r"^now\s*(?:(?P<sign>[+-])\s*(?P<n>\d+)\s*(?P<unit>[dhm]))?$", re.I)
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class Batch:
    """A frame a suite is validated on."""

    name: str
    description: str = ""
    id_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    description: str = ""


@dataclass(frozen=True)
class Expectation:
    """One expectation of a suite file, as written (``config`` is the GX dict)."""

    name: str
    type: str
    batch: str
    severity: str
    position: int  # 0-based position in the file
    config: dict[str, Any] = field(hash=False, compare=False)
    notes: str | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.config.get("kwargs", {})

    def columns(self) -> set[str]:
        """Columns of its frame this expectation reads (kwargs and row condition)."""
        kwargs = self.kwargs
        names: set[str] = set()
        for key in ("column", "column_A", "column_B"):
            if isinstance(kwargs.get(key), str):
                names.add(kwargs[key])
        for key in ("column_list", "column_set"):
            if isinstance(kwargs.get(key), list):
                names.update(c for c in kwargs[key] if isinstance(c, str))
        names.update(_condition_columns(kwargs.get("row_condition")))
        return names

    @property
    def is_row_count(self) -> bool:
        return self.type.startswith("expect_table_row_count")

    @property
    def is_about_columns(self) -> bool:
        """Checks the frame's columns themselves (it needs all of them, absent ones included)."""
        return self.type.startswith("expect_table_column") or self.type == "expect_column_to_exist"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    batches: dict[str, Batch]
    parameters: dict[str, Parameter]
    expectations: tuple[Expectation, ...]

    def by_batch(self) -> dict[str, list[Expectation]]:
        """Expectations grouped by frame, in file order."""
        grouped: dict[str, list[Expectation]] = {}
        for expectation in self.expectations:
            grouped.setdefault(expectation.batch, []).append(expectation)
        return grouped

    def resolve_parameters(self, overrides: dict[str, Any] | None = None,
                           now: dt.datetime | None = None) -> dict[str, Any]:
        """Declared parameters with their defaults, overridden by ``overrides``.

        Timestamps become aware UTC datetimes; a value may be a datetime, a date
        (midnight UTC), an RFC 3339 text or ``now``, ``now+1d``, ``now-12h``;
        numbers become floats. Unknown names raise ``UserError``.
        """
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.parameters))
        if unknown:
            known = ", ".join(sorted(self.parameters)) or "none"
            raise UserError(
                f"unknown parameter(s) {', '.join(unknown)} for expectation suite {self.name}",
                where=str(self.path), hint=f"the suite's parameters are: {known}",
            )
        now = now or dt.datetime.now(dt.UTC)
        values = {}
        for name, parameter in self.parameters.items():
            raw = overrides.get(name, parameter.default)
            try:
                values[name] = coerce_parameter(parameter.type, raw, now)
            except ValueError as error:
                source = "given" if name in overrides else "default"
                raise UserError(f"parameter {name} ({source} value {raw!r}): {error}",
                                where=str(self.path)) from None
        return values


def _condition_columns(condition: Any) -> set[str]:
    """Columns named anywhere in a GX row-condition dict."""
    names: set[str] = set()
    if isinstance(condition, dict):
        column = condition.get("column")
        if isinstance(column, dict) and isinstance(column.get("name"), str):
            names.add(column["name"])
        for value in condition.values():
            if isinstance(value, dict | list):
                names |= _condition_columns(value)
    elif isinstance(condition, list):
        for item in condition:
            names |= _condition_columns(item)
    return names


def coerce_parameter(kind: str, value: Any, now: dt.datetime) -> Any:
    """A parameter value -> its typed form (ValueError when it cannot be)."""
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("is not a number")
        if isinstance(value, int | float | Decimal):
            return float(value)
        try:
            return float(Decimal(str(value).strip()))
        except (InvalidOperation, ValueError):
            raise ValueError("is not a number") from None
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError("has no time zone offset")
            return value.astimezone(dt.UTC)
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        if isinstance(value, str):
            text = value.strip()
            relative = _RELATIVE.match(text)
            if relative:
                if not relative.group("sign"):
                    return now
                delta = dt.timedelta(**{_UNITS[relative.group("unit").lower()]:
                                        int(relative.group("n"))})
                return now + delta if relative.group("sign") == "+" else now - delta
            try:
                parsed = dt.datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(
                    "is not a date, an RFC 3339 timestamp or now[+-]N(d|h|m)") from None
            if len(text) == 10:  # a date: midnight UTC
                return parsed.replace(tzinfo=dt.UTC)
            if parsed.tzinfo is None:
                raise ValueError("has no time zone offset")
            return parsed.astimezone(dt.UTC)
        raise ValueError("is not a timestamp")
    raise ValueError(f"unknown parameter type {kind!r}")


# ------------------------------------------------------------------- loading


def suites_dir(directory: str | Path | None = None) -> Path:
    """Where suite files live: ``directory``, else $REVATTR_EXPECTATIONS_DIR, else the repo's."""
    if directory is not None:
        return Path(directory)
    return Path(os.environ.get(SUITES_DIR_ENV) or DEFAULT_SUITES_DIR)


_CACHE: dict[Path, tuple[tuple[int, int], Suite]] = {}
_CACHE_LOCK = threading.Lock()


def suite_path(name: str, directory: str | Path | None = None) -> Path:
    return suites_dir(directory) / f"{name}.json"


def load_suite(name: str, directory: str | Path | None = None) -> Suite:
    """Read and check ``<suites dir>/<name>.json`` (cached while the file is unchanged)."""
    path = suite_path(name, directory)
    try:
        stat = path.stat()
    except OSError:
        raise UserError(
            f"no expectation suite file for suite {name!r}", where=str(path),
            hint=f"suite files are {', '.join(s + '.json' for s in SUITES)} in {path.parent}",
        ) from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _CACHE_LOCK:
        cached = _CACHE.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the expectation suite file: {error}",
                        where=str(path)) from None
    suite = parse_suite(text, path, expected_name=name)
    with _CACHE_LOCK:
        _CACHE[path] = (stamp, suite)
    return suite


def load_all(directory: str | Path | None = None) -> dict[str, Suite]:
    return {name: load_suite(name, directory) for name in SUITES}


def _fail(path: Path, what: str, where: str | None = None, hint: str | None = None) -> UserError:
    return UserError(what, where=f"{path}: {where}" if where else str(path), hint=hint)


def parse_suite(text: str, path: Path, expected_name: str | None = None) -> Suite:
    """Check a suite file's text; raises ``UserError`` naming ``path`` and the culprit."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"not valid JSON: {error.msg}",
                        where=f"{path}:{error.lineno}:{error.colno}",
                        hint="fix the suite file's syntax") from None
    if not isinstance(document, dict):
        raise _fail(path, "a suite file must hold one JSON object")
    name = document.get("name")
    if not isinstance(name, str) or (expected_name is not None and name != expected_name):
        raise _fail(path, f"the suite's name is {name!r}",
                    hint=f"set \"name\": \"{expected_name or path.stem}\" (the file's name)")
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail(path, "meta must be an object")
    batches = _batches(path, meta.get("batches"))
    parameters = _parameters(path, meta.get("parameters", {}))
    raw_expectations = document.get("expectations")
    if not isinstance(raw_expectations, list) or not raw_expectations:
        raise _fail(path, "the suite has no expectations", hint="add an \"expectations\" list")
    expectations = []
    seen: set[str] = set()
    for position, raw in enumerate(raw_expectations):
        expectation = _expectation(path, position, raw, batches, parameters)
        if expectation.name in seen:
            raise _fail(path, f"expectation name {expectation.name!r} is used twice",
                        where=f"expectation #{position + 1}", hint="names must be unique")
        seen.add(expectation.name)
        expectations.append(expectation)
    used = {e.batch for e in expectations}
    for batch in batches.values():
        if batch.name not in used:
            raise _fail(path, f"batch {batch.name!r} has no expectation",
                        hint="remove it from meta.batches or add expectations for it")
    return Suite(name=name, path=path, description=str(meta.get("description", "")),
                 batches=batches, parameters=parameters, expectations=tuple(expectations))


def _batches(path: Path, raw: Any) -> dict[str, Batch]:
    if not isinstance(raw, dict) or not raw:
        raise _fail(path, "meta.batches must name the frames the suite is validated on",
                    hint='e.g. "batches": {"events": {"id_columns": ["event_id"]}}')
    batches = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise _fail(path, f"meta.batches.{name} must be an object")
        ids = spec.get("id_columns", [])
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            raise _fail(path, f"meta.batches.{name}.id_columns must be a list of column names")
        batches[name] = Batch(name, str(spec.get("description", "")), tuple(ids))
    return batches


def _parameters(path: Path, raw: Any) -> dict[str, Parameter]:
    if not isinstance(raw, dict):
        raise _fail(path, "meta.parameters must be an object")
    parameters = {}
    probe = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for name, spec in raw.items():
        if not isinstance(spec, dict) or spec.get("type") not in PARAMETER_TYPES or (
                "default" not in spec):
            raise _fail(path, f"parameter {name!r} needs a type ({' or '.join(PARAMETER_TYPES)})"
                        " and a default", where="meta.parameters")
        try:
            coerce_parameter(spec["type"], spec["default"], probe)
        except ValueError as error:
            raise _fail(path, f"parameter {name!r}: default {spec['default']!r} {error}",
                        where="meta.parameters") from None
        parameters[name] = Parameter(name, spec["type"], spec["default"],
                                     str(spec.get("description", "")))
    return parameters


def _parameter_refs(value: Any) -> set[str]:
    refs: set[str] = set()
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            refs.add(str(value["$PARAMETER"]))
        else:
            for item in value.values():
                refs |= _parameter_refs(item)
    elif isinstance(value, list):
        for item in value:
            refs |= _parameter_refs(item)
    return refs


def _expectation(path: Path, position: int, raw: Any, batches: dict[str, Batch],
                 parameters: dict[str, Parameter]) -> Expectation:
    where = f"expectation #{position + 1}"
    if not isinstance(raw, dict):
        raise _fail(path, "an expectation must be an object", where=where)
    meta = raw.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        where = f"expectation #{position + 1} ({meta['name']})"
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind.startswith("expect_"):
        raise _fail(path, f"type {kind!r} is not an expectation type", where=where,
                    hint="e.g. \"type\": \"expect_column_values_to_not_be_null\"")
    if not isinstance(raw.get("kwargs"), dict):
        raise _fail(path, "kwargs must be an object", where=where)
    if not isinstance(meta, dict):
        raise _fail(path, "meta must be an object with name, batch and severity", where=where)
    name = meta.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(path, f"meta.name {name!r} is not a lower_snake_case name", where=where)
    if meta.get("batch") not in batches:
        raise _fail(path, f"meta.batch {meta.get('batch')!r} is not one of the suite's batches",
                    where=where, hint=f"use one of: {', '.join(batches)}")
    if meta.get("severity") not in SEVERITIES:
        raise _fail(path, f"meta.severity {meta.get('severity')!r} is not critical or warning",
                    where=where)
    notes = meta.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise _fail(path, "meta.notes must be text", where=where)
    if "severity" in raw and raw["severity"] != meta["severity"]:
        raise _fail(path, "the expectation's severity differs from meta.severity", where=where,
                    hint="write the severity once, in meta.severity")
    undeclared = sorted(_parameter_refs(raw["kwargs"]) - set(parameters))
    if undeclared:
        raise _fail(path, f"undeclared parameter(s) {', '.join(undeclared)}", where=where,
                    hint="declare them in the suite's meta.parameters")
    return Expectation(name=name, type=kind, batch=meta["batch"], severity=meta["severity"],
                       position=position, config=raw, notes=notes)
