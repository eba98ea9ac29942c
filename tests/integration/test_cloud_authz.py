"""The authorization matrix: every endpoint under every principal, allow or deny.

Principals: the agency that made the requests (A), another agency (B), a reviewer, an
admin, nobody, and a device presenting a signed request under a token issued to it.
"allow" means the request got past authentication and authorization (any answer but
401/403/404); a deny is the exact status. An agency asking for another agency's
request or evidence gets 404, the same answer as for something that does not exist.
The last test checks that the matrix covers every route of the OpenAPI description.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal
from tests.integration.test_cloud_evidence import (
    Released,
    device_call,
    manifest_for,
    release,
    sealed_clip,
    upload,
)

PRINCIPALS = ("agency_a", "agency_b", "reviewer", "admin", "none", "device")
ALLOW = "allow"
REASON = {"reason": "Reviewed against the warrant and the docket entry."}


@dataclass
class World:
    cloud: CloudServer
    a: Principal
    b: Principal
    reviewer: Principal
    admin: Principal
    closed: Released  # evidence accepted (clip c1)
    open: Released  # token released, nothing uploaded
    pending: str  # a request of A waiting for review
    device: DeviceSigner


Call = Callable[[World, str], httpx.Response]


def _headers(w: World, who: str, method: str, url: str, jti: str, body: bytes = b""
             ) -> dict[str, str]:
    if who == "none":
        return {}
    if who == "device":
        signer = w.closed.device if jti == w.closed.jti else w.open.device
        return signer.headers(method, url, jti, body)
    principal = {"agency_a": w.a, "agency_b": w.b, "reviewer": w.reviewer,
                 "admin": w.admin}[who]
    return principal.headers


def call(method: str, path: Callable[[World], str], body: bytes = b"",
         jti: Callable[[World], str] = lambda w: w.open.jti) -> Call:
    def run(w: World, who: str) -> httpx.Response:
        url = f"{w.cloud.url}{path(w)}"
        headers = _headers(w, who, method, url, jti(w), body)
        if body and method != "PUT":
            headers = {**headers, "Content-Type": "application/json"}
        return w.cloud.http.request(method, url, content=body, headers=headers)

    return run


def warrant_body(w: World) -> bytes:
    world = w.cloud.world(w.a, w.device.device_id)
    return json.dumps(world.warrant(device_ids=[w.device.device_id])).encode()


def submit(w: World, who: str) -> httpx.Response:
    return call("POST", lambda _w: "/v1/requests", warrant_body(w))(w, who)


MATRIX: dict[str, tuple[Call, dict[str, object]]] = {
    "POST /v1/requests": (submit, {
        "agency_a": ALLOW, "agency_b": ALLOW, "reviewer": 403, "admin": 403,
        "none": 401, "device": 401}),
    "GET /v1/requests": (call("GET", lambda w: "/v1/requests"), {
        "agency_a": ALLOW, "agency_b": ALLOW, "reviewer": ALLOW, "admin": ALLOW,
        "none": 401, "device": 401}),
    "GET /v1/requests/{id}": (call("GET", lambda w: f"/v1/requests/{w.closed.request_id}"), {
        "agency_a": ALLOW, "agency_b": 404, "reviewer": ALLOW, "admin": ALLOW,
        "none": 401, "device": 401}),
    "POST /v1/requests/{id}/follow-up": (
        call("POST", lambda w: f"/v1/requests/{w.closed.request_id}/follow-up",
             json.dumps({"court_id": "demo-district-court", "docket": "2026-MJ-1",
                         "document_sha256": "a" * 64, "order_type": "search_warrant",
                         "judge": "Hon. Ada Marsh", "issued": "2026-01-01T00:00:00Z",
                         "expires": "2026-01-08T00:00:00Z",
                         "court_signature": "A" * 86 + "=="}).encode()), {
            "agency_a": ALLOW, "agency_b": 404, "reviewer": 403, "admin": 403,
            "none": 401, "device": 401}),
    "GET /v1/review/queue": (call("GET", lambda w: "/v1/review/queue"), {
        "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": ALLOW,
        "none": 401, "device": 401}),
    "POST /v1/requests/{id}/approve": (
        call("POST", lambda w: f"/v1/requests/{w.pending}/approve",
             b'{"reason": "Reviewed against the warrant and the docket entry."}'), {
            "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": 403,
            "none": 401, "device": 401}),
    "POST /v1/requests/{id}/deny": (
        call("POST", lambda w: f"/v1/requests/{w.pending}/deny",
             b'{"reason": "Reviewed against the warrant and the docket entry."}'), {
            "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": 403,
            "none": 401, "device": 401}),
    "POST /v1/requests/{id}/reissue": (  # the reviewer is let through to not_reissuable
        call("POST", lambda w: f"/v1/requests/{w.pending}/reissue",
             b'{"reason": "Reviewed against the warrant and the docket entry."}'), {
            "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": 403,
            "none": 401, "device": 401}),
    # trust root v2 approval by signature (ADR 0013); under this v1 deployment the
    # reviewer is let through to 409 trust_root_v1
    "GET /v1/requests/{id}/signing-payload": (
        call("GET", lambda w: f"/v1/requests/{w.pending}/signing-payload"), {
            "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": 403,
            "none": 401, "device": 401}),
    "POST /v1/requests/{id}/signatures": (
        call("POST", lambda w: f"/v1/requests/{w.pending}/signatures",
             json.dumps({"kid": "a" * 64, "reason": "Reviewed against the warrant.",
                         "signatures": [{"jti": "x", "protected": "e30",
                                         "signature": "A" * 86}]}).encode()), {
            "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": 403,
            "none": 401, "device": 401}),
    # trust root v2 re-issue by signature (ADR 0013): 409 trust_root_v1 here too
    "GET /v1/requests/{id}/reissue-payload": (
        call("GET", lambda w: f"/v1/requests/{w.open.request_id}/reissue-payload"), {
            "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": 403,
            "none": 401, "device": 401}),
    "POST /v1/requests/{id}/reissue-signatures": (
        call("POST", lambda w: f"/v1/requests/{w.open.request_id}/reissue-signatures",
             json.dumps({"kid": "a" * 64, "reason": "Reviewed against the warrant.",
                         "signatures": [{"jti": "x", "protected": "e30",
                                         "signature": "A" * 86}]}).encode()), {
            "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": 403,
            "none": 401, "device": 401}),
    "GET /v1/requests/{id}/evidence": (
        call("GET", lambda w: f"/v1/requests/{w.closed.request_id}/evidence"), {
            "agency_a": ALLOW, "agency_b": 404, "reviewer": 403, "admin": 403,
            "none": 401, "device": 401}),
    "GET /v1/evidence/{jti}/{clip}": (
        call("GET", lambda w: f"/v1/evidence/{w.closed.jti}/c1", jti=lambda w: w.closed.jti), {
            "agency_a": ALLOW, "agency_b": 404, "reviewer": 403, "admin": 403,
            "none": 401, "device": ALLOW}),
    "PUT /v1/evidence/{jti}/{clip}": (
        call("PUT", lambda w: f"/v1/evidence/{w.open.jti}/c9?offset=0", b"bytes"), {
            "agency_a": 401, "agency_b": 401, "reviewer": 401, "admin": 401,
            "none": 401, "device": ALLOW}),
    "POST /v1/evidence/{jti}/manifest": (
        call("POST", lambda w: f"/v1/evidence/{w.open.jti}/manifest", b"{}"), {
            "agency_a": 401, "agency_b": 401, "reviewer": 401, "admin": 401,
            "none": 401, "device": ALLOW}),
    "GET /v1/devices": (call("GET", lambda w: "/v1/devices"), {
        "agency_a": 403, "agency_b": 403, "reviewer": ALLOW, "admin": ALLOW,
        "none": 401, "device": 401}),
    "GET /v1/whoami": (call("GET", lambda w: "/v1/whoami"), {
        "agency_a": ALLOW, "agency_b": ALLOW, "reviewer": ALLOW, "admin": ALLOW,
        "none": 401, "device": 401}),
    "GET /v1/audit/verify": (call("GET", lambda w: "/v1/audit/verify"), {
        "agency_a": 403, "agency_b": 403, "reviewer": 403, "admin": ALLOW,
        "none": 401, "device": 401}),
    "GET /v1/transparency": (call("GET", lambda w: "/v1/transparency"), {
        p: ALLOW for p in PRINCIPALS}),
    "GET /healthz": (call("GET", lambda w: "/healthz"), {p: ALLOW for p in PRINCIPALS}),
}


@pytest.fixture(scope="module")
def world(module_cloud: CloudServer) -> World:
    cloud = module_cloud
    a = cloud.principal("agency", org="agency-a")
    b = cloud.principal("agency", org="agency-b")
    closed = release(cloud, a)
    assert a.recipient is not None
    clip = sealed_clip(a.recipient, 2000)
    upload(cloud, closed, "c1", clip)
    accepted = device_call(cloud, closed, "POST", f"{closed.upload}/manifest",
                           manifest_for(closed, [("c1", clip)]))
    assert accepted.status_code == 200, accepted.text
    opened = release(cloud, a)
    device = opened.device
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    wb = cloud.world(a, device.device_id)
    pending = cloud.submit(a, wb.warrant(device_ids=[device.device_id])).json()["id"]
    return World(cloud, a, b, cloud.principal("reviewer", org="reviews"),
                 cloud.principal("admin", org="operator"), closed, opened, pending, device)


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_matrix(world: World, endpoint: str, who: str) -> None:
    run, expected = MATRIX[endpoint]
    if endpoint.startswith("POST /v1/requests/{id}/") and who == "reviewer":
        # Each decision needs a request still waiting: give the reviewer a fresh one.
        wb = world.cloud.world(world.a, world.device.device_id)
        world.pending = world.cloud.submit(
            world.a, wb.warrant(device_ids=[world.device.device_id])).json()["id"]
    response = run(world, who)
    want = expected[who]
    if want == ALLOW:
        assert response.status_code not in (401, 403, 404), (endpoint, who, response.text)
        assert response.status_code < 500
    else:
        assert response.status_code == want, (endpoint, who, response.text)
        assert response.json()["error"]["code"]


def test_an_agency_list_holds_only_its_own_requests(world: World) -> None:
    theirs = world.cloud.http.get("/v1/requests", headers=world.b.headers).json()
    mine = world.cloud.http.get("/v1/requests", headers=world.a.headers).json()
    assert {v["agency"] for v in theirs} <= {world.b.name}
    assert world.closed.request_id in {v["id"] for v in mine}
    assert world.closed.request_id not in {v["id"] for v in theirs}


def test_a_wrong_or_revoked_key_is_refused(world: World) -> None:
    good = world.a.key
    for key in (good[:-1] + ("A" if good[-1] != "A" else "B"), "sdk_0000_x", "x", "Bearer"):
        response = world.cloud.http.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401, key
    basic = world.cloud.http.get("/v1/whoami", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert basic.status_code == 401


def test_the_openapi_document_lists_the_answers_the_api_gives(world: World) -> None:
    """Every status the matrix sees (401, 403, 404) is documented for its operation, and
    so is 400 for every operation behind credentials, each with the error body."""
    spec = world.cloud.http.get("/openapi.json").json()
    documented = {
        f"{m.upper()} {p}".replace("{request_id}", "{id}").replace("{clip_id}", "{clip}"):
            ops[m]["responses"]
        for p, ops in spec["paths"].items() for m in ops
    }
    missing = []
    for endpoint, (_, expected) in MATRIX.items():
        answers = documented[endpoint]
        seen = {str(v) for v in expected.values() if v != ALLOW}
        if endpoint not in ("GET /v1/transparency", "GET /healthz"):
            seen.add("400")
        missing += [f"{endpoint}: {status}" for status in sorted(seen) if status not in answers]
        for status in seen & {"400", "401", "403", "404"} & set(answers):
            schema = answers[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (endpoint, status)
    assert missing == []


def test_the_matrix_covers_every_route(world: World) -> None:
    spec = world.cloud.http.get("/openapi.json").json()
    routes = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}
    normalised = {r.replace("{request_id}", "{id}").replace("{clip_id}", "{clip}")
                  for r in routes}
    assert normalised == set(MATRIX)
