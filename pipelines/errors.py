"""Errors the user sees: one line saying what, where and what to do."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or flags; the CLI prints it and exits 2.

    >>> str(UserError("amount is not a decimal", where="ref/fx_rates.csv:12", hint="fix the row"))
    'ref/fx_rates.csv:12: amount is not a decimal (fix the row)'
    """

    def __init__(self, what: str, where: str | None = None, hint: str | None = None) -> None:
        self.what, self.where, self.hint = what, where, hint
        text = f"{where}: {what}" if where else what
        super().__init__(f"{text} ({hint})" if hint else text)
