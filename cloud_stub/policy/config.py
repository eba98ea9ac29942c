"""The policy file: typed, closed limits, and the policy tree built from them.

``default-policy.toml`` (packaged next to this module) holds the defaults that
docs/policy.md lists. A deployment may give its own file; an unknown key, a missing file, bad TOML
or a value outside its hard ceiling raises `PolicyFileError` naming the key and file.
The ceilings are the law's or the design's outer bounds (a preservation holds at most
90 days and is renewed at most once; an emergency needs at least two reviewers); a
policy file can tighten every limit and loosen none past them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud_stub.policy.base import AllOf, ForBasis, Policy
from cloud_stub.policy.codes import Code
from cloud_stub.policy.errors import PolicyFileError
from cloud_stub.policy.requests import (
    AnyRequest,
    Basis,
    EmergencyRequest,
    PreservationRequest,
    WarrantRequest,
)
from cloud_stub.policy.rules import (
    EMERGENCY_JUSTIFICATION_FIELDS,
    BoundedWindow,
    CourtSignature,
    DocumentHash,
    EmergencyJustification,
    EmergencyOfficers,
    FieldsPresent,
    FollowUpDue,
    NamedDevices,
    NoticeDelay,
    OrderTypeGivesContent,
    PreservationHold,
    PreservationNoContent,
    PreservationRenewal,
    RecipientValid,
    RefuseVoluntary,
    TokenLifetime,
    WarrantDates,
)

DEFAULT_POLICY_FILE = "default-policy.toml"
MAX_POLICY_FILE_BYTES = 64 * 1024
WARRANT_FIELDS = (
    "court_id", "judge", "docket", "issued", "expires", "document_sha256", "court_signature"
)  # fmt: skip


# --- limits (what the code uses) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BasisLimits:
    """What every basis that names devices and a window bounds."""

    max_window: timedelta
    max_devices: int
    token_lifetime: timedelta  # release token exp - iat
    approvals: int  # distinct reviewers who must approve before signing


@dataclass(frozen=True, slots=True)
class WarrantLimits(BasisLimits):
    max_validity: timedelta  # expires - issued
    max_notice_delay: timedelta  # notify_after - issued


@dataclass(frozen=True, slots=True)
class EmergencyLimits(BasisLimits):
    followup_due: timedelta  # follow-up legal process due within this after the request
    min_justification_chars: int
    min_justification_words: int


@dataclass(frozen=True, slots=True)
class PreservationLimits(BasisLimits):
    max_hold: timedelta
    max_renewals: int


@dataclass(frozen=True, slots=True)
class Limits:
    """All limits of the legal check, with units (docs/policy.md defaults)."""

    warrant: WarrantLimits
    emergency: EmergencyLimits
    preservation: PreservationLimits

    def for_basis(self, basis: Basis | str) -> BasisLimits:
        """The limits of a basis that can be granted. Raises KeyError for ``voluntary``."""
        by_basis: dict[str, BasisLimits] = {
            Basis.WARRANT: self.warrant,
            Basis.EMERGENCY: self.emergency,
            Basis.PRESERVATION: self.preservation,
        }
        return by_basis[str(basis)]

    def approvals(self, basis: Basis) -> int:
        """Distinct reviewers who must approve a request of this basis (one for a
        voluntary request, which the legal check refuses anyway)."""
        if basis is Basis.VOLUNTARY:
            return 1
        return self.for_basis(basis).approvals

    def token_life_s(self, basis: Basis | str) -> int:
        """The longest token life of a basis, in seconds. Raises KeyError for
        ``voluntary``."""
        return int(self.for_basis(basis).token_lifetime.total_seconds())


# --- the file (what the operator writes) -----------------------------------------------------


class _Section(BaseModel):
    # strict: "5" is not 5 and true is not 1 in a file that decides who sees footage
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class WarrantSection(_Section):
    max_window_hours: float = Field(default=72, gt=0, le=31 * 24)
    max_devices: int = Field(default=5, ge=1, le=64)
    max_validity_days: int = Field(default=14, ge=1, le=90)
    max_notice_delay_days: int = Field(default=90, ge=0, le=365)
    token_lifetime_minutes: int = Field(default=1440, ge=1, le=7 * 1440)
    approvals: int = Field(default=1, ge=1, le=9)


class EmergencySection(_Section):
    max_window_hours: float = Field(default=12, gt=0, le=24)
    max_devices: int = Field(default=3, ge=1, le=16)
    token_lifetime_minutes: int = Field(default=60, ge=1, le=240)
    followup_due_hours: float = Field(default=48, gt=0, le=7 * 24)
    approvals: int = Field(default=2, ge=2, le=9)
    min_justification_chars: int = Field(default=30, ge=1, le=2000)
    min_justification_words: int = Field(default=5, ge=1, le=300)


class PreservationSection(_Section):
    max_window_days: float = Field(default=30, gt=0, le=366)
    max_devices: int = Field(default=10, ge=1, le=64)
    max_hold_days: int = Field(default=90, ge=1, le=90)
    max_renewals: int = Field(default=1, ge=0, le=1)
    token_lifetime_minutes: int = Field(default=1440, ge=1, le=7 * 1440)
    approvals: int = Field(default=1, ge=1, le=9)


class PolicyFile(_Section):
    version: Literal[1]
    warrant: WarrantSection = WarrantSection()
    emergency: EmergencySection = EmergencySection()
    preservation: PreservationSection = PreservationSection()

    def limits(self) -> Limits:
        w, e, p = self.warrant, self.emergency, self.preservation
        return Limits(
            warrant=WarrantLimits(
                max_window=timedelta(hours=w.max_window_hours),
                max_devices=w.max_devices,
                token_lifetime=timedelta(minutes=w.token_lifetime_minutes),
                approvals=w.approvals,
                max_validity=timedelta(days=w.max_validity_days),
                max_notice_delay=timedelta(days=w.max_notice_delay_days),
            ),
            emergency=EmergencyLimits(
                max_window=timedelta(hours=e.max_window_hours),
                max_devices=e.max_devices,
                token_lifetime=timedelta(minutes=e.token_lifetime_minutes),
                approvals=e.approvals,
                followup_due=timedelta(hours=e.followup_due_hours),
                min_justification_chars=e.min_justification_chars,
                min_justification_words=e.min_justification_words,
            ),
            preservation=PreservationLimits(
                max_window=timedelta(days=p.max_window_days),
                max_devices=p.max_devices,
                token_lifetime=timedelta(minutes=p.token_lifetime_minutes),
                approvals=p.approvals,
                max_hold=timedelta(days=p.max_hold_days),
                max_renewals=p.max_renewals,
            ),
        )


def parse_policy_file(text: str, *, source: str) -> Limits:
    """Parse policy TOML. Raises `PolicyFileError` naming the key and the file."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{source}: not valid TOML: {exc}") from None
    try:
        return PolicyFile.model_validate(raw).limits()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise PolicyFileError(f"{source}: unknown key {where!r}") from None
        raise PolicyFileError(f"{source}: key {where!r}: {err['msg']}") from None


