"""Small strict readers for untrusted JSON values.

Each reader raises `SchemaError` naming the field and the problem; the public modules
translate it into their own `ProtocolError` subclass with the right code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from protocol import text as text_rule
from protocol.keys import is_hex64
from protocol.timefmt import parse_time

ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

def printable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, each character `string` would refuse made '?'.

    For text a party builds from what it did not choose (an error's message, a health
    field) before it goes into a message the other side parses with `string`."""
    return text_rule.printable(text, limit)


class SchemaError(ValueError):
    """An untrusted JSON value does not have the expected shape."""


def _reject_constant(name: str) -> Any:
    raise SchemaError(f"JSON constant {name} is not allowed")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise SchemaError(f"duplicate member {key!r:.40}")
        obj[key] = value
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_object, parse_constant=_reject_constant)


def loads_strict(data: bytes) -> Any:
    """Decode UTF-8 JSON refusing duplicate members, NaN/Infinity and invalid UTF-8.

    Raises SchemaError (also for a document nested deeper than Python's recursion limit).
    """
    try:
        return _DECODER.decode(data.decode("utf-8"))
    except SchemaError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SchemaError(f"not valid UTF-8 JSON: {type(exc).__name__}") from None


def obj(
    value: Any, name: str, required: frozenset[str], optional: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    """A JSON object with exactly the required members and possibly the optional ones."""
    if not isinstance(value, dict):
        raise SchemaError(f"{name} must be a JSON object")
    keys = set(value)
    missing = required - keys
    if missing:
        raise SchemaError(f"{name} is missing {', '.join(sorted(missing))}")
    unknown = keys - required - optional
    if unknown:
        shown = ", ".join(repr(k)[:40] for k in sorted(unknown)[:3])
        raise SchemaError(f"{name} has unknown member(s) {shown}")
    return value


def string(value: Any, name: str, *, max_len: int = 256, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{name} must be a string")
    if not value and not allow_empty:
        raise SchemaError(f"{name} must not be empty")
    if len(value) > max_len:
        raise SchemaError(f"{name} is longer than {max_len} characters")
    try:
        return text_rule.check(value)  # the one text rule (protocol/text.py)
    except text_rule.TextError as exc:
        raise SchemaError(f"{name} {exc}") from None


def integer(value: Any, name: str, *, minimum: int = 0, maximum: int = 2**53 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SchemaError(f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise SchemaError(f"{name} must be between {minimum} and {maximum}")
    return value


def hex64(value: Any, name: str) -> str:
    if not is_hex64(value):
        raise SchemaError(f"{name} must be 64 lowercase hex characters")
    return str(value)


def array(value: Any, name: str, *, max_len: int) -> list[Any]:
    if not isinstance(value, list):
        raise SchemaError(f"{name} must be an array")
    if len(value) > max_len:
        raise SchemaError(f"{name} has more than {max_len} items")
    return value


def identifier(value: Any, name: str) -> str:
    """A token, clip or request id: 1-128 characters of A-Z a-z 0-9 . _ - (first alnum)."""
    text = string(value, name, max_len=128)
    if ID_PATTERN.fullmatch(text) is None:
        raise SchemaError(f"{name} must be 1-128 characters of A-Z a-z 0-9 . _ -")
    return text


def instant(value: Any, name: str) -> datetime:
    """An RFC 3339 UTC time in the one spelling `protocol.timefmt` accepts."""
    try:
        return parse_time(value)
    except ValueError as exc:
        raise SchemaError(f"{name}: {exc}") from None
