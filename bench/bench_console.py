"""The review console's queue page with 10,000 requests, against the JSON API answering the
same page.

A store holds ``--n`` requests (default 10,000; one in ten an emergency, most waiting for
review) of three agencies. A reviewer signed in to the console asks for the first queue
page (50 requests, emergencies first, the count of all matching); the same reviewer asks
the JSON API for the same page of pending requests (``GET /v1/requests?status=
pending_review&limit=50``). Both over real HTTP (uvicorn on 127.0.0.1) and the same store.
Figures:

1. the queue page's median server time, against the JSON API's (target: at most 3x);
2. the page's weight (HTML + the stylesheet, script and icon it loads), against the JSON
   answer's bytes (target: under 150 KB).

Run: .venv/bin/python bench/bench_console.py [--n 10000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench._report import ratio_line
from cloud_stub.store.models import Request
from tests.fixtures.cloud import CloudServer, Principal, open_cloud
from tests.fixtures.deployment import make_deployment

PAGE_WEIGHT_LIMIT = 150 * 1024
ASSETS = ("/console/static/console.css", "/console/static/console.js",
          "/console/static/favicon.svg")


def fill(cloud: CloudServer, n: int) -> None:
    agencies = [cloud.principal("agency", org=f"agency-{i}") for i in range(3)]
    ids = {a.name: cloud.service.authenticate(a.key).id for a in agencies}
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for i in range(n):
        agency = agencies[i % 3]
        emergency = i % 10 == 0
        created = now - timedelta(minutes=i)
        start = created - timedelta(hours=3)
        rows.append(Request(
            id=str(uuid.uuid4()), agency_id=ids[agency.name], org=agency.org,
            basis="emergency" if emergency else "warrant",
            status="pending_review" if i % 7 else "released",
            devices=[f"cam-{i % 50:03d}"], window_start=start,
            window_end=start + timedelta(hours=1),
            body={"basis": "emergency" if emergency else "warrant",
                  "agency": agency.org, "investigator": f"Det. {i}",
                  "device_ids": [f"cam-{i % 50:03d}"]},
            reasons=[], approvals_required=2 if emergency else 1,
            follow_up_due=created + timedelta(hours=48) if emergency else None,
            follow_up_received=False, created_at=created, updated_at=created,
        ))
    with cloud.service.store.transaction() as session:
        session.add_all(rows)


def sign_in(cloud: CloudServer, reviewer: Principal) -> httpx.Client:
    client = httpx.Client(base_url=cloud.url, timeout=60)
    html = client.get("/console/sign-in").text
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    csrf = html[start:html.index('"', start)]
    answer = client.post("/console/sign-in", data={"api_key": reviewer.key, "csrf": csrf})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code}")
    return client


def timed(get: httpx.Client, path: str, rounds: int, **kwargs: object) -> tuple[float, int]:
    times = []
    size = 0
    for _ in range(rounds):
        started = time.perf_counter()
        answer = get.get(path, **kwargs)  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text[:200]}")
        size = len(answer.content)
    return statistics.median(times), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        deployment = make_deployment(Path(tmp) / "base")
        store_dir = Path(tmp) / "store"
        store_dir.mkdir()
        with contextlib.contextmanager(open_cloud)(deployment, store_dir) as cloud:
            fill(cloud, args.n)
            reviewer = cloud.principal("reviewer", org="court-liaison")
            browser = sign_in(cloud, reviewer)
            timed(browser, "/console/queue", 3)  # warm both paths
            timed(cloud.http, "/v1/requests?status=pending_review&limit=50", 3,
                  headers=reviewer.headers)
            page_s, page_bytes = timed(browser, "/console/queue", args.rounds)
            api_s, api_bytes = timed(cloud.http, "/v1/requests?status=pending_review&limit=50",
                                     args.rounds, headers=reviewer.headers)
            assets = sum(len(browser.get(a).content) for a in ASSETS)
            weight = page_bytes + assets
            print(f"queue of {args.n} requests, first page of 50, median of {args.rounds}")
            print(ratio_line("console queue page (ms) vs JSON API page", page_s * 1000,
                             api_s * 1000, "ms", "target ratio <= 3"))
            print(ratio_line("queue page weight (KB) vs JSON answer", weight / 1024,
                             api_bytes / 1024, "KB", "target < 150 KB"))
            browser.close()
        ok = page_s <= 3 * api_s and weight < PAGE_WEIGHT_LIMIT
        print("OK" if ok else "OVER TARGET")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
