"""Appends with a witness quorum: the real `doorbell-log` and three `doorbell-witness`
processes on loopback, against bare Ed25519 signing of the same checkpoints.

Each of N entries (default 10,000; `python bench/bench_tlog_append.py N` for fewer) is
appended by one of 32 concurrent clients (`POST /add`) and waited for until a checkpoint
covering it has a 2-of-3 quorum (`GET /proof?wait=`): that round trip is the latency.
Baseline, same run: Ed25519 signing, in this process, of the checkpoints (sizes 1..N,
same roots) the log would sign if every entry had its own, plus the three cosignatures;
that is the signing floor of "every entry witnessed". The log batches concurrent
appends into one fsync, one checkpoint and one witness round, so it may beat the floor's
rate; its latency includes fsyncs, HTTP and the witnesses' SQLite commits.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import ratio_line
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.merkle import MemoryTree, leaf_hash
from protocol.tlog.note import parse_skey
from protocol.tlog.statement import ReleaseStatement
from tests.fixtures.tlog import LOG_ORIGIN, start_network
from tests.unit.tlog_world import witness_signers

CLIENTS = 32


def _statement(n: int) -> bytes:
    return ReleaseStatement(
        device_tag="cd" * 32,
        token_sha256=f"{n:064x}",
        basis="warrant",
        window_start="2026-06-01T09:00:00Z",
        window_end="2026-06-01T11:00:00Z",
        iat=1780315190,
        seq=n,
        court="demo-district-court",
        docket_sha256="ef" * 32,
    ).encode()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory(prefix="bench-tlog-") as tmp:
        network = start_network(Path(tmp))
        try:
            latencies: list[float] = []
            order: dict[int, bytes] = {}
            lock = threading.Lock()
            counter = iter(range(total))

            def client() -> None:
                with httpx.Client(base_url=network.log.url, timeout=60) as http:
                    while True:
                        with lock:
                            n = next(counter, None)
                        if n is None:
                            return
                        entry = _statement(n)
                        start = time.perf_counter()
                        added = http.post("/add", content=entry)
                        added.raise_for_status()
                        index = int(added.text.split()[1])
                        http.get("/proof", params={"index": index, "wait": 30}).raise_for_status()
                        elapsed = time.perf_counter() - start
                        with lock:
                            latencies.append(elapsed)
                            order[index] = entry

            threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            log_signer = parse_skey((Path(tmp) / "log" / "log.key").read_text().strip())
        finally:
            network.stop()

    tree = MemoryTree()
    checkpoints = []
    for index in range(total):
        tree.append_hash(leaf_hash(order[index]))
        checkpoints.append(Checkpoint(LOG_ORIGIN, tree.size, tree.root()).text)
    witnesses = witness_signers()
    sign_times: list[float] = []
    base_start = time.perf_counter()
    for text in checkpoints:
        start = time.perf_counter()
        log_signer.sign(text)
        for witness in witnesses:
            witness.sign(text, timestamp=1780315200)
        sign_times.append(time.perf_counter() - start)
    base_wall = time.perf_counter() - base_start

    print(f"{total:,} entries, {CLIENTS} concurrent clients, 3 witnesses, quorum 2 of 3")
    print(
        ratio_line(
            "appends with quorum per second",
            total / wall,
            total / base_wall,
            "/s",
            "baseline: sign each checkpoint + 3 cosignatures",
        )
    )
    print(
        ratio_line(
            "append-to-quorum latency p50",
            statistics.median(latencies) * 1e3,
            statistics.median(sign_times) * 1e3,
            "ms",
            "baseline: bare signing p50",
        )
    )
    print(
        ratio_line(
            "append-to-quorum latency p99",
            _percentile(latencies, 0.99) * 1e3,
            _percentile(sign_times, 0.99) * 1e3,
            "ms",
            "baseline: bare signing p99",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
