"""Keep pyarrow's "is this a pandas object?" probe from importing pandas at start-up.

pyarrow imports pandas (~0.3–0.5 s here) the first time it converts a Python sequence,
only to ask whether the object is a pandas one. revattr hands pyarrow no pandas objects:
its one pandas use turns an Arrow table into a frame for Great Expectations
(``Table.to_pandas``), and pyarrow imports pandas again for that on demand.
"""

from __future__ import annotations

import importlib.abc
import sys
from types import ModuleType


def defer_pandas_import() -> bool:
    """Answer pyarrow's pandas probe with "not installed" once; True if it was answered.

    Afterwards ``pa.array`` of a list does not import pandas, while ``to_pandas`` (or
    ``import_pandas``) still imports it and re-enables pyarrow's pandas support. Does
    nothing when pandas is already imported: the probe then costs nothing.
    """
    if "pandas" in sys.modules:
        return False
    import pyarrow as pa

    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)  # `import pandas` fails while the probe runs
    try:
        pa.array([0])  # the first conversion of a sequence is what probes
    finally:
        sys.meta_path.remove(blocker)
    return True


def import_pandas() -> ModuleType:
    """pandas, with pyarrow's pandas support switched on again if the probe was deferred.

    Code that hands pandas objects to pyarrow imports pandas through this: without it,
    ``pa.array(series)`` before any ``to_pandas`` would read the series as a plain
    sequence (NaN a value, not null).
    """
    import pandas
    import pyarrow as pa

    pa.array([], pa.int8()).to_pandas()  # asks pyarrow for pandas: it imports it again
    return pandas


class _NoPandas(importlib.abc.MetaPathFinder):
    """An import finder that refuses pandas (and nothing else)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == "pandas":
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None
