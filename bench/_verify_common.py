"""What the token verification benchmarks share: a replay state that has seen nothing,
the raw Ed25519 verifications a token's JWS signatures stand for, and the alternating
best-of timing of a full verification against that floor (bench/README.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol._jws import b64url_decode

RawVerify = tuple[Ed25519PublicKey, bytes, bytes]  # key, signature, signed bytes


@dataclass
class NoReplay:
    """Replay state with no jti seen and `last` as the highest sequence number."""

    last: int = 0

    def seen(self, jti: str) -> bool:
        return False

    def last_seq(self) -> int:
        return self.last


def jws_signatures(token: bytes, keys: Mapping[str, Ed25519PublicKey]) -> list[RawVerify]:
    """Each signature of the JWS JSON `token` as the bare verification it stands for."""
    doc = json.loads(token)
    raw = []
    for entry in doc["signatures"]:
        header = json.loads(b64url_decode(entry["protected"]))
        raw.append((keys[header["kid"]], b64url_decode(entry["signature"]),
                    f"{entry['protected']}.{doc['payload']}".encode()))
    return raw


def raw_verifier(raw: list[RawVerify]) -> Callable[[], None]:
    """The floor: every one of `raw` verified, nothing else."""

    def verify_all() -> None:
        for key, sig, data in raw:
            key.verify(sig, data)

    return verify_all


def cpu_us_per_call(fn: Callable[[], None], loops: int) -> float:
    """CPU microseconds of this process per call over `loops` calls (process time, not
    wall time: on a shared machine other processes then cost neither side)."""
    start = time.process_time()
    for _ in range(loops):
        fn()
    return (time.process_time() - start) / loops * 1e6


def best_alternating(full: Callable[[], None], baseline: Callable[[], None], *,
                     rounds: int, loops: int) -> tuple[float, float]:
    """(full, baseline) microseconds per call: each called once to warm up, then the two
    alternated `rounds` times, each side's best round kept, so a noisy neighbour on the
    shared machine hurts both sides alike."""
    full()
    baseline()
    base_us = full_us = float("inf")
    for _ in range(rounds):
        base_us = min(base_us, cpu_us_per_call(baseline, loops))
        full_us = min(full_us, cpu_us_per_call(full, loops))
    return full_us, base_us
