"""Keys that must not be on the service host while it serves (docs/adr/0013-trust-root-v2.md).

A root key rewrites the trust root, a court key signs warrants, a reviewer's key
approves releases: a host holding any of them could release footage alone. `serve`
refuses to start while it can read one, naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from protocol.bundle import DeploymentLayout
from protocol.trust_root_v2 import ROOT_TYPE_V2


def _candidates(layout: DeploymentLayout) -> Iterator[tuple[Path, str]]:
    for path in sorted(layout.offline_root_dir.glob("*.key")):
        yield path, "a root key"
    for path in sorted(layout.signer_key("root-1").parent.glob("root-*.key")):
        yield path, "a root key"
    for path in sorted(layout.test_courts_dir.glob("*.key")):
        yield path, "a court's key"
    for path in sorted(layout.test_reviewers_dir.glob("*/*.key")):
        yield path, "a reviewer's key"
    if _is_v2(layout):  # v1's review key signs for no one under v2, yet it is a review key
        yield layout.signer_key("review"), "the v1 review key"


def _is_v2(layout: DeploymentLayout) -> bool:
    try:
        return ROOT_TYPE_V2.encode() in layout.trust_root.read_bytes()
    except OSError:
        return False


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError:
        return False
    return True


def readable_decisive_keys(layout: DeploymentLayout) -> list[tuple[Path, str]]:
    """Each private key under `layout` this process can read that the service must not
    hold, with what it is."""
    return [(path, what) for path, what in _candidates(layout) if _readable(path)]
