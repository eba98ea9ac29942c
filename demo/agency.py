"""The agency's side of the demonstration, over the cloud stub's real HTTP API."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from demo.steps import StepFailed


@dataclass
class ApiClient:
    """One principal's view of the cloud stub (Bearer API key)."""

    base_url: str
    api_key: str

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30.0,
        )

    def get(self, path: str) -> Any:
        with self._client() as client:
            response = client.get(path)
        if response.status_code != 200:
            raise StepFailed(f"GET {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def post(self, path: str, body: dict[str, Any], *, also: tuple[int, ...] = ()) -> Any:
        """POST JSON; a status outside 2xx and `also` raises StepFailed with the answer."""
        with self._client() as client:
            response = client.post(path, json=body)
        if response.status_code not in (200, 201, 202, *also):
            raise StepFailed(f"POST {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def download(self, path: str, target: Path) -> str:
        """Stream a file to `target`; returns its sha256."""
        digest = hashlib.sha256()
        with self._client() as client, client.stream("GET", path) as response:
            if response.status_code != 200:
                raise StepFailed(f"GET {path}: HTTP {response.status_code}")
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
        return digest.hexdigest()


def submit(client: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/requests; returns the stored request view (refused or queued).

    A refusal is answered 422 with the error code and the stored request.
    """
    answer = client.post("/v1/requests", body, also=(422,))
    view = answer.get("request", answer)
    if not isinstance(view, dict):
        raise StepFailed(f"unexpected answer to POST /v1/requests: {answer!r}")
    return view


def refusal_codes(view: dict[str, Any]) -> list[str]:
    return [str(reason.get("code")) for reason in view.get("reasons", [])]


AGENCY_FIELDS: dict[str, str] = {
    "agency": "Metro Police Department",
    "investigator": "Det. Sam Ortiz",
    "contact": "s.ortiz@metro-pd.example",
    "agency_case_number": "MPD-2026-1187",
}
