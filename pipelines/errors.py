"""Errors the user sees: one line saying what, where and what to do."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input or flags; the CLI prints it and exits 2.

    >>> str(UserError("amount is not a decimal", where="ref/fx_rates.csv:12", hint="fix the row"))
    'ref/fx_rates.csv:12: amount is not a decimal (fix the row)'
    """

    def __init__(self, what: str, where: str | None = None, hint: str | None = None) -> None:
        self.what, self.where, self.hint = what, where, hint
        text = f"{where}: {what}" if where else what
        super().__init__(f"{text} ({hint})" if hint else text)


# What the operating system says when a file cannot be written, and what to do about it.
_FULL = "free some space there or raise the file size limit, then run the same command again"
_DENIED = "give this user access to it or choose another --db, then run again"
_STORAGE = {
    errno.ENOSPC: ("cannot write: no space left on the device", _FULL),
    errno.EDQUOT: ("cannot write: the disk quota is exceeded", _FULL),
    errno.EFBIG: ("cannot write: the file would exceed the file size limit", _FULL),
    errno.EROFS: ("cannot write: the file system is read-only", _DENIED),
    errno.EACCES: ("permission denied", _DENIED),
    errno.EPERM: ("operation not permitted", _DENIED),
}
# The same, as DuckDB and Arrow spell them in their messages.
_MESSAGES = {os.strerror(code): code for code in _STORAGE}
_PATH_IN_MESSAGE = re.compile(r"""(?:file|directory) \\?["']([^"'\\]+)""")


def storage_error(error: BaseException) -> UserError | None:
    """The one-line error for a failure of the disk (full, file size limit, read-only,
    permission denied) found in ``error`` or what it was raised from; None if it is not one.

    >>> error = storage_error(OSError(28, "No space left on device", "out/x.parquet"))
    >>> error.where, error.what
    ('out/x.parquet', 'cannot write: no space left on the device')
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        code, where = _storage_code(error)
        if code is not None:
            what, hint = _STORAGE[code]
            return UserError(what, where=where,
                             hint=f"{hint}; readers keep seeing the last complete run")
        error = error.__cause__ or error.__context__
    return None


def _storage_code(error: BaseException) -> tuple[int | None, str | None]:
    if isinstance(error, OSError) and error.errno in _STORAGE:
        return error.errno, error.filename2 or error.filename
    text = str(error)
    code = next((c for message, c in _MESSAGES.items() if message in text), None)
    if code is None:
        return None, None
    match = _PATH_IN_MESSAGE.search(text)
    return code, match[1] if match else None


@contextmanager
def naming_the_file(path: str | Path) -> Iterator[None]:
    """Name ``path`` in a disk failure while writing it (Arrow's messages do not)."""
    try:
        yield
    except OSError as error:
        found = storage_error(error)
        if found is None or found.where:
            raise
        raise UserError(found.what, where=str(path), hint=found.hint) from error
