"""The legal check: request models, composable policy objects, the court registry.

Typical use by the service::

    policy = build_policy(policy_file)          # or None for the packaged defaults
    limits = load_limits(policy_file)            # token lifetimes and approvals per basis
    request = parse_request_json(body)           # pydantic ValidationError -> 422
    policy.check(request, PolicyContext(now=..., courts=..., requester=...))
    # PolicyViolation(code, reason) -> refuse with the code

Everything here is pure apart from reading the policy file, the court registry and a
court key (the tester's `cloud-stub court sign`).
"""

from cloud_stub.policy.base import AllOf, ForBasis, Policy, PolicyContext, PreservationRecord
from cloud_stub.policy.codes import DESCRIPTIONS, Code
from cloud_stub.policy.config import Limits, build_policy, load_limits, policy_for_limits
from cloud_stub.policy.courts import (
    Court,
    CourtRegistry,
    WarrantStatement,
    load_court_registry,
    parse_court_registry,
    sign_warrant,
    verify_warrant_signature,
)
from cloud_stub.policy.errors import CourtRegistryError, PolicyFileError, PolicyViolation
from cloud_stub.policy.requests import (
    AgencyRequest,
    AnyRequest,
    Basis,
    EmergencyRequest,
    OrderType,
    PreservationRequest,
    VoluntaryRequest,
    WarrantRequest,
    Window,
    basis_of,
    parse_request,
    parse_request_json,
)

__all__ = [
    "DESCRIPTIONS",
    "AgencyRequest",
    "AllOf",
    "AnyRequest",
    "Basis",
    "Code",
    "Court",
    "CourtRegistry",
    "CourtRegistryError",
    "EmergencyRequest",
    "ForBasis",
    "Limits",
    "OrderType",
    "Policy",
    "PolicyContext",
    "PolicyFileError",
    "PolicyViolation",
    "PreservationRecord",
    "PreservationRequest",
    "VoluntaryRequest",
    "WarrantRequest",
    "WarrantStatement",
    "Window",
    "basis_of",
    "build_policy",
    "load_court_registry",
    "load_limits",
    "parse_court_registry",
    "parse_request",
    "parse_request_json",
    "policy_for_limits",
    "sign_warrant",
    "verify_warrant_signature",
]
