"""Bad input over real HTTP: oversized and malformed bodies get a 4xx naming the
problem, and schemathesis, generating requests from the OpenAPI description, finds no
5xx answer (bounded in examples and time)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.cloud import CloudServer, Principal


@pytest.fixture(scope="module")
def keys(module_cloud: CloudServer) -> dict[str, Principal]:
    return {
        "agency": module_cloud.principal("agency", org="fuzz-pd"),
        "reviewer": module_cloud.principal("reviewer", org="fuzz-review"),
        "admin": module_cloud.principal("admin", org="fuzz-ops"),
    }


def test_an_oversized_body_is_refused_before_parsing(module_cloud: CloudServer,
                                                     keys: dict[str, Principal]) -> None:
    limit = module_cloud.service.core.limits.max_json_body
    body = b'{"basis": "warrant", "judge": "' + b"x" * limit + b'"}'
    response = module_cloud.http.post("/v1/requests", content=body,
                                      headers={**keys["agency"].headers,
                                               "Content-Type": "application/json"})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "body_too_large"
    assert str(limit) in error["message"]


def test_an_oversized_body_without_length_is_counted(module_cloud: CloudServer,
                                                     keys: dict[str, Principal]) -> None:
    limit = module_cloud.service.core.limits.max_json_body

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    response = module_cloud.http.post("/v1/requests", content=chunks(),
                                      headers={**keys["agency"].headers,
                                               "Content-Type": "application/json"})
    assert response.status_code == 413
    assert str(limit) in response.json()["error"]["message"]


def test_an_oversized_chunk_is_refused(module_cloud: CloudServer) -> None:
    limit = module_cloud.service.core.limits.max_chunk
    response = module_cloud.http.put(
        "/v1/evidence/00000000-0000-4000-8000-000000000000/c1?offset=0",
        content=b"\0" * (limit + 1))
    assert response.status_code == 413
    assert str(limit) in response.json()["error"]["message"]


def test_a_small_declared_length_does_not_let_a_chunked_body_past_the_cap(
        module_cloud: CloudServer) -> None:
    """Request smuggling against the cap: the body claims 10 bytes but is sent chunked
    (which overrides the length) and runs past the cap. It must be refused, never
    passed through to the application on the strength of its Content-Length (httptools
    answers 400 itself; tests/unit/test_body_limit.py covers a parser that does not)."""
    limit = module_cloud.service.core.limits.max_chunk
    host, port = urlsplit(module_cloud.url).hostname, urlsplit(module_cloud.url).port
    assert host is not None
    assert port is not None
    piece = b"\0" * (1024 * 1024)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"PUT /v1/evidence/00000000-0000-4000-8000-000000000000/c1?offset=0"
                     b" HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(limit // len(piece) + 2):
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before the body is all sent
        answer = sock.recv(4096)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 413), answer[:200]


@pytest.mark.parametrize(("body", "code", "words"), [
    (b'{"basis": "warrant",', "malformed_json", "JSON"),
    (b"\xff\xfe\x00", "malformed_body", "JSON"),
    (b"[]", "invalid_request", ""),
    (b'{"basis": "subpoena-ish"}', "invalid_request", "basis"),
    (b'{"basis": "warrant", "window": {"start": "yesterday"}}', "invalid_request", "window"),
    (b'{"basis": "warrant", "unknown_field": 1}', "invalid_request", "unknown_field"),
    (b'{"basis": "warrant", "device_ids": "porch-cam"}', "invalid_request", "device_ids"),
])
def test_a_malformed_body_is_named(module_cloud: CloudServer, keys: dict[str, Principal],
                                   body: bytes, code: str, words: str) -> None:
    response = module_cloud.http.post("/v1/requests", content=body,
                                      headers={**keys["agency"].headers,
                                               "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]


def test_a_decision_body_is_checked(module_cloud: CloudServer,
                                    keys: dict[str, Principal]) -> None:
    for body in (b"not json", b'{"reason": 5}', b'{"reason": "fine", "extra": true}'):
        response = module_cloud.http.post(
            "/v1/requests/00000000-0000-4000-8000-000000000000/approve", content=body,
            headers={**keys["reviewer"].headers, "Content-Type": "application/json"})
        assert response.status_code in (400, 422), body
        assert response.json()["error"]["message"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["basis", "window", "device_ids", "recipient", "start", "end",
                         "court_id", "issued", "token_lifetime_s", "x"]), inner, max_size=5),
    max_leaves=12))
def test_random_json_never_gets_a_5xx(module_cloud: CloudServer, keys: dict[str, Principal],
                                      payload: object) -> None:
    response = module_cloud.http.post("/v1/requests", content=json.dumps(payload),
                                      headers={**keys["agency"].headers,
                                               "Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["code"]


def _who(path: str) -> str:
    if "approve" in path or "deny" in path or "review" in path:
        return "reviewer"
    if path.startswith(("/v1/devices", "/v1/audit")):
        return "admin"
    return "agency"


def _fuzz(operation: Any, headers: dict[str, str], calls: list[int],
          failures: list[str]) -> None:
    @settings(max_examples=15, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        response = case.call(headers=headers, timeout=30)
        calls.append(response.status_code)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path}: {response.text[:200]}")
        elif response.status_code >= 400:
            assert response.json()["error"]["code"]

    fuzz()


@pytest.mark.slow
def test_the_openapi_description_finds_no_5xx(module_cloud: CloudServer,
                                              keys: dict[str, Principal]) -> None:
    """Every operation of the description, fuzzed from its schema with a key that
    reaches past authorization; a 5xx anywhere fails the test with the case."""
    schema = schemathesis.openapi.from_url(f"{module_cloud.url}/openapi.json")
    operations: list[Any] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        operations.append(operation)
    assert len(operations) >= 14
    failures: list[str] = []
    calls: list[int] = []
    for operation in operations:
        _fuzz(operation, keys[_who(operation.path)].headers, calls, failures)
    assert failures == []
    assert len(calls) >= 5 * len(operations)  # the fuzzer really ran
