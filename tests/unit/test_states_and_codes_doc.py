"""docs/states-and-codes.md names every request status, every token status and every
code the service raises, so a person who meets one can look it up."""

from __future__ import annotations

import re
from pathlib import Path

from cloud_stub.domain.lifecycle import RequestStatus as Status
from cloud_stub.domain.lifecycle import TokenStatus

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "states-and-codes.md").read_text()
CODE = re.compile(r'code="([a-z_0-9]+)"')


def _documented(word: str) -> bool:
    return f"`{word}`" in DOC


def test_every_request_status_is_explained() -> None:
    assert [s.value for s in Status if not _documented(s.value)] == []


def test_every_token_status_is_explained() -> None:
    statuses = [v for k, v in vars(TokenStatus).items() if k.isupper() and isinstance(v, str)]
    assert statuses
    assert [s for s in statuses if not _documented(s)] == []


def test_every_service_code_is_explained() -> None:
    codes = set()
    for path in (ROOT / "cloud_stub").rglob("*.py"):
        codes.update(CODE.findall(path.read_text()))
    codes |= {"device_not_enrolled", "device_revoked", "no_escrowed_epochs"}
    assert sorted(c for c in codes if not _documented(c)) == []


def test_no_escrowed_epochs_is_said_in_plain_words() -> None:
    line = next(row for row in DOC.splitlines() if row.startswith("| `no_escrowed_epochs`"))
    assert "no footage can be released" in line
    assert "epoch" not in line.split("|")[2]
