"""c2sp.org/tlog-policy: which logs and witnesses are trusted, and the witness quorum.

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> all|any|<k> <name>...
    quorum <name>|none

Lines are separated by newlines, items by spaces and tabs; blank lines and `#` comments
are ignored; groups and the quorum refer only to names defined above them; exactly one
quorum line; no duplicate keys; each name at most once per group. Log vkeys carry
signature type 0x01 (the checkpoint signature), witness vkeys 0x04 (cosignature/v1).
`PolicyError` names the offending line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from protocol.tlog.errors import NoteError, PolicyError
from protocol.tlog.note import SignatureType, Verifier, parse_vkey

NONE = "none"
MAX_ENTRIES = 32  # logs, witnesses and groups each; the spec's recommended floor


@dataclass(frozen=True)
class Group:
    """At least `threshold` of `members` (witness or group names) must have witnessed."""

    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Witness:
    name: str
    verifier: Verifier
    url: str | None = None


@dataclass(frozen=True)
class Log:
    verifier: Verifier
    url: str | None = None

    @property
    def origin(self) -> str:
        return self.verifier.name


@dataclass(frozen=True)
class WitnessPolicy:
    """A parsed tlog-policy file."""

    logs: tuple[Log, ...]
    witnesses: Mapping[str, Witness]
    groups: Mapping[str, Group] = field(default_factory=lambda: MappingProxyType({}))
    quorum: str = NONE

    def log_for(self, origin: str) -> Log | None:
        for log in self.logs:
            if log.origin == origin:
                return log
        return None

    @property
    def witness_verifiers(self) -> tuple[Verifier, ...]:
        return tuple(w.verifier for w in self.witnesses.values())

    def satisfied(self, witnessed: Iterable[str]) -> bool:
        """Whether the witnesses named in `witnessed` (cosignatures that verified) make
        the quorum."""
        have = frozenset(witnessed)

        def holds(name: str) -> bool:
            if name in self.witnesses:
                return name in have
            group = self.groups[name]
            return sum(1 for member in group.members if holds(member)) >= group.threshold

        return self.quorum == NONE or holds(self.quorum)

    def encode(self) -> str:
        lines = [
            f"log {log.verifier.vkey}" + (f" {log.url}" if log.url else "") for log in self.logs
        ]
        for w in self.witnesses.values():
            lines.append(f"witness {w.name} {w.verifier.vkey}" + (f" {w.url}" if w.url else ""))
        for name, group in self.groups.items():
            lines.append(f"group {name} {group.threshold} {' '.join(group.members)}")
        lines.append(f"quorum {self.quorum}")
        return "\n".join(lines) + "\n"


def _vkey(value: str, sig_type: SignatureType, number: int) -> Verifier:
    try:
        verifier = parse_vkey(value)
    except NoteError as exc:
        raise PolicyError(f"line {number}: {exc}") from None
    if verifier.sig_type is not sig_type:
        raise PolicyError(
            f"line {number}: the key has signature type {verifier.sig_type:#04x}, "
            f"expected {sig_type:#04x}"
        )
    return verifier


def parse_policy(data: bytes) -> WitnessPolicy:
    """Parse a tlog-policy file; PolicyError names the first bad line."""
    bad = sorted({b for b in data if (b < 0x20 and b not in (0x09, 0x0A)) or b == 0x7F})
    if bad:
        raise PolicyError(f"the policy holds the control byte {bad[0]:#04x}")
    text = data.decode("utf-8", errors="surrogateescape")
    logs: list[Log] = []
    witnesses: dict[str, Witness] = {}
    groups: dict[str, Group] = {}
    quorum: str | None = None
    keys: set[bytes] = set()
    for number, line in enumerate(text.split("\n"), start=1):
        items = line.replace("\t", " ").split()
        if not items or items[0].startswith("#"):
            continue
        keyword, args = items[0], items[1:]
        if keyword == "log":
            if len(args) not in (1, 2):
                raise PolicyError(f"line {number}: log <vkey> [<url>]")
            verifier = _vkey(args[0], SignatureType.ed25519, number)
            if verifier.public_bytes in keys:
                raise PolicyError(f"line {number}: duplicate key")
            keys.add(verifier.public_bytes)
            logs.append(Log(verifier, args[1] if len(args) == 2 else None))
        elif keyword == "witness":
            if len(args) not in (2, 3):
                raise PolicyError(f"line {number}: witness <name> <vkey> [<url>]")
            name = args[0]
            if name == NONE or name in witnesses or name in groups:
                raise PolicyError(f"line {number}: the name {name!r} is taken")
            verifier = _vkey(args[1], SignatureType.cosignature_v1, number)
            if verifier.public_bytes in keys:
                raise PolicyError(f"line {number}: duplicate key")
            keys.add(verifier.public_bytes)
            witnesses[name] = Witness(name, verifier, args[2] if len(args) == 3 else None)
        elif keyword == "group":
            if len(args) < 3:
                raise PolicyError(f"line {number}: group <name> all|any|<k> <name>...")
            name, rule, members = args[0], args[1], tuple(args[2:])
            if name == NONE or name in witnesses or name in groups:
                raise PolicyError(f"line {number}: the name {name!r} is taken")
            for member in members:
                if member not in witnesses and member not in groups:
                    raise PolicyError(f"line {number}: {member!r} is not defined above")
            if len(set(members)) != len(members):
                raise PolicyError(f"line {number}: a member is listed twice")
            if rule == "all":
                threshold = len(members)
            elif rule == "any":
                threshold = 1
            elif rule.isascii() and rule.isdigit() and not rule.startswith("0"):
                threshold = int(rule)
                if not 1 <= threshold <= len(members):
                    raise PolicyError(f"line {number}: threshold {threshold} outside 1..n")
            else:
                raise PolicyError(f"line {number}: the threshold is all, any or a number")
            groups[name] = Group(threshold, members)
        elif keyword == "quorum":
            if len(args) != 1:
                raise PolicyError(f"line {number}: quorum <name>")
            if quorum is not None:
                raise PolicyError(f"line {number}: a second quorum line")
            if args[0] != NONE and args[0] not in witnesses and args[0] not in groups:
                raise PolicyError(f"line {number}: {args[0]!r} is not defined above")
            quorum = args[0]
        else:
            raise PolicyError(f"line {number}: unknown keyword {keyword[:24]!r}")
    if quorum is None:
        raise PolicyError("the policy has no quorum line")
    if max(len(logs), len(witnesses), len(groups)) > MAX_ENTRIES:
        raise PolicyError(f"more than {MAX_ENTRIES} logs, witnesses or groups")
    return WitnessPolicy(
        logs=tuple(logs),
        witnesses=MappingProxyType(witnesses),
        groups=MappingProxyType(groups),
        quorum=quorum,
    )


def witnessed_names(policy: WitnessPolicy, verified: Iterable[Verifier]) -> frozenset[str]:
    """The policy's witness names whose key is among `verified`."""
    keys = set(verified)
    return frozenset(name for name, w in policy.witnesses.items() if w.verifier in keys)
