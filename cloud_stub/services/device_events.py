"""What devices tell the cloud over MQTT: escrowed keys, token results, status, notices.

Each handler takes a message the strict parser already accepted and the device id from
the topic (a device can only publish under its own id: the broker's ACL), and records it
with an audit entry. A message naming another device than its topic is refused. A token
result is believed only for the bytes the cloud issued (`token_sha256`, or the bytes' own
id ``sha256-<32 hex>``; docs/protocol.md, "Which token a result is about").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.domain.lifecycle import (
    ACTED_ON,
    DEVICE_RESULTS,
    TokenStatus,
    request_after_result,
)
from cloud_stub.errors import HostileInputError
from cloud_stub.services.context import ServiceCore
from cloud_stub.services.escrow import EpochEscrow, Escrow
from cloud_stub.services.issuing import issued_sha256
from cloud_stub.store.models import Device, Manifest, OwnerNotice, Request, Token

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """A token result as the device reported it; `status` is one of `DEVICE_RESULTS`
    once `result_received` accepted it."""

    jti: str
    status: TokenStatus
    reason: str
    detail: str
    clips: tuple[str, ...]
    token_sha256: str = ""  # the token bytes the device judged ("" from an older device)


UNVERIFIED_ID_PREFIX = "sha256-"  # a result under the judged bytes' own id
# Rejections a device makes before the signatures verified: they say nothing about the
# token whose jti the bytes claim. From a device that names no `token_sha256`, such a
# result under a jti is not believed (docs/protocol.md, "Which token a result is about").
UNVERIFIED_REASONS = frozenset(
    {"oversized", "malformed", "bad_header", "bad_signature", "below_threshold"}
)


@dataclass(frozen=True, slots=True)
class Notice:
    jti: str
    released_at: str


class DeviceEvents:
    """Record inbound device messages."""

    def __init__(self, core: ServiceCore, escrow: Escrow) -> None:
        self.core = core
        self.escrow = escrow

    def _device_known(self, session: Session, device_id: str) -> None:
        if not self.core.known_devices(session, [device_id]):
            raise HostileInputError(f"device {device_id!r} is not enrolled", code="unknown_device")

    def escrow_received(self, topic_device: str, item: EpochEscrow) -> bool:
        """Store a sealed epoch key; True when it is stored (new or a redelivery) and may
        be acknowledged. Raises `HostileInputError` for a foreign or conflicting blob."""
        refused = self.escrows_received([(topic_device, item)])[0]
        if refused is not None:
            raise refused
        return True

    def escrows_received(
        self, batch: Sequence[tuple[str, EpochEscrow]]
    ) -> list[HostileInputError | None]:
        """Store a batch of sealed epoch keys, each with its audit entry, in one
        transaction (docs/architecture.md, "Escrows in batches"). Each item is checked as
        `escrow_received` checks it, before anything of it is written: the verdict at its
        index is the `HostileInputError` that refused it (nothing of it stored) or None
        (stored, or already stored: it may be acknowledged once this returns). A refused
        item never fails its neighbours; a store failure (`StoreError`) fails the batch
        and nothing of it is written, so nothing of it may be acknowledged."""
        now = self.core.now()
        verdicts: list[HostileInputError | None] = []
        with self.core.store.transaction() as session:
            known = self.core.known_devices(session, sorted({d for d, _ in batch}))
            for topic_device, item in batch:
                try:
                    self._store_escrow(session, topic_device, item, now, known)
                except HostileInputError as exc:
                    verdicts.append(exc)
                else:
                    verdicts.append(None)
        return verdicts

    def _store_escrow(self, session: Session, topic_device: str, item: EpochEscrow,
                      now: datetime, known: set[str]) -> None:
        """Every check raises before this item writes anything (`Escrow.store` refuses
        before it adds the row), so a refusal leaves the batch's transaction clean."""
        if item.device_id != topic_device:
            raise HostileInputError("escrow names another device than its topic",
                                    code="device_mismatch")
        if topic_device not in known:  # the batch's devices, enrolled (one query)
            raise HostileInputError(f"device {topic_device!r} is not enrolled",
                                    code="unknown_device")
        if self.escrow.store(session, item, now):
            self.core.audit.append(
                session, at=now, actor=f"device:{topic_device}", action="escrow.stored",
                subject=f"epoch:{topic_device}/{item.epoch_id}",
                detail={"start": item.start.isoformat(), "end": item.end.isoformat(),
                        "recipient": item.recipient},
            )

    def result_received(self, topic_device: str, result: Result) -> bool:
        """Update the token and its request; False when nothing changed. A result equal
        to the token's recorded one (same status and reason: the device's outbox re-sent
        it, or it answered a re-published token, ADR 0011) is a no-op without an audit
        entry; a `deferred` arriving after the token moved on is audited but moves
        nothing back, and so is a `rejected` for a token whose manifest was accepted (the
        evidence was received whatever the device's job concluded; a warning is logged)
        and any result for a token a reviewer re-issued (``superseded``: its request
        waits on the new token, `cloud_stub.services.reissuing`).
        Raises `HostileInputError` for a token not issued to this device or an unknown
        status."""
        verdict = self.results_received([(topic_device, result)])[0]
        if isinstance(verdict, HostileInputError):
            raise verdict
        return verdict

    def results_received(
        self, batch: Sequence[tuple[str, Result]]
    ) -> list[bool | HostileInputError]:
        """Record a batch of token results in one transaction, in order, each as
        `result_received` records it (docs/architecture.md, "Results in batches"): the
        verdict at its index is what `result_received` returns for it, or the
        `HostileInputError` that refused it (nothing of it recorded). Every check that
        refuses a result runs before it writes anything, so a refused result never fails
        its neighbours; a store failure (`StoreError`) fails the batch and nothing of it is
        recorded."""
        now = self.core.now()
        verdicts: list[bool | HostileInputError] = []
        with self.core.store.transaction() as session:
            # the rows of the tokens named by jti, in jti order, before any is updated
            self.core.lock_tokens(session, [r.jti for _, r in batch
                                            if not r.jti.startswith(UNVERIFIED_ID_PREFIX)])
            for topic_device, result in batch:
                try:
                    verdicts.append(self._record_result(session, topic_device, result, now))
                except HostileInputError as exc:
                    verdicts.append(exc)
        return verdicts

    def _record_result(self, session: Session, topic_device: str, result: Result,
                       now: datetime) -> bool:
        """`result_received` inside the caller's transaction. Every refusal is raised before
        anything of this result is written. Its audit entry is queued for the commit: a
        batch holds the chain's lock only at its end, never while it waits for a token's
        row (the publisher locks the token, then the chain)."""
        if result.status not in DEVICE_RESULTS:
            raise HostileInputError(f"unknown result status {result.status!r:.30}")
        token = self._judged_token(session, topic_device, result)
        doubt = self._not_believed(token, result)
        if doubt:
            log.warning("result %s (%s) from %s not believed for token %s: %s",
                        result.status, result.reason[:60], topic_device, token.jti, doubt)
            self.core.audit.append_at_commit(
                session, at=now, actor=f"device:{topic_device}",
                action="token.result_ignored", subject=f"token:{token.jti}",
                detail={"status": result.status, "reason": result.reason,
                        "reported_as": result.jti, "token_sha256": result.token_sha256,
                        "why": doubt},
            )
            return False
        result = replace(result, jti=token.jti)
        if token.status == result.status and token.status_reason == result.reason[:200]:
            log.info("result %s for token %s repeated; already recorded",
                     result.status, result.jti)
            return False
        kept = self._state_kept(session, topic_device, token, result)
        if kept is not None:  # audited, but the token's state stays
            self.core.audit.append_at_commit(
                session, at=now, actor=f"device:{topic_device}",
                action=f"token.{result.status}", subject=f"token:{result.jti}",
                detail={"reason": result.reason, "detail": result.detail[:500],
                        "clips": [], "state_kept": token.status, **kept},
            )
            return False
        token.status = result.status
        token.status_reason = result.reason[:200]
        token.updated_at = now
        request = session.get(Request, token.request_id)
        after = None if request is None else request_after_result(request.status,
                                                                    result.status)
        if request is not None and after is not None:
            request.status = after.value
            request.updated_at = now
        self.core.audit.append_at_commit(
            session, at=now, actor=f"device:{topic_device}",
            action=f"token.{result.status}", subject=f"token:{result.jti}",
            detail={"reason": result.reason, "detail": result.detail[:500],
                    "clips": list(result.clips)[:1000]},
        )
        return True

    @staticmethod
    def _judged_token(session: Session, topic_device: str, result: Result) -> Token:
        """The token of this device whose bytes the result judged: by jti, or for a
        result under the bytes' own id (``sha256-<32 hex>``), the token whose issued bytes
        have that sha256 (all of it when `token_sha256` is given). Raises
        `HostileInputError` (``unknown_token``) when this device was issued no such token."""
        if result.jti.startswith(UNVERIFIED_ID_PREFIX):
            prefix = result.jti.removeprefix(UNVERIFIED_ID_PREFIX)
            wanted = result.token_sha256
            if len(prefix) == 32 and (not wanted or wanted.startswith(prefix)):
                for token in session.execute(
                    select(Token).where(Token.device_id == topic_device)
                ).scalars():
                    sha = issued_sha256(token)
                    if sha == wanted or (not wanted and sha.startswith(prefix)):
                        return token
        else:
            found = session.get(Token, result.jti)
            if found is not None and found.device_id == topic_device:
                return found
        raise HostileInputError("result for a token not issued to this device",
                                code="unknown_token")

    @staticmethod
    def _not_believed(token: Token, result: Result) -> str:
        """Why the result says nothing about the bytes issued as `token` ("" when it may be
        believed): it judged other bytes, or (from a device older than `token_sha256`) it
        is a rejection made before the signatures verified, reported under the claimed jti."""
        if result.token_sha256:
            if result.token_sha256 != issued_sha256(token):
                return "it judged other bytes than the token issued under this jti"
            return ""
        if (result.status == TokenStatus.REJECTED and result.reason in UNVERIFIED_REASONS
                and not result.jti.startswith(UNVERIFIED_ID_PREFIX)):
            return ("a rejection made before the signatures verified, under a claimed jti "
                    "and without the sha256 of the bytes judged")
        return ""

    @staticmethod
    def _state_kept(session: Session, topic_device: str, token: Token,
                    result: Result) -> dict[str, Any] | None:
        """None when `result` moves `token` on, else what its audit entry adds: the token
        was re-issued (``superseded``), a `deferred` comes after the device acted on it,
        or a `rejected` after its manifest was accepted (logged)."""
        if token.status == TokenStatus.SUPERSEDED:
            return {}
        if result.status == TokenStatus.DEFERRED and token.status in ACTED_ON:
            return {}
        if result.status == TokenStatus.REJECTED and session.get(Manifest, token.jti) is not None:
            log.warning("token %s: device %s reported it rejected (%s) after its evidence "
                        "was accepted; the token stays %s", token.jti, topic_device,
                        result.reason[:60], token.status)
            return {"evidence_accepted": True}
        return None

    def status_received(self, topic_device: str, state: str, at: datetime | None = None) -> None:
        now = at or self.core.now()
        with self.core.store.transaction() as session:
            self._device_known(session, topic_device)
            device = session.get(Device, topic_device)
            if device is None:
                raise HostileInputError(f"device {topic_device!r} is not enrolled",
                                        code="unknown_device")
            device.last_status = state[:16]
            device.last_status_at = now

    def notice_received(self, topic_device: str, notice: Notice) -> bool:
        """Record that the owner was notified of a release; False for a repeat."""
        now = self.core.now()
        with self.core.store.transaction() as session:
            token = session.get(Token, notice.jti)
            if token is None or token.device_id != topic_device:
                raise HostileInputError("notice for a token not issued to this device",
                                        code="unknown_token")
            seen = session.execute(
                select(OwnerNotice).where(OwnerNotice.device_id == topic_device,
                                          OwnerNotice.jti == notice.jti)
            ).scalar_one_or_none()
            if seen is not None:
                return False
            session.add(OwnerNotice(device_id=topic_device, jti=notice.jti,
                                    released_at=notice.released_at[:40], received_at=now))
            self.core.audit.append(
                session, at=now, actor=f"device:{topic_device}", action="owner.notified",
                subject=f"token:{notice.jti}", detail={"released_at": notice.released_at[:40]},
            )
            return True
