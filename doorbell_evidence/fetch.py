"""Download a request's evidence into an `EvidenceFolder` over the cloud's HTTP API, as
the requesting agency (``Authorization: Bearer <api key>``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from doorbell_evidence.folder import EvidenceFolder
from protocol import _schema as s


class FetchError(Exception):
    """The API refused or failed; the message names the URL and the answer."""


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise FetchError(
            f"{response.request.method} {response.request.url}: HTTP {response.status_code}: "
            f"{response.text[:300]}"
        )
    return response


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fetch(api: str, api_key: str, request_id: str, out: Path) -> list[Path]:
    """Save the listing, trust root, tokens, manifests, certificates and every clip of
    `request_id` under `out`; returns the clip files written. Raises FetchError."""
    s.identifier(request_id, "request id")
    folder = EvidenceFolder(out)
    headers = {"Authorization": f"Bearer {api_key}"}
    written: list[Path] = []
    try:
        with httpx.Client(base_url=api.rstrip("/"), headers=headers, timeout=60) as http:
            raw = _check(http.get(f"/v1/requests/{request_id}/evidence")).content
            listing: dict[str, Any] = json.loads(raw)
            out.mkdir(parents=True, exist_ok=True)
            _write(folder.listing, raw)
            _write(folder.trust_root, str(listing["trust_root"]).encode())
            devices = {f["jti"]: f["device"] for f in listing["files"]}
            for jti, manifest in listing["manifests"].items():
                tokens = folder.token_dir(s.identifier(jti, "jti"))
                _write(tokens.manifest, str(manifest).encode())
                _write(tokens.token, str(listing["tokens"].get(jti, "")).encode())
                cert = listing["device_certificates"].get(devices.get(jti, ""), "")
                _write(tokens.device_identity, str(cert).encode())
            for item in listing["files"]:
                tokens = folder.token_dir(s.identifier(item["jti"], "jti"))
                path = tokens.clip(s.identifier(item["clip_id"], "clip id"))
                with http.stream("GET", f"/v1/evidence/{item['jti']}/{item['clip_id']}") as r:
                    if r.status_code != 200:
                        r.read()
                        _check(r)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.part")
                    with tmp.open("wb") as handle:
                        for chunk in r.iter_bytes():
                            handle.write(chunk)
                    os.replace(tmp, path)
                written.append(path)
    except httpx.HTTPError as exc:
        raise FetchError(f"{api}: {exc}") from exc
    except (KeyError, TypeError, ValueError, s.SchemaError) as exc:
        raise FetchError(f"{api}: the evidence listing is not what this tool reads: {exc}") from exc
    return written
