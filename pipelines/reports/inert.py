"""Untrusted CRM text made inert for people to read: pages, mail headers, terminals.

Escaping (HTML autoescape, CSV formula guard, header encoding) is done where the
text is written; this module removes what escaping leaves dangerous to a *reader*:

* control characters (C0 but tab/newline, DEL, C1) and the Unicode line and
  paragraph separators, which can end a mail header or drive a terminal;
* bidirectional controls (RLO U+202E and the other embeddings, overrides and
  isolates, LRM/RLM/ALM), which reorder the text around a name (``Acme\\u202Efdp.exe``
  shows as ``Acmeexe.pdf``);
* byte-order marks and interlinear annotation characters.

Each becomes U+FFFD (visible: the reader sees that something was there) in
display text, a space in header and terminal text. Long values are cut, with an
ellipsis, to a bound (a 10,000-character account name shows as its first 200
characters); the full value stays in the CSV.

>>> display("Acme\\u202Efdp.exe"), header_text("Bob\\r\\nBcc: x@y", 40)
('Acme\\ufffdfdp.exe', 'Bob Bcc: x@y')
"""

from __future__ import annotations

import re

DISPLAY_LIMIT = 200  # characters of one value shown in a report page
NAME_LIMIT = 80  # characters of a name in a mail header or a terminal line
ELLIPSIS = "…"
# Bidi_Control, separators, BOM, interlinear annotations; C0 (but \t \n \r), DEL, C1.
_UNSAFE_DISPLAY = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
    "\ufeff\ufff9-\ufffb]"
)
_UNSAFE_LINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ufff9-\ufffb]+"
)
_SPACES = re.compile(r"\s+")


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the last one an ellipsis if cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def display(text: str, limit: int = DISPLAY_LIMIT) -> str:
    """Text for a page: unsafe characters as U+FFFD, at most ``limit`` characters."""
    return shorten(_UNSAFE_DISPLAY.sub("\ufffd", text), limit)


def header_text(text: str, limit: int = NAME_LIMIT) -> str:
    """One line for a mail header or a terminal: unsafe runs and whitespace as one space."""
    return shorten(_SPACES.sub(" ", _UNSAFE_LINE.sub(" ", text)).strip(), limit)
