"""`doorbell-owner monitor`: follow the public release log without the operator's broker.

The owner bundle's `release-log/` directory holds `policy.txt` (the tlog-policy of the
deployment's trust root; its `log` line carries the log's URL, its `witness` lines the
witnesses') and `device-tag` (this doorbell's tag, docs/protocol.md section 11). Each run:

1. fetches the log's `checkpoint` and requires the log's signature and the quorum, and
   checks the tiles against its root (`release_log.reader`);
2. requires that the checkpoint this monitor stored before, and each witness's latest
   cosigned checkpoint (monitor retrieval of c2sp.org/tlog-witness), are prefixes of
   that same tree: otherwise the log shows different histories to different people, and
   the run fails naming both (`SplitView`, with the notes as evidence);
3. reads the new entries (each checked against its leaf hash) and reports the
   statements carrying this doorbell's tag.

`follow` is a function of a `fetch(url) -> bytes` seam and the stored checkpoint; the
CLI (`monitor_cli`) supplies HTTP and the state directory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from owner_app.errors import BundleError, OwnerError
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.errors import StatementError, TlogError
from protocol.tlog.merkle import subtree_root
from protocol.tlog.policy import Log, WitnessPolicy, parse_policy
from protocol.tlog.statement import ReleaseStatement, parse_statement
from protocol.tlog.tiles import TileNodes
from release_log.reader import Fetch, LogReadError, LogView, open_checkpoint_for, read_log

POLICY_FILE = "release-log/policy.txt"
TAG_FILE = "release-log/device-tag"

__all__ = ["Fetch", "MonitorConfig", "MonitorResult", "SplitView", "follow", "load_monitor_config"]


class SplitView(OwnerError):
    """Two checkpoints of the log that cannot both be true; `evidence` holds the notes."""

    def __init__(self, message: str, evidence: dict[str, bytes]) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True)
class MonitorConfig:
    policy: WitnessPolicy
    log: Log
    device_tag: str


def load_monitor_config(bundle_dir: Path) -> MonitorConfig:
    policy_path, tag_path = bundle_dir / POLICY_FILE, bundle_dir / TAG_FILE
    try:
        policy = parse_policy(policy_path.read_bytes())
        tag = tag_path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise BundleError(f"{exc.filename}: {exc.strerror}") from None
    except (TlogError, UnicodeDecodeError) as exc:
        raise BundleError(f"{policy_path}: {exc}") from None
    if len(tag) != 64 or any(c not in "0123456789abcdef" for c in tag):
        raise BundleError(f"{tag_path}: not 64 lowercase hex digits")
    logs = [log for log in policy.logs if log.url]
    if len(logs) != 1:
        raise BundleError(f"{policy_path}: needs exactly one log line with a URL")
    return MonitorConfig(policy, logs[0], tag)


@dataclass
class MonitorResult:
    checkpoint: Checkpoint
    note: bytes
    found: list[tuple[int, ReleaseStatement]] = field(default_factory=list)
    scanned: int = 0
    witnesses_checked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def follow(config: MonitorConfig, fetch: Fetch, stored: Checkpoint | None) -> MonitorResult:
    """One pass over the log from `stored` (None: from the first entry)."""
    try:
        view = read_log(config.policy, config.log, fetch)
        current = view.checkpoint
        result = MonitorResult(current, view.note)
        if stored is not None:
            if stored.size > current.size:
                raise SplitView(
                    f"the log now shows size {current.size}, below the "
                    f"{stored.size} it showed before",
                    {"log-checkpoint": view.note},
                )
            if view.root_at(stored.size) != stored.root:
                raise SplitView(
                    f"the log's tree at size {stored.size} is not the one stored "
                    "before: the log forked",
                    {"log-checkpoint": view.note},
                )
        _check_witnesses(config, fetch, view, result)
        for index, entry in view.entries(0 if stored is None else stored.size, fetch):
            result.scanned += 1
            try:
                statement = parse_statement(entry)
            except StatementError as exc:
                result.warnings.append(f"entry {index} is not a release statement: {exc}")
                continue
            if statement.device_tag == config.device_tag:
                result.found.append((index, statement))
    except LogReadError as exc:
        raise OwnerError(str(exc)) from None
    return result


def _check_witnesses(
    config: MonitorConfig, fetch: Fetch, view: LogView, result: MonitorResult
) -> None:
    origin_hash = hashlib.sha256(config.log.origin.encode()).hexdigest()
    current = view.checkpoint
    for witness in config.policy.witnesses.values():
        if not witness.url:
            continue
        try:
            note = fetch(f"{witness.url.rstrip('/')}/{origin_hash}/checkpoint")
        except OwnerError as exc:
            result.warnings.append(f"witness {witness.name}: {exc}")
            continue
        signed = open_checkpoint_for(
            config.policy, config.log, note, f"witness {witness.name}'s checkpoint"
        )
        if not signed.signed_by(witness.verifier):
            raise OwnerError(f"witness {witness.name}'s checkpoint lacks its cosignature")
        seen = signed.checkpoint
        if seen.size <= current.size:
            same = view.root_at(seen.size) == seen.root
        else:  # the witness cosigned a newer checkpoint the log has not published yet
            newer = TileNodes(seen.size, lambda ref: fetch(f"{view.url}/{ref.path}"))
            try:
                same = subtree_root(newer, 0, seen.size) == seen.root and (
                    subtree_root(newer, 0, current.size) == current.root
                )
            except TlogError as exc:
                raise OwnerError(f"the log's tiles at size {seen.size}: {exc}") from None
        if not same:
            raise SplitView(
                f"witness {witness.name} cosigned size {seen.size} of another history than "
                "the log shows",
                {"log-checkpoint": view.note, f"witness-{witness.name}": note},
            )
        result.witnesses_checked.append(witness.name)
