"""Prepared payloads under trust root v2: the token rows in status ``prepared`` that wait
for the reviewers' signatures, for an approval (`cloud_stub.services.signed_review`) or a
re-issue (`cloud_stub.services.signed_reissue`), and how one leaves that status when it
can no longer be signed (docs/adr/0013-trust-root-v2.md, "Prepared payloads that can no
longer be signed").

A prepared row that nothing can sign any more is never left ``prepared``: the step that
learns it (a reviewer asking for the payload, a reviewer's signatures, a denial, the
legal check run again) marks it ``discarded`` with a named reason in the same
transaction, which commits even when that step then refuses, and audits it
(`DISCARDED_ACTION`: who, which tokens, the reason, and the reviewers whose signatures
are dropped with them). A discarded payload is never signed; a new one is prepared when
the request can be released again.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.domain.lifecycle import TokenStatus
from cloud_stub.store.audit_log import AuditTrail
from cloud_stub.store.models import Token
from protocol.release_signing import DetachedSignature

REISSUE_OF = "re-issue of "  # a prepared re-issue row's status_reason: + the refused jti
DISCARDED_ACTION = "token.prepared_discarded"

# The named reasons a prepared payload is discarded with (its ``status_reason`` starts
# with one, then ": " and the words); the legal check's own codes (``warrant_expired``,
# ``device_revoked``...) and ``not_reissuable`` name the rest.
EXPIRED = "expired"  # its ``exp`` passed before the signatures needed were in
REQUEST_CLOSED = "request_closed"  # the request left review (denied, or refused)
TOKENS_CHANGED = "tokens_changed"  # a re-issue: the tokens to re-issue are others now
LATER_ISSUED = "later_token"  # a re-issue: the device was issued a later token since


def stored(token: Token) -> tuple[str, list[DetachedSignature]]:
    """The payload segment of a prepared token row and the signatures collected on it."""
    doc = json.loads(token.jws)
    return doc["payload"], [DetachedSignature(s["protected"], s["signature"])
                            for s in doc["signatures"]]


def prepared_rows(session: Session, request_id: str, *, reissue: bool) -> list[Token]:
    """The request's token rows waiting for reviewer signatures, by device: those of a
    re-issue (`replaced_jti`) when `reissue`, else those of its approval."""
    rows = session.execute(
        select(Token).where(Token.request_id == request_id,
                            Token.status == TokenStatus.PREPARED)
        .order_by(Token.device_id)
    ).scalars()
    return [t for t in rows if bool(replaced_jti(t)) == reissue]


def replaced_jti(token: Token) -> str:
    """The jti of the refused token a prepared re-issue row replaces ("" for another row)."""
    reason = token.status_reason or ""
    return reason.removeprefix(REISSUE_OF) if reason.startswith(REISSUE_OF) else ""


def signers(token: Token) -> list[dict[str, str]]:
    """Who signed a prepared row so far: a re-issue row keeps each reviewer's kid, name,
    organisation and reason; an approval row the key id of each signature (the
    reviewers are in its request's decisions)."""
    doc = json.loads(token.jws)
    if doc.get("reviews"):
        return [{k: str(r[k]) for k in ("kid", "name", "org")} for r in doc["reviews"]]
    return [{"kid": _kid(s["protected"])} for s in doc["signatures"]]


def _kid(protected: str) -> str:
    try:
        header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    except (binascii.Error, ValueError):
        return ""
    return str(header.get("kid", "")) if isinstance(header, dict) else ""


def discard(audit: AuditTrail, session: Session, tokens: Sequence[Token], *, code: str,
            why: str, actor: str, now: datetime) -> None:
    """Take `tokens`, prepared rows of one request, out of ``prepared`` for good: status
    ``discarded``, reason ``<code>: <why>`` (a re-issue row keeps the token it was to
    replace: ``... (re-issue of <jti>)``), and one ``token.prepared_discarded`` entry
    queued for the commit naming who (`actor`), the reason, and per token its device,
    the token it was to replace and the signatures dropped with it. Nothing when
    `tokens` is empty."""
    if not tokens:
        return
    entries: list[dict[str, Any]] = []
    for token in tokens:
        old = replaced_jti(token)
        entries.append({"jti": token.jti, "device": token.device_id, "replaces": old,
                        "signatures_dropped": signers(token)})
        token.status = TokenStatus.DISCARDED.value
        token.status_reason = f"{code}: {why}" + (f" ({REISSUE_OF}{old})" if old else "")
        token.updated_at = now
    session.flush()
    audit.append_at_commit(session, at=now, actor=actor, action=DISCARDED_ACTION,
                           subject=f"request:{tokens[0].request_id}",
                           detail={"code": code, "reason": why, "tokens": entries})
