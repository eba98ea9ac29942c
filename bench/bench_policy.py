"""The legal check, the audit chain and the transparency report, against bare primitives.

1. Warrant check: parse a court-signed warrant body (JSON bytes) and run the whole
   default policy, per second, against bare Ed25519 verification of the same statement
   bytes (the one cryptographic operation the check cannot avoid). Target: the check
   costs at most 10 bare verifications, i.e. ratio >= 0.1.
2. Audit chain: entries verified per second by `verify_chain` against bare SHA-256 of
   the same canonical entry bytes. Target: ratio >= 0.2.
3. Transparency: request records aggregated per second by `build_report` against a bare
   `Counter` of the same records by basis (the report computes about a dozen such
   aggregates, so the ratio tracks drift). Target: 100,000 records (years of requests)
   in at most a second.

Each figure is the best of three runs of the same size (the machine is shared).
Run: .venv/bin/python bench/bench_policy.py [--n 2000]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._report import ratio_line
from cloud_stub.domain.audit_chain import AuditEntry, chain_entry, entry_hash, verify_chain
from cloud_stub.domain.transparency import RequestRecord, build_report
from cloud_stub.policy import PolicyContext, WarrantStatement, build_policy, parse_request_json
from cloud_stub.policy.courts import Court, CourtRegistry, request_fields, sign_warrant
from cloud_stub.policy.requests import OrderType

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def best_rate(n: int, fn: Callable[[], None]) -> float:
    """Operations per second, best of three runs of ``n`` calls."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def bench_warrant(n: int) -> None:
    key = Ed25519PrivateKey.generate()
    courts = CourtRegistry({"c": Court(court_id="c", name="C", public_key=key.public_key())})
    statement = WarrantStatement(
        court_id="c",
        docket="2026-MJ-1",
        judge="Hon. A",
        order_type=OrderType.SEARCH_WARRANT,
        issued=NOW - timedelta(hours=1),
        expires=NOW + timedelta(days=3),
        document_sha256="ab" * 32,
        device_ids=("porch-cam", "garage-cam"),
        window_start=NOW - timedelta(hours=30),
        window_end=NOW - timedelta(hours=6),
    )
    signature = sign_warrant(statement, key)
    body = request_fields(statement, signature) | {
        "agency": "Metro PD",
        "investigator": "Det. O",
        "contact": "o@pd.example",
        "agency_case_number": "C-1",
        "recipient": str(pyrage.x25519.Identity.generate().to_public()),
    }
    raw = json.dumps(body).encode()
    policy = build_policy()
    ctx = PolicyContext(now=NOW, courts=courts, requester="metro-pd")
    message, public = statement.canonical_bytes(), key.public_key()
    raw_signature = base64.b64decode(signature)

    def check() -> None:
        policy.check(parse_request_json(raw), ctx)

    def bare() -> None:
        public.verify(raw_signature, message)

    check()
    print(
        ratio_line(
            "warrant parse + full policy check", best_rate(n, check), best_rate(n, bare),
            "ops/s", "target ratio >= 0.10",
        )
    )  # fmt: skip


def bench_audit(n: int) -> None:
    entries: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for i in range(n):
        prev = chain_entry(
            prev, at=NOW + timedelta(seconds=i), actor="reviewer:a", action="request.approved",
            subject=f"request:{i}", detail={"org": "metro-pd", "approvals": 1, "required": 2},
        )  # fmt: skip
        entries.append(prev)
    verify_rate = n / min(_timed(lambda: verify_chain(entries)) for _ in range(3))

    def bare_all() -> None:
        for e in entries:
            entry_hash(
                seq=e.seq, at=e.at, actor=e.actor, action=e.action, subject=e.subject,
                detail=e.detail, prev_hash=e.prev_hash,
            )  # fmt: skip

    bare_rate = n / min(_timed(bare_all) for _ in range(3))
    print(ratio_line("audit entries verified", verify_rate, bare_rate, "entries/s",
                     "baseline: hashing only; target ratio >= 0.20"))  # fmt: skip


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_transparency(n: int) -> None:
    bases = ("warrant", "emergency", "preservation", "voluntary")
    statuses = ("uploaded", "refused", "denied", "pending_review", "released")
    records = [
        RequestRecord(
            request_id=f"r{i}",
            basis=bases[i % 4],
            agency=f"agency-{i % 7}",
            status=statuses[i % 5],
            devices=(f"cam-{i % 50}",),
            submitted_at=NOW - timedelta(minutes=i),
            refusal_codes=("window_too_long",) if i % 5 == 1 else (),
            followup_due=NOW - timedelta(hours=1) if i % 4 == 1 else None,
        )
        for i in range(n)
    ]
    report_rate = n / min(_timed(lambda: build_report(records, [], [], now=NOW)) for _ in range(3))
    bare_rate = n / min(_timed(lambda: Counter(r.basis for r in records)) for _ in range(3))
    print(ratio_line("transparency records aggregated", report_rate, bare_rate, "rec/s",
                     "baseline: Counter by basis; target >= 100000 rec/s"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    bench_warrant(args.n)
    bench_audit(args.n * 10)
    bench_transparency(args.n * 50)


if __name__ == "__main__":
    main()
