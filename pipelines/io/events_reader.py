"""Event files (JSONL, CSV, Parquet) -> ``RAW_EVENT_SCHEMA`` record batches.

Every batch this module yields has exactly ``schemas.events.RAW_EVENT_SCHEMA``:
the contract fields as strings (JSON ``null``, a missing key, a missing column
or an empty CSV cell are all null), ``source`` (the path as given),
``position``, ``raw`` and ``reason``/``detail``. Typing and the contract rules
are left to ``pipelines.rules.validate``; this layer only says whether a record
could be *read*:

* ``malformed``: not valid JSON, not a JSON object, a field given twice, a CSV
  row with the wrong number of fields.
* ``bad_type``: a contract field holding a non-string JSON value
  (``"deal_id": 123``, an object, an array, a boolean). ``amount`` may be a JSON
  number: it is kept as the exact text of the number, never through a float.

``position`` is 1-based: the line number for JSONL; the line on which the record
starts for CSV (the header is line 1, so the first data row is usually 2); the
row number for Parquet. Blank (empty or whitespace-only) lines are not records:
they are skipped but still counted, so positions stay file line numbers.

``raw`` is the line text (without its line terminator) for JSONL. For CSV it is
rebuilt from the parsed cells (all columns of the header, RFC 4180 quoting), so
it is equivalent to, not byte-identical with, the original row; rows with the
wrong number of fields keep their original text. Parquet has no text form:
``raw`` is null.

A JSONL line or CSV record that is not UTF-8, or longer than ``MAX_RECORD_BYTES``, is
``malformed`` (the others are read); an oversized one is never parsed nor held whole.
``raw`` is capped for the quarantine (``rules.raw_text``). A file that cannot be read at
all (missing, unreadable, a CSV header that is not UTF-8, corrupt Parquet) raises
``pipelines.errors.UserError``.

JSONL design (the hot path, no Python loop per line on clean data): the file
is read in byte chunks ending on a newline (the partial last line is read again
with the next chunk); one ``split_pattern`` gives every line's text (``raw``)
and offsets; each run of up to ``batch_rows`` lines is parsed zero-copy by a
single ``pyarrow.json.read_json`` call with an all-string schema, and the row
count must equal the line count (a line holding two objects cannot shift rows).
When that call fails, Arrow's error names the failing row (single block, so the
row counts from the start of the region): that line is read with ``json.loads``
to say why (``malformed``/``bad_type``), parsing resumes after it, and finally
the run is parsed once more with the bad lines blanked out. Dense runs of bad
lines are screened with ``json.loads`` instead of one Arrow call per line; any
disagreement between Arrow and ``json.loads`` falls back to bisection down to
pieces of 32 lines read with ``json.loads``. Lines that do not start with ``{``
are never given to Arrow (blanked, then read by ``json.loads``): Arrow would
read ``null`` as a row of nulls, and pyarrow 25 segfaults on a block whose
first row is ``null``.

JSON-number amounts: the first time Arrow reports a numeric ``amount`` in a
file, amounts are quoted before parsing for the rest of the file
(``"amount": 12.50`` -> ``"amount": "12.50"``, the exact text, vectorised with
numpy; byte-identical to the regex ``AMOUNT_NUMBER``, which is used for the
rest of the chunk in progress). Files with string amounts never pay for it.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pj
import pyarrow.parquet as pq

from pipelines.errors import UserError
from pipelines.rules.raw_text import cap_raw, cap_text, cut_text, oversized_detail
from schemas.events import (
    EVENT_FIELDS,
    MAX_NESTING,
    MAX_RECORD_BYTES,
    RAW_EVENT_SCHEMA,
    RAW_KEPT_CHARS,
)

FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # one object per line, like .jsonl (not a JSON array)
    ".csv": "csv",
    ".parquet": "parquet",
}
SUPPORTED = ", ".join(sorted(FORMATS))

_FIELD_SCHEMA = pa.schema([pa.field(name, pa.string()) for name in EVENT_FIELDS])

# JSONL tuning.
_FIRST_READ = 4 << 20  # bytes of the first read; later reads aim at batch_rows lines
_MIN_READ = 1 << 20
_MAX_READ = 64 << 20  # bounds the text held at once (and well under int32 offsets)
_LONG_LINE_PIECE = 1 << 20  # bytes per read while streaming past an oversized line
_LINE_BY_LINE = 32  # bisection stops at this many lines and classifies each one
_DENSE = 4  # a bad line this close after another one ...
_SCREEN = 64  # ... has the next lines screened with json.loads
AMOUNT_NUMBER = (
    r'("amount"[ \t]*:[ \t]*)'
    r"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    r"([ \t]*[,}])"
)
_AMOUNT_QUOTED = r'\1"\2"\3'
_NUMERIC_AMOUNT_ERROR = "Column(/amount) changed from string to number"
_ROW = re.compile(r" in row (\d+)$")
_PARSE_OPTIONS = pj.ParseOptions(
    explicit_schema=_FIELD_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)
_UTF8_BOM = b"\xef\xbb\xbf"
_CSV_SCAN_CHUNK = 16 << 20  # bytes per step of the CSV line-number scan


# --------------------------------------------------------------------------- paths


def expand_event_paths(pattern: str) -> list[str]:
    """The event files named by ``pattern``, sorted.

    ``pattern`` is a file, a directory (every supported file directly in it,
    hidden files excepted) or a glob (``**`` recurses). Globs and directories
    keep only supported extensions; a file named explicitly must have one. A URL
    (``gs://bucket/events/*.jsonl``) is a glob listed through Beam's FileSystems.
    """
    hint = f"give a file, a directory or a glob of {SUPPORTED} files"
    if "://" in pattern:
        return _remote_event_paths(pattern, hint)
    expanded = os.path.expanduser(pattern)
    if os.path.isdir(expanded):
        try:
            names = os.listdir(expanded)
        except OSError as exc:
            raise UserError(f"cannot list the events directory: {exc.strerror}",
                            where=pattern, hint="check its permissions") from None
        candidates = [os.path.join(expanded, name) for name in names
                      if not name.startswith((".", "_"))]
    elif os.path.isfile(expanded):
        if _format_of(expanded) is None:
            raise UserError(
                f"unsupported event file type (expected {SUPPORTED})", where=pattern, hint=hint
            )
        return [expanded]
    else:
        candidates = glob.glob(expanded, recursive=True)
    paths = sorted({p for p in candidates if os.path.isfile(p) and _format_of(p) is not None})
    if not paths:
        raise UserError(f"no event files match {pattern!r}", hint=hint)
    return paths


def _remote_event_paths(pattern: str, hint: str) -> list[str]:
    from pipelines.io.files import match

    try:
        matched = match(pattern)
    except Exception as error:  # noqa: BLE001 - BeamIOError, a missing filesystem extra...
        raise UserError(f"cannot list the event files: {str(error).splitlines()[0]}",
                        where=pattern,
                        hint="check the URL and that Beam's extra for it is installed "
                             "(e.g. apache-beam[gcp])") from None
    paths = [p for p in matched if _format_of(p) is not None]
    if not paths:
        raise UserError(f"no event files match {pattern!r}", hint=hint)
    return paths


def _format_of(path: str) -> str | None:
    return FORMATS.get(os.path.splitext(path)[1].lower())


# --------------------------------------------------------------------------- entry point


Opener = Callable[[str], BinaryIO]  # path -> binary reader (the Beam graph: FileSystems)


def iter_raw_batches(
    path: str, batch_rows: int = 65536, *, use_threads: bool = True,
    opener: Opener | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_rows`` rows in ``RAW_EVENT_SCHEMA``.

    The format is chosen by extension (``.jsonl``/``.ndjson``/``.json``,
    ``.csv``, ``.parquet``). Records come out in file order (JSONL lines that
    are not UTF-8, quarantined as ``malformed`` with no field, come first in their
    chunk). ``use_threads`` lets Arrow parse a JSONL batch on several cores (its shared
    CPU pool). ``opener`` opens the file (default: the local filesystem; the Beam graph
    passes Beam's ``FileSystems``).
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    fmt = _format_of(path)
    if fmt is None:
        raise UserError(
            f"unsupported event file type (expected {SUPPORTED})", where=path,
            hint="rename the file or convert it to JSONL, CSV or Parquet",
        )
    if fmt == "jsonl":
        yield from _JsonlReader(path, batch_rows, use_threads, opener).batches()
    elif fmt == "csv":
        yield from _iter_csv(path, batch_rows, opener)
    else:
        yield from _iter_parquet(path, batch_rows, opener)


def _unreadable(path: str, exc: BaseException) -> UserError:
    if isinstance(exc, FileNotFoundError):
        return UserError("event file not found", where=path, hint="check the events path")
    if isinstance(exc, PermissionError):
        return UserError("event file is not readable (permission denied)", where=path,
                         hint="check the file's permissions")
    if isinstance(exc, IsADirectoryError):
        return UserError("expected an event file, found a directory", where=path,
                         hint="pass the directory as the events pattern instead")
    reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [repr(exc)])[0]
    return UserError(f"cannot read event file: {reason}", where=path,
                     hint="check that the file exists and is readable")


def _open(path: str, opener: Opener | None = None) -> BinaryIO:
    try:
        if opener is not None:
            return opener(path)
        return open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block
    except OSError as exc:
        raise _unreadable(path, exc) from None


# --------------------------------------------------------------------------- batch assembly


def _assemble(
    fields: dict[str, pa.Array],
    n: int,
    source: str,
    positions: np.ndarray | pa.Array,
    raw: pa.Array | None,
    reason: pa.Array | None = None,
    detail: pa.Array | None = None,
    raw_capped: bool = False,
) -> pa.RecordBatch:
    """One RAW_EVENT_SCHEMA batch; absent fields become null columns. ``raw`` is capped
    for the quarantine (``rules.raw_text``) unless the caller already did."""
    null = pa.nulls(n, pa.string())
    if raw is not None and not raw_capped:
        raw = cap_raw(raw)
    columns = [fields.get(name, null) for name in EVENT_FIELDS]
    columns += [
        pa.repeat(pa.scalar(source, pa.string()), n),
        pa.array(positions, pa.int64()),
        null if raw is None else raw,
        null if reason is None else reason,
        null if detail is None else detail,
    ]
    return pa.RecordBatch.from_arrays(columns, schema=RAW_EVENT_SCHEMA)


def _valid_utf8(buf: bytes, cut: int) -> pa.StringArray | None:
    """``buf[:cut]`` as a one-element string array; None if it is not UTF-8."""
    whole = _string_array(pa.py_buffer(buf), np.array([0, cut], dtype=np.int32))
    try:
        whole.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return whole


def _blank_invalid_lines(buf: bytes, cut: int) -> tuple[bytes, list[tuple[int, bytes, int]]]:
    """``buf`` with each line of ``buf[:cut]`` that is not UTF-8 overwritten by spaces
    (a blank line: not a record; offsets unchanged), and those lines as (index, bytes,
    offset of the first bad byte)."""
    lines = buf[:cut].split(b"\n")
    invalid = []
    for index, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            invalid.append((index, line, exc.start))
            lines[index] = b" " * len(line)
    return b"\n".join(lines) + buf[cut:], invalid


def _not_utf8(bad: int, what: str = "line") -> str:
    """The ``malformed`` detail of a line whose byte ``bad`` (0-based) is not UTF-8."""
    return f"{what} is not valid UTF-8 (byte {bad + 1})"


def _string_array(data: pa.Buffer, offsets: np.ndarray) -> pa.StringArray:
    """A zero-copy string array over ``data`` with int32 ``offsets``."""
    return pa.StringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets.astype(np.int32, copy=False)), data
    )


# --------------------------------------------------------------------------- JSONL


@dataclass
class _Line:
    """One line as json.loads read it: its fields, or the reason and detail."""

    fields: dict[str, str | None] | None
    reason: str | None = None
    detail: str | None = None


_JSON_TYPES = {dict: "an object", list: "an array", bool: "a boolean", int: "a number",
               float: "a number"}


class _JsonlReader:
    def __init__(self, path: str, batch_rows: int, use_threads: bool = True,
                 opener: Opener | None = None) -> None:
        self.path = path
        self.opener = opener
        self.batch_rows = batch_rows
        self.use_threads = use_threads
        self.quote_amounts = False  # set once Arrow reports a numeric amount in this file
        self.chunk_quoted = False  # the current chunk's numeric amounts are already quoted
        self.block_size = 1 << 20

    # ---- reading

    def batches(self) -> Iterator[pa.RecordBatch]:
        lines_before = 0
        read_size = _FIRST_READ
        with _open(self.path, self.opener) as handle:
            try:
                if handle.read(len(_UTF8_BOM)) != _UTF8_BOM:
                    handle.seek(0)
                eof = False
                while not eof:
                    block = handle.read(read_size)
                    if not block:
                        break
                    while len(block) < read_size:  # a short read: is it the end of file?
                        more = handle.read(read_size - len(block))
                        if not more:
                            eof = True
                            break
                        block += more
                    # Whole lines only: the partial last line is read again next time
                    # (a seek back instead of a copy of the block).
                    cut = block.rfind(b"\n") + 1
                    if eof and cut < len(block):
                        block, cut = block + b"\n", len(block) + 1
                    elif cut == 0 and len(block) > MAX_RECORD_BYTES:  # no record is this
                        yield self._long_line(handle, block, lines_before)  # long: skip it
                        lines_before += 1
                        continue
                    elif cut == 0:  # one line longer than the read: read more at once
                        handle.seek(-len(block), os.SEEK_CUR)
                        read_size *= 2
                        continue
                    elif cut < len(block):
                        handle.seek(cut - len(block), os.SEEK_CUR)
                    n_lines = yield from self._chunk(block, cut, lines_before)
                    read_size = int(min(_MAX_READ, max(_MIN_READ, read_size,
                                                       cut / max(n_lines, 1) * self.batch_rows)))
                    lines_before += n_lines
            except OSError as exc:
                raise _unreadable(self.path, exc) from None

    def _chunk(self, buf: bytes, cut: int, lines_before: int):
        """Parse the complete lines in ``buf[:cut]``; yields batches, returns the line count.

        Bytes after ``cut`` (the next chunk's first partial line) are ignored.
        """
        if buf.find(b"\r", 0, cut) >= 0:
            buf = buf[:cut].replace(b"\r\n", b"\n")
            cut = len(buf)
        whole = _valid_utf8(buf, cut)
        invalid: list[tuple[int, bytes, int]] = []
        if whole is None:  # rare: the lines that are not UTF-8 are quarantined, not the file
            buf, invalid = _blank_invalid_lines(buf, cut)
            whole = _valid_utf8(buf, cut)
            yield self._invalid_lines(invalid, lines_before)
        # One vectorised split gives every line's text (without "\n") and offsets.
        lines = pc.split_pattern(whole, "\n").values
        lines = lines.slice(0, len(lines) - 1)  # the empty string after the final "\n"
        n_lines = len(lines)
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[
            lines.offset:lines.offset + n_lines + 1]
        lengths = np.diff(offsets)
        index = np.arange(n_lines, dtype=np.int64)
        starts = offsets[:-1] + index  # in buf: each removed "\n" shifts by one
        ends = offsets[1:] + index  # each line's "\n" in buf
        keep = lengths > 0
        keep[[index for index, _, _ in invalid]] = False  # quarantined above, now blank
        data = np.frombuffer(buf, dtype=np.uint8, count=cut)
        oversized = np.flatnonzero(keep & (lengths > MAX_RECORD_BYTES))
        if len(oversized):  # rare: quarantined unread, then blanked for the parser
            records = []
            blanked = bytearray(buf)
            for i in oversized:
                line = bytes(blanked[starts[i]:ends[i]])
                if line.strip(b" \t\r"):
                    records.append((int(i), line))
                blanked[starts[i]:ends[i]] = b" " * int(ends[i] - starts[i])
                keep[i] = False
            if records:
                yield self._oversized_lines(records, lines_before)
            buf = bytes(blanked)
            whole = _string_array(pa.py_buffer(buf), np.array([0, cut], dtype=np.int32))
            data = np.frombuffer(buf, dtype=np.uint8, count=cut)
        # Whitespace-only lines are blank too; candidates start with a space or tab.
        maybe_blank = np.flatnonzero(keep & np.isin(data[np.minimum(starts, cut - 1)],
                                                    (9, 13, 32)))
        for i in maybe_blank:
            if not buf[starts[i]:ends[i]].strip(b" \t\r"):
                keep[i] = False
        kept = np.flatnonzero(keep)
        if len(kept) == 0:
            return n_lines
        longest = int(lengths[kept].max())
        if longest * 2 + 2 > self.block_size:
            self.block_size = longest * 2 + 2

        # raw, zero-copy over the split's data: blank lines are empty strings, so the
        # kept lines' offsets stay contiguous once they are dropped.
        if not np.all(keep[lengths > 0]):  # whitespace-only or oversized lines dropped
            raw_all = lines.filter(pa.array(keep))
        else:
            raw_offsets = np.append(offsets[kept], offsets[kept[-1] + 1])
            raw_all = _string_array(lines.buffers()[2], raw_offsets)

        # A line that does not open an object is never given to Arrow: it is not a
        # record anyway, and pyarrow 25 crashes (segfault) on a block whose first
        # row is `null`. Such lines are read by json.loads and blanked for Arrow.
        first = data[starts[kept]]
        suspect = first != ord("{")
        for j in np.flatnonzero(suspect & np.isin(first, (9, 13, 32))):
            line_text = buf[starts[kept[j]]:ends[kept[j]]]
            suspect[j] = not line_text.lstrip(b" \t\r").startswith(b"{")

        # Numeric amounts (known from an earlier chunk): quote them for the whole chunk
        # at once; the line positions move with the inserted quotes.
        self.chunk_quoted = self.quote_amounts
        if self.quote_amounts:
            pybuf, moved = _quote_amount_numbers(whole, buf, cut)
            starts, ends = moved(starts), moved(ends)
        else:
            pybuf = pa.py_buffer(buf)
        if suspect.any():
            blanked = np.frombuffer(pybuf, dtype=np.uint8).copy()
            for i in kept[suspect]:
                blanked[starts[i]:ends[i]] = 32
            pybuf = pa.py_buffer(blanked)
        for lo in range(0, len(kept), self.batch_rows):
            piece = kept[lo:lo + self.batch_rows]
            raw = raw_all.slice(lo, len(piece))
            positions = piece + (lines_before + 1)
            yield self._piece(pybuf, starts, ends, piece, raw, positions,
                              suspect[lo:lo + self.batch_rows])
        return n_lines

    def _invalid_lines(self, invalid: list[tuple[int, bytes, int]],
                       lines_before: int) -> pa.RecordBatch:
        """``malformed`` records for the lines that are not UTF-8: (index in the chunk,
        bytes, offset of the first bad byte). ``raw`` shows the bytes decoded with U+FFFD."""
        n = len(invalid)
        return _assemble(
            {}, n, self.path,
            np.array([index + lines_before + 1 for index, _, _ in invalid], dtype=np.int64),
            pa.array([cap_text(text.decode("utf-8", errors="replace"), original=text)
                      for _, text, _ in invalid], pa.string()),
            pa.array(["malformed"] * n, pa.string()),
            pa.array([_not_utf8(bad) for _, _, bad in invalid], pa.string()),
            raw_capped=True,
        )

    def _oversized_lines(self, records: list[tuple[int, bytes]],
                         lines_before: int) -> pa.RecordBatch:
        """``malformed`` records for the (valid UTF-8) lines longer than
        ``MAX_RECORD_BYTES``: (index in the chunk, bytes). They are never parsed."""
        n = len(records)
        return _assemble(
            {}, n, self.path,
            np.array([index + lines_before + 1 for index, _ in records], dtype=np.int64),
            pa.array([cap_text(line.decode("utf-8"), original=line) for _, line in records],
                     pa.string()),
            pa.array(["malformed"] * n, pa.string()),
            pa.array([oversized_detail(len(line)) for _, line in records], pa.string()),
            raw_capped=True,
        )

    def _long_line(self, handle: BinaryIO, head: bytes, lines_before: int) -> pa.RecordBatch:
        """The ``malformed`` record for a line longer than ``MAX_RECORD_BYTES`` that
        starts with ``head`` (no newline in it): read on to its end piece by piece,
        never held whole, then the handle is left just after its newline. Its verdict
        is the one ``_chunk`` gives (not UTF-8, else oversized)."""
        digest = hashlib.sha256()
        check = codecs.getincrementaldecoder("utf-8")()
        show = codecs.getincrementaldecoder("utf-8")(errors="replace")
        shown: list[str] = []
        n_shown = size = 0
        bad: int | None = None
        cr = b""  # a trailing CR held back: part of a CRLF terminator or of the line
        piece = head
        while True:
            end = piece.find(b"\n")
            part = cr + (piece if end < 0 else piece[:end])
            if end >= 0:
                handle.seek(end + 1 - len(piece), os.SEEK_CUR)
                cr = b""
                if part.endswith(b"\r"):
                    part = part[:-1]
            else:
                cr, part = (b"\r", part[:-1]) if part.endswith(b"\r") else (b"", part)
            digest.update(part)
            if bad is None:
                try:
                    check.decode(part, final=end >= 0 or not piece)
                except UnicodeDecodeError as exc:
                    bad = size + exc.start
            if n_shown < RAW_KEPT_CHARS + 1:
                text = show.decode(part)
                shown.append(text)
                n_shown += len(text)
            size += len(part)
            if end >= 0 or not piece:
                break
            piece = handle.read(_LONG_LINE_PIECE)
        raw = cut_text("".join(shown), size, digest.hexdigest())
        detail = oversized_detail(size) if bad is None else _not_utf8(bad)
        return _assemble(
            {}, 1, self.path, np.array([lines_before + 1], dtype=np.int64),
            pa.array([raw], pa.string()), pa.array(["malformed"], pa.string()),
            pa.array([detail], pa.string()), raw_capped=True)

    # ---- parsing

    def _piece(self, pybuf: pa.Buffer, starts: np.ndarray, ends: np.ndarray,
               piece: np.ndarray, raw: pa.Array, positions: np.ndarray,
               suspect: np.ndarray) -> pa.RecordBatch:
        """One output batch for the kept lines ``piece`` (indices into starts/ends);
        ``suspect`` marks the lines that do not open an object (blanked in pybuf)."""
        n = len(piece)
        if not suspect.any():
            fields, rejected = self._parse_lines(pybuf, starts, ends, piece, raw)
        else:
            parsed = ~suspect
            fields, sub_rejected = self._parse_lines(pybuf, starts, ends, piece[parsed],
                                                     raw.filter(pa.array(parsed)))
            index = np.full(n, -1, dtype=np.int64)
            index[parsed] = np.arange(int(parsed.sum()))
            take = pa.array(index, mask=suspect)
            fields = {name: values.take(take) for name, values in fields.items()}
            where = np.flatnonzero(parsed)
            rejected = {int(where[i]): line for i, line in sub_rejected.items()}
            rejected.update({int(i): _read_line(raw[int(i)].as_py())
                             for i in np.flatnonzero(suspect)})
        rejected.update(_verified(raw, fields, rejected))
        if not rejected:
            return _assemble(fields, n, self.path, positions, raw)
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        for i, line in rejected.items():
            reasons[i], details[i] = line.reason, line.detail
        return _assemble(fields, n, self.path, positions, raw,
                         pa.array(reasons, pa.string()), pa.array(details, pa.string()))

    def _parse_lines(self, pybuf: pa.Buffer, starts: np.ndarray, ends: np.ndarray,
                     piece: np.ndarray, raw: pa.Array,
                     ) -> tuple[dict[str, pa.Array], dict[int, _Line]]:
        """(fields for every line of ``piece``, {index: rejected line}).

        Rejected lines have null fields. Lines only json.loads reads (Arrow refuses
        them, e.g. a lone surrogate escape) carry json.loads' fields.
        """
        n = len(piece)
        if n == 0:
            return {name: pa.nulls(0, pa.string()) for name in EVENT_FIELDS}, {}
        region = _region(pybuf, starts, ends, piece)
        table = self._read_json(region)
        if table is not None and table.num_rows == n:  # the hot path: all lines good
            return {name: table.column(name).combine_chunks() for name in EVENT_FIELDS}, {}

        # Some line is bad: find the lines Arrow refuses, then parse the rest in one
        # call with those lines blanked out (Arrow skips whitespace-only lines).
        odd = self._find_refused(pybuf, starts, ends, piece, raw)
        good = np.ones(n, dtype=bool)
        good[list(odd)] = False
        table = None
        if good.any():
            blanked = np.frombuffer(region, dtype=np.uint8).copy()
            begin = starts[piece[0]]
            for i in odd:
                blanked[starts[piece[i]] - begin:ends[piece[i]] - begin] = 32
            table = self._read_json(pa.py_buffer(blanked))
            if table is None or table.num_rows != int(good.sum()):
                # Arrow and the isolation disagree (e.g. two objects on one line):
                # settle it line by line with bisection, the slow but sure way.
                return self._by_bisection(pybuf, starts, ends, piece, raw)
        index = np.full(n, -1, dtype=np.int64)
        index[good] = np.arange(int(good.sum()))
        take = pa.array(index, mask=~good)
        readable = sorted(i for i, line in odd.items() if line.fields is not None)
        readable_mask = np.zeros(n, dtype=bool)
        readable_mask[readable] = True
        fields = {}
        for name in EVENT_FIELDS:
            if table is None:
                values = pa.nulls(n, pa.string())
            else:
                values = table.column(name).combine_chunks().take(take)
            if readable:
                values = pc.replace_with_mask(values, pa.array(readable_mask), pa.array(
                    [odd[i].fields.get(name) for i in readable], pa.string()))
            fields[name] = values
        return fields, {i: line for i, line in odd.items() if line.reason}

    def _find_refused(self, pybuf: pa.Buffer, starts: np.ndarray, ends: np.ndarray,
                      piece: np.ndarray, raw: pa.Array) -> dict[int, _Line]:
        """{index in piece: json.loads verdict} for the lines Arrow refuses.

        Arrow's error names the failing row (one block, so the row counts from
        the start of the region): the lines before it are good, the named line is
        read with json.loads, and parsing resumes after it. A named line that
        json.loads reads fine keeps json.loads' fields, once the lines before it
        are confirmed to parse to exactly as many rows. Where bad lines are
        dense, the next lines are screened with json.loads instead of one Arrow
        call per bad line.
        """
        odd: dict[int, _Line] = {}
        n = len(piece)
        lo = 0
        screen = _SCREEN
        while lo < n:
            failed_at = self._first_error(_region(pybuf, starts, ends, piece[lo:]))
            if failed_at is None:
                break
            i = lo + failed_at
            line = _read_line(raw[i].as_py()) if 0 <= failed_at and i < n else None
            if line is not None and line.reason is None and failed_at > 0:
                before = self._read_json(_region(pybuf, starts, ends, piece[lo:i]))
                if before is None or before.num_rows != failed_at:
                    line = None
            if line is None:
                # No usable row number (e.g. an earlier line held two objects and
                # shifted the count): isolate the rest by bisection.
                odd.update({lo + j: v for j, v in self._bisected(
                    pybuf, starts, ends, piece[lo:], raw.slice(lo)) if v.reason})
                break
            odd[i] = line
            lo = i + 1
            if failed_at >= _DENSE or not line.reason:
                screen = _SCREEN
            else:  # bad lines close together: screen the next ones with json.loads, not
                stop = min(n, lo + screen)  # Arrow, over longer stretches while it lasts
                screen = min(4096, screen * 2)
                for j, text in enumerate(raw.slice(lo, stop - lo).to_pylist(), start=lo):
                    verdict = _read_line(text)
                    if verdict.reason:
                        odd[j] = verdict
                lo = stop
        return odd

    def _first_error(self, region: pa.Buffer) -> int | None:
        """None if ``region`` parses, else the failing row (-1 if Arrow does not say)."""
        try:
            pj.read_json(pa.BufferReader(self._quoted(region)),
                         read_options=pj.ReadOptions(use_threads=False,
                                                     block_size=region.size + 1),
                         parse_options=_PARSE_OPTIONS)
        except pa.ArrowInvalid as exc:
            if not self.quote_amounts and _NUMERIC_AMOUNT_ERROR in str(exc):
                self.quote_amounts = True
                return self._first_error(region)
            match = _ROW.search(str(exc))
            return int(match.group(1)) if match else -1
        return None

    def _by_bisection(self, pybuf: pa.Buffer, starts: np.ndarray, ends: np.ndarray,
                      piece: np.ndarray, raw: pa.Array,
                      ) -> tuple[dict[str, pa.Array], dict[int, _Line]]:
        """``_parse_lines`` the slow but sure way: bisection down to json.loads."""
        lines = [line for _, line in self._bisected(pybuf, starts, ends, piece, raw)]
        fields = {name: pa.array([None if line.fields is None else line.fields.get(name)
                                  for line in lines], pa.string()) for name in EVENT_FIELDS}
        return fields, {i: line for i, line in enumerate(lines) if line.reason}

    def _bisected(self, pybuf: pa.Buffer, starts: np.ndarray, ends: np.ndarray,
                  piece: np.ndarray, raw: pa.Array) -> list[tuple[int, _Line]]:
        """(index, line) for every line of ``piece``: Arrow on halves that parse,
        json.loads on pieces of at most _LINE_BY_LINE lines."""
        out: list[tuple[int, _Line]] = []

        def visit(lo: int, hi: int) -> None:
            if hi - lo <= _LINE_BY_LINE:
                texts = raw.slice(lo, hi - lo).to_pylist()
                out.extend((lo + j, _read_line(text)) for j, text in enumerate(texts))
                return
            table = self._read_json(_region(pybuf, starts, ends, piece[lo:hi]))
            if table is not None and table.num_rows == hi - lo:
                out.extend((lo + j, _Line(row)) for j, row in enumerate(table.to_pylist()))
                return
            mid = (lo + hi) // 2
            visit(lo, mid)
            visit(mid, hi)

        visit(0, len(piece))
        return out

    def _quoted(self, region: pa.Buffer) -> pa.Buffer:
        """``region`` with numeric amounts quoted, when the file needs it."""
        if self.quote_amounts and not self.chunk_quoted:
            return _quote_amounts(region)
        return region

    def _read_json(self, region: pa.Buffer) -> pa.Table | None:
        """All-string parse of a region of lines, or None if Arrow refuses it."""
        try:
            return pj.read_json(
                pa.BufferReader(self._quoted(region)),
                read_options=pj.ReadOptions(use_threads=self.use_threads,
                                            block_size=self.block_size),
                parse_options=_PARSE_OPTIONS,
            )
        except pa.ArrowInvalid as exc:
            if not self.quote_amounts and _NUMERIC_AMOUNT_ERROR in str(exc):
                self.quote_amounts = True
                return self._read_json(region)
            return None


def _region(pybuf: pa.Buffer, starts: np.ndarray, ends: np.ndarray,
            piece: np.ndarray) -> pa.Buffer:
    """The bytes from the first line of ``piece`` to the last one's newline."""
    begin = int(starts[piece[0]])
    return pybuf.slice(begin, int(ends[piece[-1]]) + 1 - begin)


_NUMBER_BYTES = np.zeros(256, dtype=bool)
_NUMBER_BYTES[list(b"0123456789+-.eE")] = True
_JSON_NUMBER = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$"
_KEY = b'"amount"'


def _quote_amount_numbers(whole: pa.StringArray, buf: bytes, cut: int):
    """``"amount": 12.5`` -> ``"amount": "12.5"`` in ``buf[:cut]``, vectorised.

    Equivalent to the ``AMOUNT_NUMBER`` regex but a few times faster: the key's
    occurrences come from one split of the chunk, the number after each is
    found and checked (JSON number grammar, then ``,`` or ``}``) with numpy and
    one regex over the short number texts, and the quotes are inserted in one
    pass. Returns (new buffer, function mapping old byte positions to new).
    """
    data = np.frombuffer(buf, dtype=np.uint8, count=cut)
    parts = pc.split_pattern(whole, _KEY.decode()).values
    part_ends = np.frombuffer(parts.buffers()[1], dtype=np.int32)[
        parts.offset + 1:parts.offset + len(parts) + 1].astype(np.int64)
    found = part_ends[:-1] + np.arange(len(part_ends) - 1) * len(_KEY)  # each key's first byte
    at = found + len(_KEY)

    def skip_blanks(position: np.ndarray) -> np.ndarray:
        for _ in range(16):
            byte = data[np.minimum(position, cut - 1)]
            blank = ((byte == 32) | (byte == 9)) & (position < cut)
            if not blank.any():
                break
            position = position + blank
        return position

    def next_is(position: np.ndarray, allowed: bytes) -> np.ndarray:
        table = np.zeros(256, dtype=bool)
        table[list(allowed)] = True
        return (position < cut) & table[data[np.minimum(position, cut - 1)]]

    at = skip_blanks(at)
    at = at[next_is(at, b":")] + 1
    at = skip_blanks(at)
    at = at[next_is(at, b"-0123456789")]
    end = at.copy()
    active = np.arange(len(end))
    for _ in range(400):  # numbers of up to 400 characters; longer ones stay unquoted
        active = active[_NUMBER_BYTES[data[np.minimum(end[active], cut - 1)]]]
        if not len(active):
            break
        end[active] += 1
    ok = next_is(skip_blanks(end), b",}")
    lengths = end - at
    if len(at):
        gather = np.repeat(at - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        gather += np.arange(int(lengths.sum()))
        texts = _string_array(pa.py_buffer(data[gather]),
                              np.concatenate(([0], np.cumsum(lengths))))
        ok &= _as_bool(pc.match_substring_regex(texts, _JSON_NUMBER))
    inserts = np.column_stack((at[ok], end[ok])).ravel()
    quoted = np.insert(data, inserts, 34)

    def moved(position: np.ndarray) -> np.ndarray:
        return position + np.searchsorted(inserts, position, side="right")

    return pa.py_buffer(quoted), moved


def _as_bool(values: pa.Array) -> np.ndarray:
    return pc.fill_null(values, False).to_numpy(zero_copy_only=False)


def _quote_amounts(region: pa.Buffer) -> pa.Buffer:
    """``"amount": 12.5`` -> ``"amount": "12.5"`` over a whole region, vectorised."""
    one = _string_array(region, np.array([0, region.size], dtype=np.int32))
    out = pc.replace_substring_regex(one, AMOUNT_NUMBER, _AMOUNT_QUOTED)
    offsets = np.frombuffer(out.buffers()[1], dtype=np.int32)[out.offset:out.offset + 2]
    return out.buffers()[2].slice(int(offsets[0]), int(offsets[1] - offsets[0]))


class _Number(str):
    """A JSON number kept as its text (json.loads parse_int/parse_float hook)."""


class _Reject(Exception):
    pass


def _no_constants(name: str) -> None:
    raise _Reject(f"{name} is not valid JSON")


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise _Reject(f"field {key} appears more than once")
        obj[key] = value
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constants,
                            parse_int=_Number, parse_float=_Number)


def _kind(value: object) -> str:
    if isinstance(value, _Number):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return _JSON_TYPES.get(type(value), "null")


def _nesting(value: object) -> int:
    """How deep ``value`` nests (a scalar is 0, ``{}`` is 1), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING:
            stack.extend((child, depth + 1) for child in children
                         if isinstance(child, dict | list))
    return deepest


def _read_line(text: str) -> _Line:
    """One JSONL line read with json.loads: its fields, or why it is rejected.

    ``malformed``: not JSON, not an object, NaN/Infinity, a repeated field, nesting
    deeper than ``MAX_NESTING``, a lone surrogate escape. ``bad_type``: a contract
    field with a non-string value (``amount`` may be a number: its exact text is kept).
    """
    try:
        value = _DECODER.decode(text)
        if _nesting(value) > MAX_NESTING:
            raise RecursionError
    except _Reject as exc:
        return _Line(None, "malformed", str(exc))
    except RecursionError:  # past any limit: the same verdict whatever the stack depth
        return _Line(None, "malformed", f"nested deeper than {MAX_NESTING} levels")
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            return _Line(None, "malformed", f"not valid JSON: {exc.msg} at column {exc.colno}")
        return _Line(None, "malformed", f"not valid JSON: {exc}")
    if not isinstance(value, dict):
        return _Line(None, "malformed", f"not a JSON object (the line is {_kind(value)})")
    fields: dict[str, str | None] = {}
    for name in EVENT_FIELDS:
        field = value.get(name)
        if isinstance(field, _Number) and name == "amount":
            field = str(field)
        elif field is not None and (not isinstance(field, str) or isinstance(field, _Number)):
            expected = "a string or a number" if name == "amount" else "a string"
            return _Line(None, "bad_type", f"field {name} is {_kind(field)}, expected {expected}")
        if field is not None:
            try:
                field.encode("utf-8")
            except UnicodeEncodeError:
                return _Line(None, "malformed",
                             f"field {name} holds an invalid unicode escape (a lone surrogate)")
        fields[name] = field
    return _Line(fields)


def _verified(raw: pa.Array, fields: dict[str, pa.Array], rejected: dict[int, _Line],
              ) -> dict[int, _Line]:
    """{index: json.loads verdict} for lines Arrow read but may have read too kindly.

    Arrow skips fields outside the schema without looking inside them: a key given
    twice there, a nested object with a repeated key, NaN or Infinity would pass.
    Lines that could hide one (more key separators than contract fields read, more
    than one object, NaN/Infinity anywhere) are read again with json.loads, whose
    verdict stands; plain lines (the usual case) are not.
    """
    n = len(raw)
    if n == 0:
        return {}
    present = np.zeros(n, dtype=np.int64)
    for values in fields.values():
        present += _as_bool(pc.is_valid(values)).astype(np.int64)
    separators = pc.count_substring(raw, '":').to_numpy(zero_copy_only=False)
    braces = pc.count_substring(raw, "{").to_numpy(zero_copy_only=False)
    odd = _as_bool(pc.match_substring_regex(raw, "NaN|Infinity"))
    doubtful = (separators != present) | (braces > 1) | odd
    if rejected:
        doubtful[list(rejected)] = False
    out = {}
    for i in np.flatnonzero(doubtful):
        line = _read_line(raw[int(i)].as_py())
        if line.reason is not None:
            out[int(i)] = line
    return out


def read_json_lines(texts: list[str], sources: list[str], positions: list[int]) -> pa.Table:
    """RAW_EVENT_SCHEMA rows for JSONL lines (non-blank, without terminators) read one by
    one with ``json.loads``: the verdict this reader gives each line in its file (Arrow
    reads the plain lines to the same fields; every line Arrow refuses or may read too
    kindly is read with ``json.loads``, see ``_verified``). ``raw`` is the line."""
    read = [_read_line(text) for text in texts]
    fields = {
        name: pa.array([(line.fields or {}).get(name) for line in read], pa.string())
        for name in EVENT_FIELDS
    }
    columns = [fields[name] for name in EVENT_FIELDS] + [
        pa.array(sources, pa.string()),
        pa.array(positions, pa.int64()),
        cap_raw(pa.array(texts, pa.string())),
        pa.array([line.reason for line in read], pa.string()),
        pa.array([line.detail for line in read], pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=RAW_EVENT_SCHEMA)


def classify_json_line(text: str) -> tuple[str | None, str | None]:
    """(reason, detail) for one JSONL line, or (None, None) when it reads fine."""
    line = _read_line(text)
    return line.reason, line.detail


# --------------------------------------------------------------------------- CSV


@dataclass
class _CsvScan:
    """What one pass over a CSV file's bytes tells: for each non-empty record (header
    first), the line it starts on, its byte offset and length; and the offset of each
    byte that is not UTF-8."""

    lines: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    not_utf8: list[int]

    def record_of(self, offset: int) -> int:
        """The record number (1 = header) holding byte ``offset``."""
        return int(np.searchsorted(self.starts, offset, side="right"))


def _utf8_errors(data: bytes, base: int, out: list[int]) -> bytes:
    """Append to ``out`` the file offsets (``base`` + index) of the bytes of ``data``
    that are not UTF-8; returns a trailing incomplete sequence to carry to the next
    chunk (empty at the end of the file, where it is an error itself)."""
    at = 0
    while True:
        try:
            data[at:].decode("utf-8")
            return b""
        except UnicodeDecodeError as exc:
            start = at + exc.start
            if exc.reason == "unexpected end of data" and len(data) - start <= 3:
                return data[start:]
            out.append(base + start)
            at = at + exc.end


def _csv_record_lines(path: str, opener: Opener | None = None) -> _CsvScan:
    """The line number on which each non-empty CSV record starts (header first).

    Mirrors Arrow's record splitting, vectorised over chunks of the file: a
    newline ends a record unless it is inside a quoted field; an empty line (or
    a lone ``\\r``) is not a record. Quoting follows RFC 4180 as Arrow reads it:
    a run of quotes of even length never changes the state (``""`` is an empty
    field or an escaped quote); a run of odd length closes a quoted field, or
    opens one when it starts a field; elsewhere in an unquoted field it is text.
    """
    found: list[np.ndarray] = []
    found_starts: list[np.ndarray] = []
    found_lengths: list[np.ndarray] = []
    not_utf8: list[int] = []
    carry = b""  # an incomplete UTF-8 sequence at the end of the previous chunk
    inside = 0  # 1 when the chunk starts inside a quoted field
    prev = 10  # the byte before the chunk; the file start acts as a line start
    base = 0  # file offset of the chunk
    lines_before = 0  # newlines before the chunk
    start, start_line = 0, 1  # the current record: file offset and line of its start
    first: int | None = None  # its first byte, once read
    with _open(path, opener) as handle:
        while True:
            try:
                chunk = handle.read(_CSV_SCAN_CHUNK)
                while chunk.endswith(b'"'):  # never split a run of quotes
                    more = handle.read(4096)
                    if not more:
                        break
                    chunk += more
            except OSError as exc:
                raise _unreadable(path, exc) from None
            if not chunk:
                break
            if carry or _valid_utf8(chunk, len(chunk)) is None:  # rare: find the bytes
                carry = _utf8_errors(carry + chunk, base - len(carry), not_utf8)
            data = np.frombuffer(chunk, dtype=np.uint8)
            newlines = np.flatnonzero(data == 10)
            quoted = np.full(len(newlines), inside == 1)
            quotes = np.flatnonzero(data == 34)
            if len(quotes):
                run_head = np.ones(len(quotes), dtype=bool)
                run_head[1:] = quotes[1:] != quotes[:-1] + 1
                heads = np.flatnonzero(run_head)
                odd = np.diff(np.append(heads, len(quotes))) % 2 == 1
                runs = quotes[heads[odd]]  # where each odd run of quotes starts
                if len(runs):
                    before = np.where(runs > 0, data[np.maximum(runs - 1, 0)], prev)
                    field_start = np.isin(before, (44, 10, 13))
                    # An odd run at a field start toggles the state; elsewhere it
                    # leaves the state "outside" (it closes a field or is text).
                    i = np.arange(len(runs))
                    last_text = np.maximum.accumulate(np.where(field_start, -1, i))
                    after = np.where(last_text >= 0, (i - last_text) % 2, (inside + i + 1) % 2)
                    last_run = np.searchsorted(runs, newlines) - 1
                    quoted = np.where(last_run >= 0, after[np.maximum(last_run, 0)] == 1,
                                      inside == 1)
                    inside = int(after[-1])
            ends_at = np.flatnonzero(~quoted)  # indices into newlines
            if len(ends_at):
                separators = newlines[ends_at] + base
                starts = np.concatenate(([start], separators[:-1] + 1))
                lines = np.concatenate(([start_line], lines_before + ends_at[:-1] + 2))
                length = separators - starts
                first_bytes = data[np.clip(starts - base, 0, len(data) - 1)]
                if start < base and first is not None:
                    first_bytes[0] = first
                empty = (length == 0) | ((length == 1) & (first_bytes == 13))
                found.append(lines[~empty])
                found_starts.append(starts[~empty])
                found_lengths.append(length[~empty])
                start, start_line = int(separators[-1]) + 1, lines_before + int(ends_at[-1]) + 2
                first = None
            if first is None and start < base + len(data):
                first = int(data[start - base])
            prev = int(data[-1])
            base += len(data)
            lines_before += len(newlines)
    if carry:
        not_utf8.append(base - len(carry))
    length = base - start
    if length > 1 or (length == 1 and first != 13):
        found.append(np.array([start_line]))
        found_starts.append(np.array([start]))
        found_lengths.append(np.array([length]))

    def joined(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)

    return _CsvScan(joined(found), joined(found_starts), joined(found_lengths), not_utf8)


class _CleanCsv(io.RawIOBase):
    """The CSV file as Arrow's CSV reader is given it when some record is oversized or
    not UTF-8: each oversized record replaced by an empty row of ``width`` fields (so
    the record count is kept; its start is kept for the quarantine, hashed on the way),
    and bytes that are not UTF-8 decoded as U+FFFD."""

    def __init__(self, handle: BinaryIO, cuts: list[tuple[int, int]], width: int) -> None:
        super().__init__()
        self.handle = handle
        self.cuts = sorted(cuts)  # (offset, length) of the oversized records
        self.placeholder = b"," * (width - 1)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.offset = 0  # file offset of the next byte read
        self.pending = b""
        self.seen: dict[int, tuple[bytes, int, str]] = {}  # offset -> (head, size, sha256)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            piece = self._next_piece()
            if piece is None:
                return 0
            self.pending = self.decoder.decode(piece, final=not piece).encode("utf-8")
            if not piece and not self.pending:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def _next_piece(self) -> bytes | None:
        """The next bytes to decode: file bytes up to the next cut, or a placeholder."""
        if self.offset < 0:
            return None
        if self.cuts and self.cuts[0][0] == self.offset:
            start, length = self.cuts.pop(0)
            digest, head, left = hashlib.sha256(), b"", length
            while left:
                part = self.handle.read(min(left, _LONG_LINE_PIECE))
                if not part:
                    break
                digest.update(part)
                head = head or part[:RAW_KEPT_CHARS * 4]
                left -= len(part)
            self.seen[start] = (head, length - left, digest.hexdigest())
            self.offset += length - left
            return self.placeholder
        limit = self.cuts[0][0] - self.offset if self.cuts else _LONG_LINE_PIECE
        piece = self.handle.read(min(limit, _LONG_LINE_PIECE))
        self.offset += len(piece)
        if not piece:
            self.offset = -1
        return piece

    def raw_of(self, start: int) -> str:
        """The quarantine's raw text of the oversized record that started at ``start``."""
        head, size, sha256 = self.seen[start]
        return cut_text(head.decode("utf-8", errors="replace"), size, sha256)


