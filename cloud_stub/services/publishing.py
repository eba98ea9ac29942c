"""Handing issued tokens to the broker, and publishing again those no result answered.

Tokens are signed inside the approval's transaction (`cloud_stub.services.issuing`);
`Publisher.publish` hands them to the broker after the commit. A token the broker did
not take stays ``issued`` and is published again when the MQTT link reconnects, and on
the link's next redelivery pass (`pending`). A ``published`` token that no device result
has answered is published again with backoff until its ``exp`` (`redeliver`, policy in
`cloud_stub.domain.redelivery_policy`, ADR 0011): the broker's acknowledgement does not
prove the device will ever get it. Under a trust root with a log policy a token goes out
only with its release-log proof (`cloud_stub.services.release_log`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select

from cloud_stub.domain.lifecycle import TokenStatus
from cloud_stub.domain.redelivery_policy import (
    PublishedToken,
    RedeliveryPolicy,
    due_for_redelivery,
)
from cloud_stub.errors import CloudError
from cloud_stub.services.context import ReleasePublisher, ServiceCore
from cloud_stub.services.release_log import DeploymentLog, LogClientError
from cloud_stub.store.models import AuditRow, Device, Token

log = logging.getLogger(__name__)

PUBLISHED_ACTION = "token.published"
REPUBLISHED_ACTION = "token.republished"


@dataclass(frozen=True, slots=True)
class PublishHistory:
    """From the audit log: the last publish of a token and how many were re-publishes."""

    last_published_at: datetime
    republished: int

class Publisher:
    """Publishes issued tokens, and publishes again the ones awaiting a result."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core
        section = core.settings.redelivery
        self.redelivery = RedeliveryPolicy(initial_s=section.initial_s, max_s=section.max_s)
        self._history: dict[str, PublishHistory] = {}  # cache of the audit log, by jti
        self._redeliver_lock = threading.RLock()  # guards the cache; redeliver is re-entrant
        # under a trust root with a log policy, tokens go out only with their log proof
        # (docs/protocol.md section 11)
        self.release_log = DeploymentLog(core.layout, now=core.now)

    def publish(self, jtis: list[str]) -> None:
        """Hand issued tokens to the broker; a failure leaves them ``issued`` for a retry."""
        publisher = self.core.publisher
        if publisher is None:
            return
        taken: dict[str, str] = {}
        for jti in jtis:
            device_id = self._hand_to_broker(publisher, jti, TokenStatus.ISSUED, "published")
            if device_id is not None:
                taken[jti] = device_id
        if not taken:
            return
        # the broker took them: one transaction marks them all, their rows locked in jti
        # order as a batch of results locks them (docs/architecture.md, "Results in
        # batches"), the audit entries linked at the commit
        now = self.core.now()
        with self.core.store.transaction() as session:
            locked = self.core.lock_tokens(session, list(taken))
            for jti, device_id in taken.items():  # audited in the order they were taken
                token = locked.get(jti)
                if token is None or token.status != TokenStatus.ISSUED:
                    continue  # gone, or its result came first
                token.status = TokenStatus.PUBLISHED.value
                token.updated_at = now
                self.core.audit.append_at_commit(
                    session,
                    at=now,
                    actor="service:mqtt",
                    action=PUBLISHED_ACTION,
                    subject=f"token:{jti}",
                    detail={"device": device_id},
                )

    def _hand_to_broker(self, publisher: ReleasePublisher, jti: str, status: str,
                        what: str) -> str | None:
        """Publish token `jti` while it has `status`; its device when the broker took
        it, None when the token is gone or moved on, or the publish failed (logged)."""
        with self.core.store.read() as session:
            token = session.get(Token, jti)
            if token is None or token.status != status:
                return None
            device_id, jws = token.device_id, token.jws
            device = session.get(Device, device_id)
            identity = "" if device is None else device.identity_pub
        try:
            # the statement logged and cosigned by the witness quorum before it is sent
            payload = self.release_log.with_proof(device_id, identity, jws.encode("utf-8"))
        except LogClientError as exc:
            log.warning("token %s not %s yet: no release-log proof: %s", jti, what, exc)
            return None
        try:
            publisher.publish_release(device_id, payload)
        except CloudError as exc:
            log.warning("token %s not %s yet: %s", jti, what, exc)
            return None
        return device_id

    def pending(self) -> list[str]:
        """Tokens issued but not yet taken by the broker, oldest first."""
        with self.core.store.transaction() as session:
            return list(
                session.execute(
                    select(Token.jti)
                    .where(Token.status == TokenStatus.ISSUED)
                    .order_by(Token.issued_at, Token.seq)
                ).scalars()
            )

    # --- re-publishing tokens that no result answered (ADR 0011) -----------------------

    def awaiting_result(self, now: datetime) -> list[PublishedToken]:
        """Unexpired ``published`` tokens with their publish history, oldest first."""
        with self._redeliver_lock, self.core.store.read() as session:
            rows = session.execute(
                select(Token.jti, Token.status, Token.expires_at, Token.updated_at)
                .where(Token.status == TokenStatus.PUBLISHED, Token.expires_at > now)
                .order_by(Token.issued_at, Token.seq)
            ).all()
            live = {row.jti for row in rows}
            for gone in set(self._history) - live:
                del self._history[gone]
            missing = [jti for jti in live if jti not in self._history]
            if missing:
                self._history.update(self._read_history(session, missing))
        out = []
        for row in rows:
            # no audit entry (a store older than the audit of publishes): the row's time
            known = self._history.get(row.jti) or PublishHistory(row.updated_at, 0)
            out.append(PublishedToken(jti=row.jti, status=row.status,
                                      expires_at=row.expires_at,
                                      last_published_at=known.last_published_at,
                                      republished=known.republished))
        return out

    @staticmethod
    def _read_history(session: Any, jtis: list[str]) -> dict[str, PublishHistory]:
        prefix = "token:"
        rows = session.execute(
            select(AuditRow.subject, func.max(AuditRow.at),
                   func.sum(case((AuditRow.action == REPUBLISHED_ACTION, 1), else_=0)))
            .where(AuditRow.action.in_((PUBLISHED_ACTION, REPUBLISHED_ACTION)),
                   AuditRow.subject.in_([prefix + jti for jti in jtis]))
            .group_by(AuditRow.subject)
        ).all()
        return {subject.removeprefix(prefix): PublishHistory(last, int(republished))
                for subject, last, republished in rows}

    def redeliver(self, now: datetime) -> list[str]:
        """Publish again every token the policy says is due at `now`; returns those the
        broker took. Each is audited as ``token.republished`` with its attempt number.
        A publish the broker does not take is tried again on a later pass."""
        with self._redeliver_lock:
            return self._redeliver_locked(now)

    def _redeliver_locked(self, now: datetime) -> list[str]:
        publisher = self.core.publisher
        if publisher is None:
            return []
        waiting = {token.jti: token for token in self.awaiting_result(now)}
        done = []
        for jti in due_for_redelivery(waiting.values(), now=now, policy=self.redelivery):
            # None also when a result arrived meanwhile (the token left `published`)
            device_id = self._hand_to_broker(publisher, jti, TokenStatus.PUBLISHED,
                                             "published again")
            if device_id is None:
                continue
            at = self.core.now()
            attempt = waiting[jti].republished + 1
            with self.core.store.transaction() as session:
                self.core.audit.append(
                    session,
                    at=at,
                    actor="service:mqtt",
                    action=REPUBLISHED_ACTION,
                    subject=f"token:{jti}",
                    detail={"device": device_id, "attempt": attempt,
                            "reason": "no device result yet"},
                )
            self._history[jti] = PublishHistory(at, attempt)
            log.info("token %s published again (attempt %d): no result from %s yet",
                     jti, attempt, device_id)
            done.append(jti)
        return done
