"""Errors the user sees (pipelines/errors.py)."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys

import pytest

from pipelines.errors import UserError, naming_the_file


def test_a_disk_failure_without_a_file_name_is_named_by_the_file_being_written(tmp_path):
    target = tmp_path / "part.parquet"
    with pytest.raises(UserError) as raised, naming_the_file(target):
        raise OSError(f"IOError: {os.strerror(errno.EFBIG)}")  # as Arrow says it
    assert raised.value.where == str(target)
    assert "file size limit" in raised.value.what and "run" in raised.value.hint


def test_other_errors_and_errors_naming_their_file_pass_through_unchanged(tmp_path):
    with pytest.raises(OSError, match="bad magic"), naming_the_file(tmp_path / "x"):
        raise OSError("bad magic")
    with pytest.raises(OSError) as raised, naming_the_file(tmp_path / "x"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/elsewhere/y")
    assert raised.value.filename == "/elsewhere/y"


def test_an_arrow_write_past_the_file_size_limit_names_its_file(tmp_path):
    script = (
        "import pyarrow as pa, pyarrow.parquet as pq, sys\n"
        "from pipelines.errors import UserError, naming_the_file\n"
        f"target = {str(tmp_path / 'big.parquet')!r}\n"
        "try:\n"
        "    with naming_the_file(target):\n"
        "        pq.write_table(pa.table({'x': list(range(200_000))}), target)\n"
        "except UserError as error:\n"
        "    print(error.where)\n")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          preexec_fn=limit, check=False)
    assert done.stdout.strip() == str(tmp_path / "big.parquet"), done.stderr[-2000:]
