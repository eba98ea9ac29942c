"""The cloud stub's HTTP API as the reviewer's machine uses it."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """The service refused or could not be reached; the message says which and why."""


class ReviewApi:
    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ApiError(f"{method} {path}: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                detail = f"{error['message']} [{error['code']}]"
            except (ValueError, KeyError, TypeError):
                detail = response.text[:300]
            raise ApiError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response.json()

    def queue(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/review/queue"))

    def request(self, request_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/requests/{request_id}"))

    def signing_payload(self, request_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/requests/{request_id}/signing-payload"))

    def sign(self, request_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/requests/{request_id}/signatures", body))

    def reissue_payload(self, request_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/requests/{request_id}/reissue-payload"))

    def reissue_sign(self, request_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/requests/{request_id}/reissue-signatures", body))

    def deny(self, request_id: str, reason: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/requests/{request_id}/deny", {"reason": reason}))
