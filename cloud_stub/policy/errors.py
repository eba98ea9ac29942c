"""The policy package's errors.

`PolicyViolation` is the one refusal the legal check makes: a stable `Code` plus a
human reason. It is the expected outcome for hostile or mistaken requests, never a
crash. Files the operator provides (the policy file, the court registry, a court key)
that are missing or ill-formed raise subclasses of the service's `ConfigError`.
"""

from __future__ import annotations

from cloud_stub.errors import ConfigError
from cloud_stub.policy.codes import Code


class PolicyViolation(Exception):
    """A request breaks a rule. ``code`` is stable; ``reason`` is for humans."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class PolicyFileError(ConfigError):
    """The policy file is missing, not TOML, or has an unknown or out-of-range key."""

    code = "policy_file_invalid"


class CourtRegistryError(ConfigError):
    """The court registry (or a court key) is missing or ill-formed."""

    code = "court_registry_invalid"
