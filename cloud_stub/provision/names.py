"""What the operator may name things: device ids, the topic prefix, hosts, the cloud id.

A device id becomes an MQTT topic segment, a certificate CN, the MQTT username the ACL
substitutes for ``%u``, and a directory name, so it is held to the narrowest alphabet
that is safe in all four. Each check raises `InvalidName` naming the value and the rule.

The owner of a device connects as ``owner.<device id>`` (`owner_mqtt_user`): a device id
never holds a '.', so no device can ever be an owner and no owner a device. That name is
a certificate CN too, and X.509 caps a CN at 64 characters, so a device to be enrolled
has an id of at most 58 (`MAX_OWNED_DEVICE_ID`).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from cloud_stub.provision.errors import InvalidName

DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
CLOUD_MQTT_USER = "cloud"  # CN of the cloud's MQTT certificate; the ACL's `user cloud`
# Every owner's MQTT user is "owner." + a device id. "owner" alone stays reserved: older
# ACLs had a `user owner` reading every device's notices.
OWNER_MQTT_USER = "owner"
MAX_COMMON_NAME = 64  # RFC 5280 ub-common-name: the longest CN a certificate may carry
MAX_OWNED_DEVICE_ID = MAX_COMMON_NAME - len(OWNER_MQTT_USER) - 1  # 58: "owner." + id fits
# Names the ACL gives a meaning of their own; a device with one of them would inherit it.
RESERVED_IDS = frozenset({CLOUD_MQTT_USER, OWNER_MQTT_USER, "broker", "ca"})
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_CLOUD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
MAX_PREFIX_SEGMENTS = 8


def check_device_id(device_id: str) -> str:
    """Return `device_id` if it matches ``[a-z0-9][a-z0-9-]{0,62}`` and is not reserved."""
    if not DEVICE_ID.fullmatch(device_id):
        raise InvalidName(
            f"device id {device_id!r} is not allowed: use 1 to 63 characters of a-z, 0-9 "
            "and '-', starting with a letter or digit"
        )
    if device_id in RESERVED_IDS:
        raise InvalidName(f"device id {device_id!r} is reserved for the broker's own users")
    return device_id


def owner_mqtt_user(device_id: str) -> str:
    """The MQTT username (certificate CN) of the owner of `device_id`: ``owner.<id>``.

    Raises InvalidName when `device_id` is not a device id, or is longer than
    `MAX_OWNED_DEVICE_ID` so that the name would not fit a certificate's CN.
    """
    check_device_id(device_id)
    if len(device_id) > MAX_OWNED_DEVICE_ID:
        raise InvalidName(
            f"device id {device_id!r} has {len(device_id)} characters: its owner's "
            f"certificate name {OWNER_MQTT_USER}.<id> must fit the {MAX_COMMON_NAME} "
            f"characters of an X.509 common name, so enrol ids of at most "
            f"{MAX_OWNED_DEVICE_ID} characters"
        )
    return f"{OWNER_MQTT_USER}.{device_id}"


def check_prefix(prefix: str) -> str:
    """Return `prefix` if it is 1..8 '/'-separated segments of ``[A-Za-z0-9_.-]``.

    No wildcard, no '%' (the ACL substitutes it), no empty segment, no leading '$'.
    """
    segments = prefix.split("/")
    if len(segments) > MAX_PREFIX_SEGMENTS or not all(
        _PREFIX_SEGMENT.fullmatch(s) for s in segments
    ):
        raise InvalidName(
            f"topic prefix {prefix!r} is not allowed: use up to {MAX_PREFIX_SEGMENTS} "
            "segments of A-Z, a-z, 0-9, '_', '.', '-' separated by single '/'"
        )
    return prefix


def check_cloud_id(cloud_id: str) -> str:
    """Return `cloud_id` (the token issuer) if it is a short printable name."""
    if not _CLOUD_ID.fullmatch(cloud_id):
        raise InvalidName(
            f"cloud id {cloud_id!r} is not allowed: use 1 to 64 characters of A-Z, a-z, "
            "0-9, '_', '.', '-', starting with a letter or digit"
        )
    return cloud_id


def check_host(host: str) -> str:
    """Return `host` if it is an IP address or a DNS name (it goes into the broker's SAN)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise InvalidName(
                f"broker host {host!r} is neither an IP address nor a DNS name"
            ) from None
    return host


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise InvalidName(f"port {port} is outside 1..65535")
    return port


def check_url(url: str) -> str:
    """Return `url` if it is an absolute http(s) URL without credentials or query."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidName(f"API URL {url!r} must be an absolute http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidName(f"API URL {url!r} must not carry credentials, a query or a fragment")
    return url.rstrip("/")


def check_user_name(user: str) -> str:
    """Return `user` if it is a POSIX user name (the user mosquitto drops to)."""
    if not _USER_NAME.fullmatch(user):
        raise InvalidName(f"broker user {user!r} is not a user name")
    return user
