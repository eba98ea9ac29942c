"""`doorbell-evidence`: fetch a request's evidence and verify it end to end.

  doorbell-evidence fetch --api URL --api-key-file FILE REQUEST_ID DIR
  doorbell-evidence verify DIR [--trust-root FILE] [--at TIME] [--json]

Exit codes: 0 verified (or fetched), 1 a check failed (the message names the file and
the rule) or the download failed, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from doorbell_evidence.fetch import FetchError, fetch
from doorbell_evidence.folder import EvidenceFolder
from doorbell_evidence.verify import EvidenceProblem, FolderVerdict, verify_folder
from protocol.timefmt import format_time, parse_time


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doorbell-evidence",
        description="Fetch a request's evidence as the requesting agency, and verify a "
        "downloaded evidence folder end to end (file hashes, the device-signed manifest, "
        "the device's certified identity, the release token).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get = sub.add_parser("fetch", help="download a request's evidence into a folder")
    get.add_argument("--api", required=True, help="the cloud's API URL, e.g. http://host:8080")
    get.add_argument("--api-key-file", type=Path, required=True,
                     help="a file holding the agency's API key")
    get.add_argument("request_id")
    get.add_argument("dir", type=Path)
    check = sub.add_parser("verify", help="verify a downloaded evidence folder")
    check.add_argument("dir", type=Path)
    check.add_argument("--trust-root", type=Path,
                       help="the deployment's trust root as you hold it (default: the "
                       "folder's copy; compare its fingerprint out of band)")
    check.add_argument("--at", help="RFC 3339 time at which the trust root must be valid "
                       "(default: now)")
    check.add_argument("--json", action="store_true")
    return parser


def _print(verdict: FolderVerdict) -> None:
    print(f"trust root sha256 {verdict.root_fingerprint}")
    for token in verdict.tokens:
        start, end = token.window
        print(f"token {token.jti}: {token.basis}, case {token.case}, device {token.device}, "
              f"window {format_time(start)} to {format_time(end)}")
        for clip in token.clips:
            print(f"  ok  {clip.clip_id}  {clip.bytes} bytes  sha256 {clip.sha256}")
    count = sum(len(t.clips) for t in verdict.tokens)
    clips = "clip" if count == 1 else "clips"
    print(f"verified: {count} {clips} under {len(verdict.tokens)} token(s)")


def _as_json(verdict: FolderVerdict) -> str:
    return json.dumps({
        "ok": True,
        "trust_root_sha256": verdict.root_fingerprint,
        "tokens": [{
            "jti": t.jti, "device": t.device, "basis": t.basis, "case": t.case,
            "window": {"start": format_time(t.window[0]), "end": format_time(t.window[1])},
            "clips": [{"clip_id": c.clip_id, "bytes": c.bytes, "sha256": c.sha256}
                      for c in t.clips],
        } for t in verdict.tokens],
    })


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "fetch":
        try:
            key = args.api_key_file.read_text().strip()
            files = fetch(args.api, key, args.request_id, args.dir)
        except OSError as exc:
            print(f"doorbell-evidence: {args.api_key_file}: {exc.strerror}", file=sys.stderr)
            return 1
        except FetchError as exc:
            print(f"doorbell-evidence: {exc}", file=sys.stderr)
            return 1
        print(f"fetched {len(files)} clip file(s) into {args.dir}")
        return 0
    try:
        at = parse_time(args.at) if args.at else datetime.now(UTC)
    except ValueError as exc:
        print(f"doorbell-evidence: --at: {exc}", file=sys.stderr)
        return 2
    try:
        pinned = args.trust_root.read_bytes() if args.trust_root else None
        verdict = verify_folder(EvidenceFolder(args.dir), at=at, trust_root=pinned)
    except OSError as exc:
        print(f"doorbell-evidence: {exc}", file=sys.stderr)
        return 1
    except EvidenceProblem as exc:
        if args.json:
            print(json.dumps({"ok": False, "problem": str(exc)}))
        print(f"doorbell-evidence: REJECTED: {exc}", file=sys.stderr)
        return 1
    print(_as_json(verdict) if args.json else "", end="\n" if args.json else "")
    if not args.json:
        _print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