def default_policy_text() -> str:
    return resources.files("cloud_stub.policy").joinpath(DEFAULT_POLICY_FILE).read_text("utf-8")


def load_limits(policy_file: Path | None = None) -> Limits:
    """The limits from a policy file, or the packaged defaults when ``None``.

    Raises `PolicyFileError` when the file cannot be read or is invalid.
    """
    if policy_file is None:
        return parse_policy_file(default_policy_text(), source=DEFAULT_POLICY_FILE)
    try:
        with policy_file.open("rb") as fh:
            data = fh.read(MAX_POLICY_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyFileError(f"{policy_file}: cannot read the policy file: {exc}") from exc
    if len(data) > MAX_POLICY_FILE_BYTES:
        raise PolicyFileError(f"{policy_file}: larger than {MAX_POLICY_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyFileError(f"{policy_file}: not UTF-8") from None
    return parse_policy_file(text, source=str(policy_file))


# --- the policy tree ------------------------------------------------------------------------


def warrant_policy(limits: WarrantLimits) -> AllOf[WarrantRequest]:
    """Order type, then presence, then particularity and plausibility, then the court's
    signature last (the only costly check)."""
    return AllOf[WarrantRequest](
        [
            OrderTypeGivesContent(),
            FieldsPresent(
                model=WarrantRequest,
                fields=WARRANT_FIELDS,
                code=Code.WARRANT_FIELD_MISSING,
                what="warrant",
            ),
            FieldsPresent(
                model=WarrantRequest,
                fields=("agency", "investigator", "contact", "agency_case_number"),
                code=Code.AGENCY_DETAILS_MISSING,
                what="agency details",
            ),
            NamedDevices(max_devices=limits.max_devices),
            BoundedWindow(max_length=limits.max_window),
            RecipientValid(),
            TokenLifetime(max_lifetime=limits.token_lifetime),
            WarrantDates(max_validity=limits.max_validity),
            DocumentHash(),
            NoticeDelay(max_delay=limits.max_notice_delay),
            CourtSignature(),
        ]
    )


def followup_policy(limits: WarrantLimits) -> AllOf[WarrantRequest]:
    """The follow-up legal process of an emergency disclosure is a search warrant for
    what was disclosed, checked as a warrant is (docs/policy.md, "The follow-up of an
    emergency"): order type, fields, dates, document hash and the court's signature over
    the statement naming the disclosed devices and window. The devices and window come
    from the emergency request, not from the follow-up, so particularity, window and
    recipient were checked already."""
    return AllOf[WarrantRequest](
        [
            OrderTypeGivesContent(),
            FieldsPresent(
                model=WarrantRequest,
                fields=WARRANT_FIELDS,
                code=Code.WARRANT_FIELD_MISSING,
                what="follow-up warrant",
            ),
            WarrantDates(max_validity=limits.max_validity),
            DocumentHash(),
            CourtSignature(),
        ]
    )


def emergency_policy(limits: EmergencyLimits) -> AllOf[EmergencyRequest]:
    return AllOf[EmergencyRequest](
        [
            FieldsPresent(
                model=EmergencyRequest,
                fields=EMERGENCY_JUSTIFICATION_FIELDS,
                code=Code.EMERGENCY_JUSTIFICATION_MISSING,
                what="emergency justification",
            ),
            EmergencyJustification(
                min_chars=limits.min_justification_chars,
                min_words=limits.min_justification_words,
            ),
            EmergencyOfficers(),
            FieldsPresent(
                model=EmergencyRequest,
                fields=("agency", "contact", "agency_case_number"),
                code=Code.AGENCY_DETAILS_MISSING,
                what="agency details",
            ),
            NamedDevices(max_devices=limits.max_devices),
            BoundedWindow(max_length=limits.max_window),
            RecipientValid(),
            TokenLifetime(max_lifetime=limits.token_lifetime),
            FollowUpDue(max_delay=limits.followup_due),
        ]
    )


def preservation_policy(limits: PreservationLimits) -> AllOf[PreservationRequest]:
    return AllOf[PreservationRequest](
        [
            PreservationNoContent(),
            FieldsPresent(
                model=PreservationRequest,
                fields=("agency", "investigator", "contact", "agency_case_number"),
                code=Code.AGENCY_DETAILS_MISSING,
                what="agency details",
            ),
            NamedDevices(max_devices=limits.max_devices),
            BoundedWindow(max_length=limits.max_window),
            PreservationHold(max_hold=limits.max_hold),
            PreservationRenewal(max_renewals=limits.max_renewals),
        ]
    )


def policy_for_limits(limits: Limits) -> Policy[AnyRequest]:
    """The whole legal check for these limits."""
    return ForBasis(
        warrant=warrant_policy(limits.warrant),
        emergency=emergency_policy(limits.emergency),
        preservation=preservation_policy(limits.preservation),
        voluntary=RefuseVoluntary(),
    )


def build_policy(policy_file: Path | None = None) -> Policy[AnyRequest]:
    """The legal check from a policy file (packaged defaults when ``None``).

    Raises `PolicyFileError` when the file is unreadable or invalid.
    """
    return policy_for_limits(load_limits(policy_file))
