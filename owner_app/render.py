"""How notices and status are printed: readable text, or one JSON object per line.

Strings come from the device over the network. The protocol already refuses C0 control
characters; what a terminal could still act on (C1 controls, bidirectional overrides)
is shown as '?' here, and every string is cut to a bounded length.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from owner_app.ledger import Entry
from protocol.messages import HealthValue, NoticeMessage, StatusMessage
from protocol.timefmt import format_time

MAX_SHOWN: Final = 300
MAX_CLIPS_SHOWN: Final = 20

# What each basis means for the owner, and what its case fields are called.
_BASIS: Final[Mapping[str, tuple[str, str, str]]] = {
    "warrant": ("released to an agency under a court warrant", "docket", "court"),
    "emergency": ("released to an agency under an emergency certification",
                  "incident", "agency"),
    "preservation": ("kept from deletion for an agency (a hold: nothing was sent)",
                     "case", "agency"),
}


def safe(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` with control and format characters (C0, C1, bidi overrides) as '?',
    cut to `limit` characters."""
    out = "".join("?" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def notice_lines(entry: Entry, *, new: bool) -> list[str]:
    """A notice as a few readable lines."""
    n = entry.notice
    meaning, case_label, authority_label = _BASIS.get(n.basis, (n.basis, "case", "authority"))
    clips = ", ".join(safe(c, 80) for c in n.clips[:MAX_CLIPS_SHOWN])
    if len(n.clips) > MAX_CLIPS_SHOWN:
        clips += f", ... ({len(n.clips) - MAX_CLIPS_SHOWN} more)"
    return [
        f"{'NEW ' if new else '    '}{n.basis}: {meaning}",
        f"    {case_label} {safe(n.case.docket)}, {authority_label} {safe(n.case.authority)}"
        f" (request {safe(n.case.request_id, 128)})",
        f"    footage {format_time(n.window.start)} to {format_time(n.window.end)}",
        f"    clips ({len(n.clips)}): {clips or 'none'}",
        f"    released {format_time(n.released_at)}, received here "
        f"{format_time(entry.received_at)}",
        f"    token {safe(n.jti, 128)}, warrant or certification sha256 "
        f"{n.case.document_sha256}",
    ]


def notice_json(entry: Entry, *, new: bool) -> str:
    """One JSON object: the notice's members, plus `received_at` and `new`."""
    payload: dict[str, Any] = json.loads(entry.notice.to_bytes())
    payload["received_at"] = format_time(entry.received_at)
    payload["new"] = new
    return json.dumps(payload, sort_keys=True, ensure_ascii=False)


def conflict_line(stored: Entry, received: NoticeMessage) -> str:
    """One line for a notice whose jti is stored with other content (the first is kept)."""
    return (f"a different notice arrived for token {safe(received.jti, 128)}, already "
            f"stored (received {format_time(stored.received_at)}); the stored one is kept")


def _value(value: HealthValue) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return safe(str(value))


def status_lines(device_id: str, status: StatusMessage, *, retained: bool) -> list[str]:
    lines = [f"device {safe(device_id)}: {status.state}"
             + ("" if retained else " (live, not the retained status)")]
    width = max((len(k) for k in status.health), default=0)
    lines += [f"  {name:<{width}}  {_value(value)}" for name, value in
              sorted(status.health.items())]
    return lines


def status_json(device_id: str, status: StatusMessage) -> str:
    payload: dict[str, Any] = {"device": device_id, "state": str(status.state),
                               "health": dict(status.health)}
    return json.dumps(payload, sort_keys=True, ensure_ascii=False)
