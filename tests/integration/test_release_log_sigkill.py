"""The log killed with SIGKILL again and again in the middle of appends: it never forks
(every checkpoint anyone saw, before or after a kill, is a prefix of the final tree, and
the witnesses, who refuse forks, keep cosigning) and never loses an entry it
acknowledged (each acknowledged index holds the very entry, in the final tree)."""

from __future__ import annotations

import random
import threading
import time

import httpx

from protocol.tlog.checkpoint import Checkpoint, open_checkpoint
from protocol.tlog.merkle import MemoryTree, leaf_hash
from protocol.tlog.statement import ReleaseStatement
from protocol.tlog.tiles import TileRef, decode_bundle
from tests.fixtures.tlog import TlogNetwork

KILLS = 22
WRITERS = 4


def _statement(n: int) -> bytes:
    return ReleaseStatement(
        device_tag="ab" * 32,
        token_sha256=f"{n:064x}",
        basis="preservation",
        window_start="2026-06-01T09:00:00Z",
        window_end="2026-06-01T11:00:00Z",
        iat=1780315190,
        seq=n,
    ).encode()


class Writers:
    """Threads appending until told to stop; they keep what the log acknowledged."""

    def __init__(self, url: str, first: int) -> None:
        self.url = url
        self.acknowledged: dict[int, bytes] = {}
        self.next = first
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(WRITERS)]

    def _take(self) -> int:
        with self.lock:
            self.next += 1
            return self.next

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.stop.is_set():
                entry = _statement(self._take())
                try:
                    response = client.post("/add", content=entry)
                except httpx.HTTPError:
                    return  # the log was killed: this entry was never acknowledged
                if response.status_code == 200:
                    with self.lock:
                        self.acknowledged[int(response.text.split()[1])] = entry

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def _published(network: TlogNetwork) -> Checkpoint | None:
    response = httpx.get(network.log.url + "/checkpoint", timeout=10)
    if response.status_code == 404:
        return None
    return open_checkpoint(response.content, [network.log_verifier]).checkpoint


def test_sigkills_during_appends_never_fork_and_never_lose_an_acknowledged_entry(
    tlog_network: TlogNetwork,
) -> None:
    rng = random.Random(20260601)
    acknowledged: dict[int, bytes] = {}
    seen: list[Checkpoint] = []
    log = tlog_network.log
    for round_ in range(KILLS):
        with Writers(log.url, first=round_ * 1_000_000) as writers:
            time.sleep(rng.uniform(0.05, 0.6))
            checkpoint = _published(tlog_network)
            if checkpoint is not None:
                seen.append(checkpoint)
            log.kill()
        for index, entry in writers.acknowledged.items():
            assert acknowledged.setdefault(index, entry) == entry, f"index {index} reused"
        log.start()  # refuses to start on a lost entry or a forked root (store.py)
    assert len(acknowledged) > KILLS, "too few appends got through to test anything"

    with httpx.Client(base_url=log.url, timeout=30) as client:
        final_size = max(acknowledged) + 1
        client.get("/proof", params={"index": final_size - 1, "wait": 25}).raise_for_status()
        final = _published(tlog_network)
        assert final is not None
        entries: list[bytes] = []
        for n in range((final.size + 255) // 256):
            width = min(256, final.size - n * 256)
            response = client.get("/" + TileRef(None, n, width).path)
            response.raise_for_status()
            entries += decode_bundle(response.content, width)
    tree = MemoryTree([leaf_hash(e) for e in entries])
    assert tree.root() == final.root
    for index, entry in acknowledged.items():
        assert entries[index] == entry, f"acknowledged entry {index} lost or changed"
    for checkpoint in seen:
        assert tree.root(checkpoint.size) == checkpoint.root, f"fork at size {checkpoint.size}"
    # The witnesses, who refuse any checkpoint inconsistent with the last they cosigned,
    # cosigned the final one: they never saw a fork either.
    cosigned = open_checkpoint(
        httpx.get(log.url + "/checkpoint", timeout=10).content,
        [tlog_network.log_verifier, *tlog_network.policy.witness_verifiers],
    )
    assert len(cosigned.note.verified) >= 3
