"""`report --verify-log` logic (ADR 0014): recount the transparency report from the log.

Every token the service published (warrant, emergency or preservation) has one
statement in the public log, so the report's `releases` (tokens sent to devices) must
equal the number of logged statements, counted by anyone from the log's tiles
(`release_log.reader`). A difference means the database and the public record disagree:
a release not logged, or a logged one the report leaves out. Valid for a report over the
whole history (no `--since` or `--until`: statements carry the token's `iat`, the report
filters by submission time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from cloud_stub.domain.transparency import TransparencyReport
from protocol.tlog.errors import StatementError, TlogError
from protocol.tlog.policy import WitnessPolicy, parse_policy
from protocol.tlog.statement import ReleaseStatement, parse_statement
from release_log.reader import Fetch, LogReadError, read_log

FETCH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LogTally:
    size: int
    by_basis: dict[str, int]
    not_statements: int

    @property
    def releases(self) -> int:
        return sum(self.by_basis.values())


def tally(entries: Iterable[bytes], size: int) -> LogTally:
    counts: Counter[str] = Counter()
    junk = 0
    for entry in entries:
        try:
            statement: ReleaseStatement = parse_statement(entry)
        except StatementError:
            junk += 1
            continue
        counts[statement.basis] += 1
    return LogTally(size, dict(sorted(counts.items())), junk)


def read_tally(policy: WitnessPolicy, fetch: Fetch) -> LogTally:
    """Tally the whole log named by the policy's `log` line with a URL."""
    logs = [log for log in policy.logs if log.url]
    if len(logs) != 1:
        raise LogReadError("the policy needs exactly one log line with a URL")
    view = read_log(policy, logs[0], fetch)
    return tally((entry for _, entry in view.entries(0, fetch)), view.checkpoint.size)


def _by_basis(log: LogTally) -> str:
    return ", ".join(f"{basis} {n}" for basis, n in log.by_basis.items()) or "none"


def differences(report: TransparencyReport, log: LogTally) -> list[str]:
    """Each disagreement between the report and the log, in words; empty when none."""
    out = []
    if report.period_start is not None or report.period_end is not None:
        out.append("the log can only verify a report over the whole history (no --since/--until)")
    if report.releases != log.releases:
        out.append(
            f"releases: the report says {report.releases}, the log holds "
            f"{log.releases} release statements ({_by_basis(log)})"
        )
    if log.not_statements:
        out.append(f"the log holds {log.not_statements} entries that are not release statements")
    return out


def verify_with_log(report: TransparencyReport, policy_file: Path) -> list[str]:
    """`cloud-stub report --verify-log POLICY`: the differences between `report` and the
    log the tlog-policy file names (its `log` line with the URL), read over HTTP. A log
    that cannot be read or checked is itself a difference."""
    try:
        policy = parse_policy(policy_file.read_bytes())
    except (OSError, TlogError) as exc:
        return [f"{policy_file}: {exc}"]

    def fetch(url: str) -> bytes:
        try:
            response = httpx.get(url, timeout=FETCH_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise LogReadError(f"{url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise LogReadError(f"{url}: HTTP {response.status_code}")
        return response.content

    try:
        log = read_tally(policy, fetch)
    except LogReadError as exc:
        return [f"the log cannot be verified: {exc}"]
    return differences(report, log)
