"""Property: the engine reads every JSONL line as the file reader reads it.

The engine's SQL fast path takes plainly well-formed lines; every other line is
read by ``events_reader.read_json_lines``. For any file, the fields, reason and
detail of each record must equal what ``iter_raw_batches`` (the Beam graph's
reader) gives for that line.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.embedded.read import _jsonl_relation
from pipelines.io.events_reader import iter_raw_batches, read_json_lines
from schemas.events import EVENT_FIELDS, RAW_EVENT_SCHEMA

FIELDS = list(EVENT_FIELDS)
text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.text(alphabet="abcXYZ019 -:.+_éß€", max_size=12),  # mostly what real ids look like
)
scalar = st.one_of(text, st.integers(-10**20, 10**20), st.floats(allow_nan=False),
                   st.booleans(), st.none(),
                   st.sampled_from(["12.50", "1e3", "-0", "2026-01-05T10:00:00Z", "USD"]))
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)), max_leaves=4)


@st.composite
def lines(draw) -> str:
    names = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS)))
    if draw(st.booleans()):  # a plain record: string fields (what the fast path takes)
        record = {name: draw(text) for name in names}
        for key in draw(st.lists(text, max_size=2)):
            record[key] = draw(scalar)
    else:
        record = {name: draw(st.one_of(scalar, value)) for name in names}
        for key in draw(st.lists(text, max_size=2)):
            record[key] = draw(value)
    line = json.dumps(record, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    mutation = draw(st.sampled_from(["none"] * 6 + ["dup", "nan", "trailing", "cut",
                                                    "number", "space"]))
    if mutation == "dup" and len(line) > 2:
        line = line[:-1] + (', ' if len(line) > 2 else '') + '"event_id": "x"}'
    elif mutation == "nan":
        line = line[:-1] + (", " if len(line) > 2 else "") + '"q": NaN}'
    elif mutation == "trailing" and len(line) > 2:
        line = line[:-1] + ",}"
    elif mutation == "cut":
        line = line[: draw(st.integers(0, len(line)))]
    elif mutation == "number":
        line = line[:-1] + (", " if len(line) > 2 else "") + \
            f'"amount": {draw(st.sampled_from(["12.50", "9999999999999.999", "1E3", "-0"]))}}}'
    elif mutation == "space":
        line = "  " + line + "\t"
    return line.replace("\n", " ").replace("\r", " ")


def engine_records(path: Path) -> pa.Table:
    con = duckdb.connect()
    table = con.sql(f"SELECT * FROM ({_jsonl_relation([str(path)], base=3)}) ORDER BY position") \
        .to_arrow_table()
    assert set(table["source_id"].to_pylist()) == {3}  # file 0 of the relation, after 3 others
    fast = table.filter(table["fast"])
    slow = table.filter(pc.invert(table["fast"]))
    read = read_json_lines(slow["line"].to_pylist(), [str(path)] * slow.num_rows,
                           slow["position"].to_pylist())
    rows = {r["position"]: (tuple(r[f] for f in FIELDS), None, None)
            for r in fast.to_pylist()}
    rows.update({r["position"]: (tuple(r[f] for f in FIELDS), r["reason"], r["detail"])
                 for r in read.to_pylist()})
    return rows


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(lines(), min_size=1, max_size=25))
def test_every_line_is_read_as_the_file_reader_reads_it(tmp_path_factory, generated):
    path = Path(tmp_path_factory.mktemp("jsonl")) / "events.jsonl"
    path.write_text("\n".join(generated) + "\n", encoding="utf-8")
    reader = pa.Table.from_batches(list(iter_raw_batches(str(path))), schema=RAW_EVENT_SCHEMA)
    expected = {r["position"]: (tuple(r[f] for f in FIELDS), r["reason"], r["detail"])
                for r in reader.to_pylist()}
    got = engine_records(path)
    assert got.keys() == expected.keys()
    for position, (fields, reason, detail) in expected.items():
        if reason is None:  # accepted: identical fields
            assert got[position] == (fields, None, None), generated[position - 1]
        else:  # refused: the same reason and detail
            assert got[position][1:] == (reason, detail), generated[position - 1]
