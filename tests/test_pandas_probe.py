"""pyarrow's pandas probe, deferred at start-up: pandas stays unimported, and works
the same once something asks for it. Each case runs in a fresh interpreter, since the
test process has pandas imported already."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_converting_a_list_after_the_deferral_does_not_import_pandas() -> None:
    out = _python("""
        import sys
        from pipelines.pandas_probe import defer_pandas_import
        print(defer_pandas_import())
        import pyarrow as pa
        pa.array(["a", None]); pa.table({"x": [1, 2]})
        print("pandas" in sys.modules)
    """)
    assert out == ["True", "False"]


def test_to_pandas_after_the_deferral_imports_pandas_and_reads_series_as_pandas() -> None:
    out = _python("""
        from pipelines.pandas_probe import defer_pandas_import
        defer_pandas_import()
        import pyarrow as pa
        frame = pa.table({"x": [1.5, None]}).to_pandas()
        import pandas as pd
        print(type(frame).__name__, pa.array(pd.Series([1.0, None])).null_count)
    """)
    assert out == ["DataFrame", "1"]  # NaN read as null: pyarrow knows pandas again


def test_import_pandas_switches_pyarrow_pandas_support_back_on() -> None:
    out = _python("""
        from pipelines.pandas_probe import defer_pandas_import, import_pandas
        defer_pandas_import()
        import pyarrow as pa
        pd = import_pandas()
        print(pa.array(pd.Series([1.0, None])).null_count)
    """)
    assert out == ["1"]


def test_the_deferral_does_nothing_once_pandas_is_imported() -> None:
    out = _python("""
        import pandas
        from pipelines.pandas_probe import defer_pandas_import
        print(defer_pandas_import())
    """)
    assert out == ["False"]


def test_revattr_run_without_checks_never_imports_pandas(tmp_path: Path) -> None:
    from pipelines.generate import generate_dataset

    generate_dataset(tmp_path / "data", events=200, seed=3, bad_rate=0.05)
    out = _python(f"""
        import sys
        sys.argv = ["revattr", "run", "--events", {str(tmp_path / 'data/events/*.jsonl')!r},
                    "--reference", {str(tmp_path / 'data/reference')!r},
                    "--db", {str(tmp_path / 'p.duckdb')!r}, "--no-checks"]
        from pipelines import cli
        try:
            cli.main()
        except SystemExit as stop:
            assert stop.code in (0, None), stop.code
        print("pandas" in sys.modules)
    """)
    assert out[-1] == "False"
