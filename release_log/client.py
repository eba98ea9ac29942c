"""A client of the log's service endpoints (`POST /add`, `GET /proof`), for the operator's
service: append a release statement, then fetch its proof bundle once witnessed."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from protocol.tlog.bundle import ProofBundle, parse_bundle


class LogClientError(Exception):
    """The log refused or could not be reached; the message names the URL and status."""


class NotWitnessedYet(LogClientError):
    """The entry is logged but no checkpoint covering it has a witness quorum yet."""


@dataclass
class LogClient:
    base_url: str
    token: str | None = None
    timeout_s: float = 10.0

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def append(self, statement: bytes) -> int:
        """The index the log gave `statement` (durable once this returns)."""
        url = self.base_url.rstrip("/") + "/add"
        try:
            response = httpx.post(
                url, content=statement, headers=self._headers(), timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise LogClientError(f"{url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise LogClientError(f"{url}: {response.status_code} {response.text.strip()[:200]}")
        words = response.text.split()
        if len(words) != 2 or words[0] != "index" or not words[1].isdigit():
            raise LogClientError(f"{url}: unexpected answer {response.text[:80]!r}")
        return int(words[1])

    def proof(self, index: int, *, old_size: int, wait_s: float = 10.0) -> ProofBundle:
        """The bundle for entry `index` with a consistency proof from `old_size`."""
        url = self.base_url.rstrip("/") + "/proof"
        params: dict[str, str | int | float] = {"index": index, "old": old_size, "wait": wait_s}
        try:
            response = httpx.get(
                url, params=params, headers=self._headers(), timeout=wait_s + self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise LogClientError(f"{url}: {type(exc).__name__}") from None
        if response.status_code == 503:
            raise NotWitnessedYet(f"entry {index} has no witness quorum yet")
        if response.status_code != 200:
            raise LogClientError(f"{url}: {response.status_code} {response.text.strip()[:200]}")
        return parse_bundle(response.content)
