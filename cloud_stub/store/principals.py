"""Principals (agency, reviewer, admin) and the lookup of a presented API key."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.domain.api_keys import issue_key, parse_key, secret_matches
from cloud_stub.errors import AuthenticationError, Conflict, HostileInputError
from cloud_stub.store.models import Principal

ROLES = ("agency", "reviewer", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


def check_name(kind: str, name: str) -> str:
    """Raises `HostileInputError` when a principal or organisation name is unusable."""
    if not _NAME.match(name):
        raise HostileInputError(
            f"{kind} name {name!r} must be 1-100 letters, digits, spaces, '.', '_' or '-'"
            " and start with a letter or digit",
            code="bad_name",
        )
    return name


def create_principal(
    session: Session,
    *,
    name: str,
    role: str,
    org: str,
    now: datetime,
    recipient: str | None = None,
) -> tuple[Principal, str]:
    """Create a principal and return it with its API key (shown once, never stored).

    Raises `HostileInputError` for a bad name or role and `Conflict` when the name exists.
    """
    if role not in ROLES:
        raise HostileInputError(f"role {role!r} is not one of {', '.join(ROLES)}")
    check_name(role, name)
    check_name("organisation", org)
    if session.execute(select(Principal).where(Principal.name == name)).first() is not None:
        raise Conflict(f"a principal named {name!r} already exists", code="exists")
    key = issue_key()
    row = Principal(
        id=str(uuid.uuid4()),
        name=name,
        role=role,
        org=org,
        key_id=key.key_id,
        key_sha256=key.secret_sha256,
        recipient=recipient,
        created_at=now,
        disabled=False,
    )
    session.add(row)
    session.flush()
    return row, key.token


def authenticate(session: Session, token: str) -> Principal:
    """The enabled principal holding this API key. Raises `AuthenticationError`."""
    key_id, presented = parse_key(token)
    row = session.execute(select(Principal).where(Principal.key_id == key_id)).scalar_one_or_none()
    stored = row.key_sha256 if row is not None else "0" * 64
    if not secret_matches(presented, stored) or row is None or row.disabled:
        raise AuthenticationError("the API key is not valid")
    return row


def find_principal(session: Session, name: str) -> Principal | None:
    return session.execute(select(Principal).where(Principal.name == name)).scalar_one_or_none()
