"""State and helpers shared by the service's parts (intake, review, issuing, publishing,
evidence, device events). `cloud_stub.services.cloud_service.CloudService` wires them
together; the HTTP API, the MQTT consumer and the CLI are thin layers over that.

Each public method runs in its own store transaction (or a few, when a side effect
outside the database must happen after a commit, such as publishing a token), takes
the caller as an argument, and raises the service's errors (`NotFound`, `Forbidden`,
`Conflict`, `HostileInputError`, `StoreError`, ...).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.config import DeploymentSettings, ServiceLimits
from cloud_stub.domain.summaries import RequestSummary
from cloud_stub.errors import Forbidden, NotFound
from cloud_stub.services.device_registry import SyncReport, sync_devices
from cloud_stub.services.summarise import request_summary
from cloud_stub.store import Store
from cloud_stub.store.audit_log import AuditTrail
from cloud_stub.store.evidence_files import EvidenceFiles, HashState
from cloud_stub.store.models import Decision, Device, Principal, Request, Token
from cloud_stub.store.principals import authenticate
from protocol.bundle import DeploymentLayout

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PrincipalCaller:
    """An authenticated agency, reviewer or admin."""

    id: str
    name: str
    role: str
    org: str

    @property
    def label(self) -> str:
        return f"{self.role}:{self.name}"


@dataclass(frozen=True, slots=True)
class DeviceCaller:
    """A device whose request was signed by its enrolled identity under an issued token.

    ``token_status`` and ``size_cap`` are the token's as read in the same transaction as
    the check; ``body_hash`` is the SHA-256 state after the body's last byte (the
    evidence files continue it instead of hashing the bytes again)."""

    device_id: str
    jti: str
    body: bytes
    token_status: str = ""
    size_cap: int = 0
    body_hash: HashState | None = None

    @property
    def label(self) -> str:
        return f"device:{self.device_id}"


class ReleasePublisher(Protocol):
    """Where issued tokens go (the MQTT link). ``publish`` returns once the broker has it."""

    def publish_release(self, device_id: str, payload: bytes) -> None:
        """Raises `TransportError` when the broker does not take the message."""
        ...


def caller_of(row: Principal) -> PrincipalCaller:
    return PrincipalCaller(id=row.id, name=row.name, role=row.role, org=row.org)


class _HasCore(Protocol):
    core: ServiceCore


_S = TypeVar("_S", bound=_HasCore)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def takes_a_signing_slot(
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """Run the service method only while holding one of `ServiceCore.signing_slots`:
    approvals and re-issues are CPU-bound (the legal check again, sealing epoch keys to
    each device, signing), and twenty at once on one interpreter starve the MQTT worker
    that records device results (docs/architecture.md, "One approval signs at a time")."""

    @functools.wraps(method)
    def holding_a_slot(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.core.signing_slots:
            return method(self, *args, **kwargs)

    return holding_a_slot


class ServiceCore:
    """State shared by the service's parts. Construct through `CloudService`."""

    def __init__(
        self,
        *,
        layout: DeploymentLayout,
        settings: DeploymentSettings,
        store: Store,
        limits: ServiceLimits,
        clock: Clock,
    ) -> None:
        self.layout = layout
        self.settings = settings
        self.store = store
        self.limits = limits
        self.clock = clock
        self.audit = AuditTrail(store)
        self.files = EvidenceFiles(layout.evidence_dir)
        self.publisher: ReleasePublisher | None = None
        self._publisher_lock = threading.Lock()
        self.signing_slots = threading.BoundedSemaphore(limits.signing_at_once)

    def now(self) -> datetime:
        value = self.clock()
        if value.tzinfo is None:
            raise ValueError("the service clock returned a naive datetime")
        return value.astimezone(UTC).replace(microsecond=0)

    def set_publisher(self, publisher: ReleasePublisher | None) -> None:
        with self._publisher_lock:
            self.publisher = publisher

    # --- shared reads -------------------------------------------------------------------

    def load_request(self, session: Session, request_id: str, *, lock: bool = False) -> Request:
        stmt = select(Request).where(Request.id == request_id)
        if lock and self.store.locks_rows:
            stmt = stmt.with_for_update()
        row = session.execute(stmt).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no request {request_id[:40]!r}")
        return row

    def lock_tokens(self, session: Session, jtis: list[str]) -> dict[str, Token]:
        """The tokens of these jtis that exist, their rows locked until the transaction
        ends, in jti order (``SELECT ... ORDER BY jti FOR UPDATE``; SQLite's writer lock
        already serializes): a transaction that updates several tokens takes their rows
        in one order, so two of them never wait on each other (docs/architecture.md,
        "Results in batches")."""
        wanted = sorted(set(jtis))
        if not wanted:
            return {}
        stmt = select(Token).where(Token.jti.in_(wanted)).order_by(Token.jti)
        if self.store.locks_rows:
            stmt = stmt.with_for_update()
        return {token.jti: token for token in session.execute(stmt).scalars()}

    def visible_request(self, session: Session, caller: PrincipalCaller, request_id: str
                        ) -> Request:
        """The request if the caller may see it. An agency asking for another agency's
        request gets `NotFound`, exactly as for a request that does not exist."""
        row = self.load_request(session, request_id)
        if caller.role == "agency" and row.agency_id != caller.id:
            raise NotFound(f"no request {request_id[:40]!r}")
        if caller.role not in ("agency", "reviewer", "admin"):
            raise Forbidden("this principal may not read requests")
        return row

    def summary(self, session: Session, row: Request) -> RequestSummary:
        agency = session.get(Principal, row.agency_id)
        if agency is None:
            raise NotFound(f"the agency of request {row.id} no longer exists")
        decisions = session.execute(
            select(Decision, Principal)
            .join(Principal, Principal.id == Decision.reviewer_id)
            .where(Decision.request_id == row.id)
            .order_by(Decision.id)
        ).all()
        tokens = session.execute(
            select(Token).where(Token.request_id == row.id).order_by(Token.device_id, Token.seq)
        ).scalars().all()
        return request_summary(row, agency, [(d, p) for d, p in decisions], list(tokens))

    # --- principals and devices ---------------------------------------------------------

    def authenticate(self, api_key: str) -> PrincipalCaller:
        """Raises `AuthenticationError`."""
        with self.store.transaction() as session:
            return caller_of(authenticate(session, api_key))

    def sync_devices(self) -> SyncReport:
        with self.store.transaction() as session:
            report = sync_devices(session, self.layout, self.now())
        for device_id, why in report.skipped:
            log.warning("device record %s skipped: %s", device_id, why)
        return report

    def known_devices(self, session: Session, device_ids: list[str]) -> set[str]:
        """Which of these devices are enrolled. A device enrolled while the service runs
        is picked up here: an unknown id triggers one re-sync of the registry."""
        def known() -> set[str]:
            rows = session.execute(select(Device.id).where(Device.id.in_(device_ids)))
            return set(rows.scalars().all())

        found = known()
        if len(found) < len(set(device_ids)):
            sync_devices(session, self.layout, self.now())
            found = known()
        return found

    def revoked_devices(self, session: Session, device_ids: list[str]) -> list[str]:
        """Which of these devices are revoked (`Device.revoked_at`), sorted."""
        rows = session.execute(
            select(Device.id).where(Device.id.in_(device_ids), Device.revoked_at.is_not(None))
        )
        return sorted(rows.scalars().all())

    def principal_names(self, session: Session, ids: Mapping[str, str]) -> dict[str, str]:
        rows = session.execute(select(Principal).where(Principal.id.in_(list(ids)))).scalars()
        return {r.id: r.name for r in rows}
