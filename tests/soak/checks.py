"""What the soak checks once the last fault is repaired and every token has had time to
settle. Each check reads the system from outside: the API as an agency and an admin
would, the store's custody tables, the files on the cloud's disk and on each device,
and the audit commands.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from cloud_stub.store.models import CustodyRecord, Manifest
from demo.checks import scan_for_plaintext
from protocol.errors import ManifestError
from protocol.keys import public_key_from_hex
from protocol.manifest import verify_manifest
from tests.soak.driver import Round, Schedule
from tests.soak.world import SoakWorld, run


@dataclass
class Findings:
    uploaded_once: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    waiting: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    custody_records: int = 0
    files_checked: int = 0

    @property
    def lost(self) -> int:
        return len(self.problems)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _identity(world: SoakWorld, device_id: str) -> Any:
    text = (world.layout.device_record(device_id) / "identity.pub").read_text().strip()
    return public_key_from_hex(text)


def check_rounds(schedule: Schedule, findings: Findings, scratch: Path) -> None:
    """Every approved token ended uploaded exactly once (the evidence is the round's clip,
    once, and opens with the agency's key), or refused with a code, or waits with its
    reason. A request that was approved and has no token is lost."""
    world = schedule.world
    agency = world.clients["agency"]
    scratch.mkdir(parents=True, exist_ok=True)
    for record in schedule.log:
        view = schedule.view(record.request_id)
        tokens = view.get("tokens", [])
        if not record.approved and view["status"] == "pending_review":
            findings.problems.append(f"round {record.number}: never approved ({view['status']})")
            continue
        if not tokens:
            findings.problems.append(
                f"round {record.number}: request {record.request_id} is {view['status']} "
                "with no token"
            )
            continue
        for token in tokens:
            status, reason = token["status"], token.get("status_reason", "")
            if status == "uploaded":
                _check_evidence(world, record, token["jti"], agency, findings, scratch)
            elif status in ("rejected", "superseded"):
                if not reason:
                    findings.problems.append(f"round {record.number}: {status} with no code")
                findings.refused[reason or "(none)"] += 1
            elif status == "deferred" and reason:
                findings.waiting.append(f"round {record.number}: deferred ({reason})")
            else:
                findings.problems.append(
                    f"round {record.number}: token {token['jti']} still {status} "
                    f"{reason!r} after the settle time"
                )


def _check_evidence(world: SoakWorld, record: Round, jti: str, agency: Any,
                    findings: Findings, scratch: Path) -> None:
    listing = agency.get(f"/v1/requests/{record.request_id}/evidence")
    manifest_text = listing.get("manifests", {}).get(jti)
    if manifest_text is None:
        findings.problems.append(f"round {record.number}: uploaded but no manifest for {jti}")
        return
    try:
        manifest = verify_manifest(manifest_text.encode(), _identity(world, record.device))
    except ManifestError as exc:
        findings.problems.append(f"round {record.number}: manifest does not verify: {exc}")
        return
    ids = [c.clip_id for c in manifest.clips]
    if ids != [record.clip_id]:
        findings.problems.append(
            f"round {record.number}: manifest lists {ids}, expected exactly [{record.clip_id}]"
        )
    files = [f for f in listing.get("files", []) if f.get("jti") == jti]
    if Counter(f["clip_id"] for f in files) != Counter(ids):
        findings.problems.append(
            f"round {record.number}: evidence files {[f['clip_id'] for f in files]} "
            f"are not the manifest's {ids}"
        )
    by_id = {c.clip_id: c for c in manifest.clips}
    for item in files:
        target = scratch / f"{jti}-{item['clip_id']}.age"
        digest = agency.download(item["download"], target)
        entry = by_id.get(item["clip_id"])
        if entry is None or entry.sha256 != digest or entry.bytes != target.stat().st_size:
            findings.problems.append(
                f"round {record.number}: {item['clip_id']} downloads as {digest}, "
                "not the manifest's bytes"
            )
            continue
        opened = subprocess.run(
            ["age", "-d", "-i", str(world.agency_identity), "-o", str(target.with_suffix(".mp4")),
             str(target)],
            capture_output=True, text=True, check=False,
        )
        if opened.returncode != 0:
            findings.problems.append(
                f"round {record.number}: the agency cannot open {item['clip_id']}: "
                f"{opened.stderr.strip()}"
            )
        findings.files_checked += 1
    findings.uploaded_once += 1


def check_custody(world: SoakWorld, findings: Findings) -> None:
    """Every custody record matches the accepted, device-signed manifest of its token,
    names each clip once per token, and its file on the cloud's disk has its sha256."""
    engine = create_engine(world.store_url)
    try:
        with Session(engine) as session:
            manifests = {m.jti: m for m in session.scalars(select(Manifest))}
            records = list(session.scalars(select(CustodyRecord)))
    finally:
        engine.dispose()
    findings.custody_records = len(records)
    seen: Counter[tuple[str, str]] = Counter()
    evidence_root = world.layout.evidence_dir
    for record in records:
        seen[(record.jti, record.clip_id)] += 1
        stored = manifests.get(record.jti)
        if stored is None:
            findings.problems.append(f"custody {record.jti}/{record.clip_id}: no manifest")
            continue
        try:
            manifest = verify_manifest(stored.jws.encode(), _identity(world, record.device_id))
        except ManifestError as exc:
            findings.problems.append(f"custody {record.jti}: manifest does not verify: {exc}")
            continue
        entry = next((c for c in manifest.clips if c.clip_id == record.clip_id), None)
        if entry is None or entry.sha256 != record.sha256 or entry.bytes != record.bytes:
            findings.problems.append(
                f"custody {record.jti}/{record.clip_id}: does not match its manifest"
            )
        blobs = list(evidence_root.rglob(record.sha256)) if evidence_root.is_dir() else []
        if not blobs or _sha256(blobs[0]) != record.sha256:
            findings.problems.append(
                f"custody {record.jti}/{record.clip_id}: file {record.sha256} missing or altered"
            )
    for (jti, clip_id), count in seen.items():
        if count > 1:
            findings.problems.append(f"custody {jti}/{clip_id}: recorded {count} times")


def check_devices(world: SoakWorld, findings: Findings, before: dict[str, list[str]]) -> None:
    """No clip lost or doubled on a device; no plaintext anywhere under its state
    directory; its audit chain verifies; every epoch key it escrowed was acknowledged."""
    for device in world.devices:
        after = [c["id"] for c in world.list_clips(device)]
        if sorted(after) != sorted(before[device.device_id]):
            findings.problems.append(
                f"{device.device_id}: clips before {sorted(before[device.device_id])}, "
                f"after {sorted(after)}"
            )
        if len(after) != len(set(after)):
            findings.problems.append(f"{device.device_id}: a clip is listed twice")
        scan = scan_for_plaintext(device.state_dir)
        findings.problems.extend(f"{device.device_id}: plaintext: {hit}" for hit in scan.hits)
        for hit in scan.hits:  # the state directory is a tmpfs, gone after the run
            found = Path(hit.rsplit(": ", 1)[0])
            kept = world.root / "plaintext-evidence" / device.device_id / found.name
            kept.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy2(found, kept)
        try:
            run(device.agent("audit", "verify"), what=f"{device.device_id} audit verify")
        except RuntimeError as exc:
            findings.problems.append(str(exc))
        if not world.escrow_settled(device):
            findings.problems.append(f"{device.device_id}: an escrowed epoch is unacknowledged")
    try:
        run(world.cloud("audit", "verify"), what="cloud-stub audit verify")
    except RuntimeError as exc:
        findings.problems.append(str(exc))
