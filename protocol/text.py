"""The one text rule for every string that reaches a person or the wire.

A string a party did not choose itself (a request body, a reviewer's reason, a token's
claims, a device's result, an owner notice) may be shown to someone: an owner, a
reviewer, an operator at a terminal. Some characters make text display other than it
reads, act on the terminal, or cannot be written as UTF-8 at all; they are refused
everywhere (docs/protocol.md, "Text"):

- C0 controls (NUL, ESC, ...), DEL and the C1 controls (U+0080-U+009F; U+009B is CSI);
- bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E, U+200F,
  U+202A-U+202E, U+2066-U+2069: "Trojan Source");
- the line and paragraph separators U+2028 and U+2029;
- the byte-order mark / zero-width no-break space U+FEFF;
- zero-width and invisible characters U+200B-U+200D and U+2060-U+2064 (twelve
  U+200B look like nothing and must not count as a written reason);
- tag characters U+E0000-U+E007F;
- lone surrogates U+D800-U+DFFF (JSON can write them as ``"\\ud800"``; no UTF-8 encoder
  can write them, so a string holding one could not be forwarded).

Multi-line text (a justification, a decision's reason) may also hold ``\\n`` and ``\\t``.
`refused` finds the first refused character, `check` raises `TextError` naming it, and
`printable` makes each one ``?`` for text a party builds from what it did not choose
before passing it on or printing it. Pure functions; the cloud (`cloud_stub.policy.
requests`, `cloud_stub.domain.review_rules`, the operator's CLI) and the device and the
wire contract (`protocol._schema`) all use this module.
"""

from __future__ import annotations

import re
from typing import Final

_REFUSED_CLASS: Final = (
    "\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, overrides, isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ufeff"  # byte-order mark
    "\u200b-\u200d\u2060-\u2064"  # zero-width and invisible characters
    "\U000e0000-\U000e007f"  # tag characters
    "\ud800-\udfff"  # lone surrogates
)
REFUSED: Final = re.compile(f"[{_REFUSED_CLASS}]")
"""One character the text rule refuses in a single line of text."""
REFUSED_MULTILINE: Final = re.compile(f"(?![\n\t])[{_REFUSED_CLASS}]")
"""One character the text rule refuses in multi-line text (``\\n`` and ``\\t`` allowed)."""


class TextError(ValueError):
    """A string holds a character the text rule refuses; the message names it."""

    def __init__(self, char: str) -> None:
        super().__init__(f"contains a control or invisible formatting character "
                         f"(U+{ord(char):04X})")
        self.char = char


def refused(text: str, *, multiline: bool = False) -> str | None:
    """The first character of `text` the rule refuses, or None."""
    found = (REFUSED_MULTILINE if multiline else REFUSED).search(text)
    return None if found is None else found.group()


def check(text: str, *, multiline: bool = False) -> str:
    """`text` unchanged. Raises `TextError` naming the first refused character."""
    char = refused(text, multiline=multiline)
    if char is not None:
        raise TextError(char)
    return text


def printable(text: str, limit: int, *, multiline: bool = False) -> str:
    """`text` cut to `limit` characters, each character the rule refuses made ``?``."""
    return (REFUSED_MULTILINE if multiline else REFUSED).sub("?", text[:limit])
