"""The raw record text kept for the quarantine: bounded, whatever the input.

A record's ``raw`` text is kept whole up to ``RAW_KEPT_CHARS`` characters. A longer
one keeps its first ``RAW_KEPT_CHARS`` characters followed by ``RAW_CUT_MARK``: the
whole record's size in UTF-8 bytes and its SHA-256, so the original can still be
found and compared. Every reader caps ``raw`` where it creates it (the JSONL/CSV
reader, the engine's SQL, stream messages), so both executors keep the same text.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.events import MAX_RECORD_BYTES, RAW_CUT_MARK, RAW_KEPT_CHARS


def cap_text(text: str, original: bytes | None = None) -> str:
    """``text`` as the quarantine keeps it. ``original``: the record's bytes when
    ``text`` is not their exact decoding (bytes that are not UTF-8, shown with U+FFFD);
    the size and hash are of them."""
    if len(text) <= RAW_KEPT_CHARS:
        return text
    data = text.encode("utf-8", errors="surrogatepass") if original is None else original
    return cut_text(text, len(data), hashlib.sha256(data).hexdigest())


def cut_text(text: str, size: int, sha256: str) -> str:
    """The first ``RAW_KEPT_CHARS`` characters of ``text`` and the cut mark for a record
    of ``size`` bytes hashing to ``sha256`` (for a record never held whole)."""
    return text[:RAW_KEPT_CHARS] + RAW_CUT_MARK.format(size=size, sha256=sha256)


def cap_raw(raw: pa.Array | pa.ChunkedArray | None) -> pa.Array | pa.ChunkedArray | None:
    """``raw`` with every value longer than ``RAW_KEPT_CHARS`` characters capped (the
    values that fit are returned as they are, without a copy when none is long)."""
    if raw is None or len(raw) == 0:
        return raw
    long = pc.fill_null(pc.greater(pc.utf8_length(raw), RAW_KEPT_CHARS), False)
    if not pc.any(long).as_py():
        return raw
    where = np.flatnonzero(long.to_numpy(zero_copy_only=False))
    capped = pa.array([cap_text(raw[int(i)].as_py()) for i in where], pa.string())
    mask = np.zeros(len(raw), dtype=bool)
    mask[where] = True
    return pc.replace_with_mask(raw, pa.array(mask), capped)


def oversized_detail(size: int) -> str:
    """The ``malformed`` detail of a record longer than ``MAX_RECORD_BYTES``."""
    return f"record is {size} bytes, more than the {MAX_RECORD_BYTES} bytes a record may have"


def cap_sql(text: str) -> str:
    """DuckDB SQL for ``cap_text`` of the VARCHAR expression ``text`` (same result)."""
    before, after = RAW_CUT_MARK.split("{size}")
    middle, end = after.split("{sha256}")
    return (f"CASE WHEN length({text}) <= {RAW_KEPT_CHARS} THEN {text} ELSE "
            f"left({text}, {RAW_KEPT_CHARS}) || {_lit(before)} || strlen({text})::VARCHAR "
            f"|| {_lit(middle)} || sha256({text}) || {_lit(end)} END")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
