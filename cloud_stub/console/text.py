"""Showing text an agency typed so that it stays text (docs/adr/0015-review-console.md).

Jinja's autoescaping already turns ``<script>`` and ``onerror=`` into inert characters;
`inert` also makes invisible and direction-changing characters visible as ``[U+202E]``
(a bidi override could otherwise reorder what a reviewer reads), replaces other control
characters the same way, and cuts an overlong string with a note of how much was cut.
Nothing an agency typed ever becomes an attribute value that is a URL.
"""

from __future__ import annotations

import unicodedata

MAX_SHOWN = 2000

_BIDI_AND_INVISIBLE = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\u2028\u2029\ufeff"
)


def _visible(ch: str) -> str:
    if ch in "\n\t":
        return ch
    if ch in _BIDI_AND_INVISIBLE or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
        return f"[U+{ord(ch):04X}]"
    return ch


def inert(value: object, limit: int = MAX_SHOWN) -> str:
    """`value` as plain text with hidden characters shown and at most `limit` characters
    (plus a note); the caller's template still escapes it."""
    text = "" if value is None else str(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    shown = "".join(_visible(ch) for ch in text)
    if cut > 0:
        shown += f" [... {cut} more characters not shown]"
    return shown
