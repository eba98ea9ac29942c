"""`doorbell-owner monitor`: follow the public release log without the operator's broker.

The owner bundle's `release-log/` directory holds `policy.txt` (the tlog-policy of the
deployment's trust root; its `log` line carries the log's URL, its `witness` lines the
witnesses') and `device-tag` (this doorbell's tag, docs/protocol.md section 10). Each run:

1. fetches the log's `checkpoint` and requires the log's signature and the quorum;
2. checks the tiles against its root, and that every checkpoint this monitor stored
   before, and each witness's latest cosigned checkpoint (monitor retrieval of
   c2sp.org/tlog-witness), is a prefix of the same tree: otherwise the log shows
   different histories to different people, and the run fails naming both;
3. reads the new entries from the entry bundles (each checked against its leaf hash) and
   reports the statements carrying this doorbell's tag.

`follow` is a function of a `fetch(url) -> bytes` seam and the stored checkpoint; the
CLI supplies HTTP and the state directory (checkpoint stored atomically, entries found
appended to `log-entries.jsonl`, a conflicting checkpoint kept as evidence).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from owner_app.errors import BundleError, OwnerError
from protocol.tlog.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint
from protocol.tlog.errors import StatementError, TlogError
from protocol.tlog.merkle import leaf_hash, subtree_root
from protocol.tlog.policy import Log, WitnessPolicy, parse_policy, witnessed_names
from protocol.tlog.statement import ReleaseStatement, parse_statement
from protocol.tlog.tiles import TILE_WIDTH, TileNodes, TileRef, decode_bundle

Fetch = Callable[[str], bytes]
POLICY_FILE = "release-log/policy.txt"
TAG_FILE = "release-log/device-tag"


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

    @property
    def log_url(self) -> str:
        assert self.log.url is not None
        return self.log.url.rstrip("/")


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


def _open(config: MonitorConfig, note: bytes, what: str) -> SignedCheckpoint:
    try:
        signed = open_checkpoint(note, [config.log.verifier, *config.policy.witness_verifiers])
    except TlogError as exc:
        raise OwnerError(f"{what}: {exc}") from None
    if not signed.signed_by(config.log.verifier):
        raise OwnerError(f"{what}: not signed by the log's key")
    if signed.checkpoint.origin != config.log.origin:
        raise OwnerError(f"{what}: origin {signed.checkpoint.origin[:80]!r} is another log's")
    return signed


def follow(config: MonitorConfig, fetch: Fetch, stored: Checkpoint | None) -> MonitorResult:
    """One pass over the log from `stored` (None: from the first entry)."""
    note = fetch(f"{config.log_url}/checkpoint")
    signed = _open(config, note, "the log's checkpoint")
    names = witnessed_names(config.policy, (v for v, _ in signed.note.verified))
    if not config.policy.satisfied(names):
        raise OwnerError("the log's checkpoint lacks the witness quorum of the policy")
    current = signed.checkpoint
    result = MonitorResult(current, note)
    tiles = TileNodes(current.size, lambda ref: fetch(f"{config.log_url}/{ref.path}"))
    try:
        if subtree_root(tiles, 0, current.size) != current.root:
            raise OwnerError("the log's tiles do not give its checkpoint's root")
        if stored is not None:
            if stored.size > current.size:
                raise SplitView(
                    f"the log now shows size {current.size}, below the {stored.size} it "
                    "showed before",
                    {"log-checkpoint": note},
                )
            if subtree_root(tiles, 0, stored.size) != stored.root:
                raise SplitView(
                    f"the log's tree at size {stored.size} is not the one stored before: "
                    "the log forked",
                    {"log-checkpoint": note},
                )
        _check_witnesses(config, fetch, tiles, current, result)
        start = 0 if stored is None else stored.size
        _scan(config, fetch, tiles, start, current.size, result)
    except TlogError as exc:
        raise OwnerError(f"the log's tiles: {exc}") from None
    return result


def _check_witnesses(
    config: MonitorConfig,
    fetch: Fetch,
    tiles: TileNodes,
    current: Checkpoint,
    result: MonitorResult,
) -> None:
    origin_hash = hashlib.sha256(config.log.origin.encode()).hexdigest()
    for witness in config.policy.witnesses.values():
        if not witness.url:
            continue
        try:
            note = fetch(f"{witness.url.rstrip('/')}/{origin_hash}/checkpoint")
        except OwnerError as exc:
            result.warnings.append(f"witness {witness.name}: {exc}")
            continue
        signed = _open(config, note, f"witness {witness.name}'s checkpoint")
        if not signed.signed_by(witness.verifier):
            raise OwnerError(f"witness {witness.name}'s checkpoint lacks its cosignature")
        seen = signed.checkpoint
        if seen.size <= current.size:
            same = subtree_root(tiles, 0, seen.size) == seen.root
        else:  # the witness cosigned a newer checkpoint the log has not published yet
            newer = TileNodes(seen.size, lambda ref: fetch(f"{config.log_url}/{ref.path}"))
            same = subtree_root(newer, 0, seen.size) == seen.root and (
                subtree_root(newer, 0, current.size) == current.root
            )
        if not same:
            raise SplitView(
                f"witness {witness.name} cosigned size {seen.size} of another history than "
                "the log shows",
                {"log-checkpoint": result.note, f"witness-{witness.name}": note},
            )
        result.witnesses_checked.append(witness.name)


def _scan(
    config: MonitorConfig,
    fetch: Fetch,
    tiles: TileNodes,
    start: int,
    end: int,
    result: MonitorResult,
) -> None:
    first_bundle = start // TILE_WIDTH
    for n in range(first_bundle, (end + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, end - n * TILE_WIDTH)
        entries = decode_bundle(fetch(f"{config.log_url}/{TileRef(None, n, width).path}"), width)
        for offset, entry in enumerate(entries):
            index = n * TILE_WIDTH + offset
            if index < start:
                continue
            if leaf_hash(entry) != tiles.node(0, index):
                raise OwnerError(f"entry {index} does not hash to its leaf in the tiles")
            result.scanned += 1
            try:
                statement = parse_statement(entry)
            except StatementError as exc:
                result.warnings.append(f"entry {index} is not a release statement: {exc}")
                continue
            if statement.device_tag == config.device_tag:
                result.found.append((index, statement))