def _csv_quote(column: pa.Array) -> pa.Array:
    """RFC 4180 cell text: quoted when it holds a delimiter, quote or newline."""
    needs = pc.match_substring(column, ",")
    for special in ('"', "\n", "\r"):
        needs = pc.or_(needs, pc.match_substring(column, special))
    if not pc.any(needs).as_py():
        return column
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, column)


def _iter_csv(path: str, batch_rows: int,
              opener: Opener | None = None) -> Iterator[pa.RecordBatch]:
    """CSV with a header row. Every cell is read as text; empty cells are null.

    Rows whose field count differs from the header's are quarantined as
    ``malformed`` with their original text, as are records holding bytes that are not
    UTF-8 (shown with U+FFFD) and records over ``MAX_RECORD_BYTES`` (never parsed).
    Positions are the line on which a record starts (see ``_csv_record_lines``).
    """
    scan = _csv_record_lines(path, opener)
    record_lines = scan.lines
    if len(record_lines) == 0:
        return
    if scan.lengths[0] > MAX_RECORD_BYTES or (scan.not_utf8 and scan.record_of(
            scan.not_utf8[0]) == 1):
        raise UserError("the CSV header is not valid UTF-8 or is over 1 MiB", where=path,
                        hint="re-encode the file as UTF-8 with a header row of column names")
    # Records judged before parsing: record number -> (detail, file offset of the record).
    judged: dict[int, tuple[str, int]] = {}
    for offset in scan.not_utf8:
        number = scan.record_of(offset)
        start = int(scan.starts[number - 1])
        judged.setdefault(number, (_not_utf8(offset - start, "record"), start))
    oversized = np.flatnonzero(scan.lengths > MAX_RECORD_BYTES)
    for index in oversized:
        judged[int(index) + 1] = (oversized_detail(int(scan.lengths[index])),
                                  int(scan.starts[index]))
    invalid: list[tuple[int, str, int]] = []  # (record number, text, field count)
    skipped: list[int] = []  # whitespace-only lines: Arrow counts them, we do not

    def on_invalid_row(row: pcsv.InvalidRow) -> str:
        if row.text.strip(" \t\r") == "":
            skipped.append(row.number)
        else:
            invalid.append((row.number, row.text, row.actual_columns))
        return "skip"

    read_options = pcsv.ReadOptions(use_threads=False,
                                    block_size=int(min(64 << 20, max(1 << 20, batch_rows * 256))))
    parse_options = pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row)

    def line_of(record_numbers: np.ndarray) -> np.ndarray:
        index = record_numbers - 1
        last = len(record_lines) - 1
        return np.where(index <= last, record_lines[np.minimum(index, last)],
                        record_lines[last] + (index - last))

    cuts = [(int(scan.starts[i]), int(scan.lengths[i])) for i in oversized]

    def cleaned(handle: BinaryIO, width: int) -> BinaryIO:
        return _CleanCsv(handle, cuts, width) if judged else handle  # rare: see _CleanCsv

    try:
        with _open(path, opener) as handle:
            header = pcsv.open_csv(cleaned(handle, 1),
                                   read_options=pcsv.ReadOptions(use_threads=False),
                                   parse_options=pcsv.ParseOptions(
                                       newlines_in_values=True,
                                       invalid_row_handler=lambda row: "skip"))
            names = header.schema.names
        repeated = sorted({n for n in names if n in EVENT_FIELDS and names.count(n) > 1})
        if repeated:
            raise UserError(f"CSV header repeats column {repeated[0]}", where=path,
                            hint="give each column once")
        convert = pcsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                      strings_can_be_null=False)
        with _open(path, opener) as handle:
            source = cleaned(handle, len(names))
            reader = pcsv.open_csv(source, read_options=read_options,
                                   parse_options=parse_options, convert_options=convert)

            def verdicts(numbers: np.ndarray) -> dict[int, tuple[str, str | None]]:
                """{index: (detail, raw or None)} for the judged records among numbers."""
                out = {}
                for i in np.flatnonzero(np.isin(numbers, list(judged))):
                    detail, start = judged[int(numbers[i])]
                    raw = source.raw_of(start) if start in getattr(source, "seen", {}) else None
                    out[int(i)] = (detail, raw)
                return out

            next_record = 2  # record 1 is the header
            for batch in reader:
                if batch.num_rows == 0:
                    continue  # invalid rows are flushed with the next good ones
                out, next_record = _csv_batch(path, batch, names, invalid, skipped,
                                              next_record, line_of, verdicts)
                for lo in range(0, out.num_rows, batch_rows):
                    yield out.slice(lo, batch_rows)
            if invalid:  # invalid rows after the last good one
                empty = pa.RecordBatch.from_pylist([], schema=pa.schema(
                    [pa.field(name, pa.string()) for name in names]))
                out, next_record = _csv_batch(path, empty, names, invalid, skipped,
                                              next_record, line_of, verdicts)
                for lo in range(0, out.num_rows, batch_rows):
                    yield out.slice(lo, batch_rows)
    except pa.ArrowInvalid as exc:
        message = str(exc).splitlines()[0]
        if "Empty CSV file" in message:
            return
        if "UTF8" in message or "UTF-8" in message:
            raise UserError("event file is not valid UTF-8", where=path,
                            hint="re-encode the file as UTF-8") from None
        raise UserError(f"cannot parse CSV: {message}", where=path,
                        hint="check the file is CSV with a header row") from None
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _csv_batch(path, batch, names, invalid, skipped, next_record, line_of, verdicts):
    """Merge a parsed batch with the invalid rows that precede or fall inside it;
    ``verdicts`` gives the records judged before parsing (``malformed``)."""
    n_good = batch.num_rows
    bad = sorted(invalid)
    gaps = sorted(skipped)
    # The records this batch spans: n_good good ones plus the bad/skipped in between.
    consumed_bad: list[tuple[int, str, int]] = []
    consumed_gaps = 0
    end = next_record + n_good  # exclusive, grows as bad records are found inside
    b = g = 0
    while True:
        grown = False
        while b < len(bad) and bad[b][0] < end + (0 if n_good else 1 << 62):
            consumed_bad.append(bad[b])
            b += 1
            end += 1
            grown = True
        while g < len(gaps) and gaps[g] < end + (0 if n_good else 1 << 62):
            consumed_gaps += 1
            g += 1
            end += 1
            grown = True
        if not grown:
            break
    invalid[:] = bad[b:]
    skipped[:] = gaps[g:]
    span = np.arange(next_record, end, dtype=np.int64)
    bad_numbers = np.array([number for number, _, _ in consumed_bad], dtype=np.int64)
    gap_numbers = np.array(gaps[:g], dtype=np.int64)
    is_bad = np.isin(span, bad_numbers)
    is_good = ~is_bad & ~np.isin(span, gap_numbers)
    good_numbers = span[is_good]

    fields: dict[str, pa.Array] = {}
    for name in EVENT_FIELDS:
        if name in names:
            column = batch.column(name)
            fields[name] = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    cells = [_csv_quote(batch.column(i)) for i in range(batch.num_columns)]
    raw = pc.binary_join_element_wise(*cells, ",") if cells else pa.nulls(n_good, pa.string())
    judged = verdicts(good_numbers)
    if judged:  # not UTF-8 or oversized: no fields, the reader's verdict
        where = pa.array(np.isin(np.arange(n_good), list(judged)))
        fields = {name: pc.if_else(where, pa.scalar(None, pa.string()), values)
                  for name, values in fields.items()}
        raws = raw.to_pylist()
        for i, (_, text) in judged.items():
            raws[i] = raws[i] if text is None else text
        good = _assemble(
            fields, n_good, path, line_of(good_numbers),
            cap_raw(pa.array(raws, pa.string())),
            pa.array(["malformed" if i in judged else None for i in range(n_good)], pa.string()),
            pa.array([judged[i][0] if i in judged else None for i in range(n_good)],
                     pa.string()), raw_capped=True)
    else:
        good = _assemble(fields, n_good, path, line_of(good_numbers), raw)
    if not consumed_bad:
        return good, end
    judged = verdicts(bad_numbers)
    rejects = _assemble(
        {}, len(consumed_bad), path, line_of(bad_numbers),
        pa.array([text for _, text, _ in consumed_bad], pa.string()),
        pa.array(["malformed"] * len(consumed_bad), pa.string()),
        pa.array([judged[i][0] if i in judged else
                  f"CSV row has {count} fields, the header has {len(names)}"
                  for i, (_, _, count) in enumerate(consumed_bad)], pa.string()),
    )
    merged = pa.Table.from_batches([good, rejects])
    order = np.argsort(np.concatenate((good_numbers, bad_numbers)), kind="stable")
    return merged.take(pa.array(order)).combine_chunks().to_batches()[0], end


