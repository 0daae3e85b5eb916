"""Read a Salesforce export folder: one ``<Object>.csv`` per object, API field names in
the header row (Data Export Service, Data Loader, ``sf data export bulk``).

Values are read as text with pyarrow's CSV reader (quoted values may span lines, as
Description fields do); each row keeps its physical line (header = line 1) so a
rejected row can be found. ``IsDeleted=true`` rows (an "Export All") are rejected,
not mapped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from pipelines.errors import UserError

# The objects the importer reads, and the fields each needs (beyond Id).
OBJECTS: dict[str, tuple[str, ...]] = {
    "Opportunity": ("Id", "AccountId", "StageName", "Amount", "CloseDate", "IsClosed", "IsWon",
                    "OwnerId", "CreatedDate", "LastModifiedDate"),
    "OpportunityHistory": ("Id", "OpportunityId", "StageName", "Amount", "CreatedDate"),
    "OpportunityStage": ("MasterLabel", "IsClosed", "IsWon"),
    "Account": ("Id", "Name"),
    "AccountHistory": ("Id", "AccountId", "Field", "OldValue", "NewValue", "CreatedDate"),
    "User": ("Id",),
    "Territory2": ("Id", "Name"),
    "Territory2Type": ("Id",),
    "Territory2Model": ("Id", "State"),
    "UserTerritory2Association": ("Id", "UserId", "Territory2Id"),
    "ObjectTerritory2Association": ("Id", "ObjectId", "Territory2Id"),
    "DatedConversionRate": ("IsoCode", "ConversionRate", "StartDate"),
    "CurrencyType": ("IsoCode", "ConversionRate"),
}
REQUIRED_OBJECTS: tuple[str, ...] = ("Opportunity", "Account", "User")


@dataclass(frozen=True)
class Reject:
    """One export row the importer could not map (or used only in part)."""

    file: str
    line: int | None
    record_id: str | None
    reason: str
    detail: str


@dataclass
class SfObject:
    """The rows of one exported object: ``rows[i]`` (field -> text or None) is at
    ``lines[i]`` of ``path``."""

    name: str
    path: Path | None
    rows: list[dict[str, str | None]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    @property
    def file(self) -> str:
        return self.path.name if self.path else f"{self.name}.csv"

    def reject(self, i: int, reason: str, detail: str) -> Reject:
        return Reject(self.file, self.lines[i], self.rows[i].get("Id"), reason, detail)


def find_object_files(folder: Path) -> dict[str, Path]:
    """``Object`` -> its CSV in ``folder`` (file names matched case-insensitively)."""
    by_name = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    return {name: by_name[f"{name.lower()}.csv"] for name in OBJECTS
            if f"{name.lower()}.csv" in by_name}


def read_export(folder: str | Path) -> tuple[dict[str, SfObject], list[Reject]]:
    """Every known object of ``folder`` (absent optional ones are empty ``SfObject``s)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"export folder {folder} does not exist",
                        hint="pass the unzipped Data Export folder holding Opportunity.csv, ...")
    files = find_object_files(folder)
    missing = [name for name in REQUIRED_OBJECTS if name not in files]
    if missing:
        raise UserError(f"missing {', '.join(m + '.csv' for m in missing)}", where=str(folder),
                        hint="export at least Opportunity, Account and User "
                        "(docs/import-salesforce.md)")
    objects: dict[str, SfObject] = {}
    rejects: list[Reject] = []
    for name in OBJECTS:
        if name in files:
            obj, dropped = read_object(name, files[name])
            objects[name] = obj
            rejects += dropped
        else:
            objects[name] = SfObject(name, None)
    return objects, rejects


def read_object(name: str, path: Path) -> tuple[SfObject, list[Reject]]:
    """One object's CSV -> rows of text (empty -> None), deleted rows rejected."""
    header = _header(path)
    needed = [f for f in OBJECTS[name] if f not in header]
    if needed:
        raise UserError(f"{name}.csv has no column(s) {', '.join(needed)}", where=f"{path}:1",
                        hint=f"export {name} with the API field names {', '.join(OBJECTS[name])}")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UserError(f"not a readable CSV file: {exc}", where=str(path),
                        hint="every row needs the columns of the header row, in UTF-8") from None
    rows = [{k: (v.strip() or None) if v is not None else None for k, v in r.items()}
            for r in table.to_pylist()]
    lines = _record_lines(path, len(rows))
    obj, rejects = SfObject(name, path), []
    for row, line in zip(rows, lines, strict=True):
        if (row.get("IsDeleted") or "").lower() == "true":
            rejects.append(Reject(path.name, line, row.get("Id"), "deleted",
                                  f"{name} row has IsDeleted=true (in the recycle bin): "
                                  "not imported"))
            continue
        obj.rows.append(row)
        obj.lines.append(line)
    return obj, rejects


def _header(path: Path) -> list[str]:
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the header row: {exc}", where=f"{path}:1") from None
    if not header:
        raise UserError("the file is empty", where=f"{path}:1",
                        hint="the first line must be the header row of API field names")
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        raise UserError("a column appears twice in the header row", where=f"{path}:1")
    return names


def _record_lines(path: Path, count: int) -> list[int]:
    """Physical line where each non-blank record starts. Fast path: no value spans lines."""
    with path.open("rb") as handle:
        physical = [n for n, text in enumerate(handle.read().splitlines(), start=1)
                    if text.strip(b"\xef\xbb\xbf \t")]
    if len(physical) == count + 1:
        return physical[1:]
    starts: list[int] = []
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        end = 0
        for record in reader:
            start, end = end + 1, reader.line_num
            if record and end > 1:
                starts.append(start)
    return starts[:count] + [0] * (count - len(starts))
