"""Every rule of docs/policy.md, each a small object with one ``check``.

Each rule announces the codes it can raise in ``codes`` and takes its limits as
keyword-only constructor arguments (with their units in the name). Rules never read
the clock or a file: ``ctx.now`` is the time, ``ctx.courts`` the court registry.
docs/policy.md lists every rule, its codes, its default limit and where it comes from.
The rules every basis shares are in `common_rules`, those of one basis in
`warrant_rules`, `emergency_rules` and `preservation_rules` (with the refusal of a
voluntary request); this module gathers them all.
"""

from __future__ import annotations

from cloud_stub.policy.common_rules import (
    BoundedWindow,
    FieldsPresent,
    NamedDevices,
    RecipientValid,
    TokenLifetime,
)
from cloud_stub.policy.emergency_rules import (
    EMERGENCY_JUSTIFICATION_FIELDS,
    PLACEHOLDERS,
    EmergencyJustification,
    EmergencyOfficers,
    FollowUpDue,
)
from cloud_stub.policy.preservation_rules import (
    PreservationHold,
    PreservationNoContent,
    PreservationRenewal,
    RefuseVoluntary,
)
from cloud_stub.policy.warrant_rules import (
    CourtSignature,
    DocumentHash,
    NoticeDelay,
    OrderTypeGivesContent,
    WarrantDates,
)

__all__ = [
    "EMERGENCY_JUSTIFICATION_FIELDS",
    "PLACEHOLDERS",
    "BoundedWindow",
    "CourtSignature",
    "DocumentHash",
    "EmergencyJustification",
    "EmergencyOfficers",
    "FieldsPresent",
    "FollowUpDue",
    "NamedDevices",
    "NoticeDelay",
    "OrderTypeGivesContent",
    "PreservationHold",
    "PreservationNoContent",
    "PreservationRenewal",
    "RecipientValid",
    "RefuseVoluntary",
    "TokenLifetime",
    "WarrantDates",
]