# --------------------------------------------------------------------------- Parquet


def _parquet_column(name: str, column: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """(string column, bad_type detail per row or None) for one contract column.

    Decimal and integer columns cast exactly. A floating-point ``amount`` column
    is cast to its shortest round-trip text: binary floats are not exact money
    (0.1 is stored as 0.1000000000000000055...), so producers should write
    ``amount`` as a decimal or a string. Timestamp columns become ISO text
    (``2026-03-01 14:05:00.000000Z``); a timestamp without a time zone has no
    offset and fails validation, like a JSON one would.
    """
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
        kind = column.type
    if pa.types.is_string(kind):
        return column, None
    text_like = (pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
                 or pa.types.is_binary(kind) or pa.types.is_large_binary(kind))
    numeric = pa.types.is_integer(kind) or pa.types.is_decimal(kind) or pa.types.is_floating(kind)
    temporal = pa.types.is_timestamp(kind) or pa.types.is_date(kind)
    if text_like or (name == "amount" and numeric) or (name == "event_time" and temporal):
        return column.cast(pa.string()), None
    detail = f"field {name} has Parquet type {kind}, expected a string"
    return pa.nulls(len(column), pa.string()), pc.if_else(
        pc.is_valid(column), pa.scalar(detail), pa.scalar(None, pa.string()))


def _iter_parquet(path: str, batch_rows: int,
                  opener: Opener | None = None) -> Iterator[pa.RecordBatch]:
    """Parquet with the contract's columns; missing columns are null."""
    handle = None if opener is None else _open(path, opener)
    try:
        parquet = pq.ParquetFile(path if handle is None else handle)
        present = [name for name in EVENT_FIELDS if name in parquet.schema_arrow.names]
        position = 1
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
            n = batch.num_rows
            fields: dict[str, pa.Array] = {}
            detail: pa.Array | None = None
            for name in present:
                fields[name], bad = _parquet_column(name, batch.column(name))
                if bad is not None:
                    detail = bad if detail is None else pc.coalesce(detail, bad)
            reason = None
            if detail is not None:
                reason = pc.if_else(pc.is_valid(detail), pa.scalar("bad_type"),
                                    pa.scalar(None, pa.string()))
            yield _assemble(fields, n, path, np.arange(position, position + n), None,
                            reason, detail)
            position += n
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        message = str(exc).splitlines()[0]
        raise UserError(f"not a readable Parquet file: {message}", where=path,
                        hint="check the file is complete Parquet (re-export it)") from None
    finally:
        if handle is not None:
            handle.close()
