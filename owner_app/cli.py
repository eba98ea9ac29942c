"""`doorbell-owner`: read your doorbell's release notices and status with its owner bundle.

  doorbell-owner --bundle DIR notices [--follow] [--json] [--state DIR]
  doorbell-owner --bundle DIR status [--json]
  doorbell-owner --bundle DIR monitor [--state DIR] [--json]   (the release log, ADR 0014)

`notices` keeps a persistent session at the broker (connect once and the broker queues
every notice published while you are offline), stores each notice once in a local
ledger and prints the ledger, new notices marked. Exit 0 on success, 1 when the bundle,
the ledger or the broker fails (the message names which), 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TextIO

from owner_app import render
from owner_app.bundle import OwnerBundle, load_bundle
from owner_app.errors import OwnerError
from owner_app.ledger import Added, Entry, default_state_dir, open_ledger
from owner_app.link import LinkSettings, OwnerLink
from owner_app.monitor_cli import run_monitor
from owner_app.reader import Limits, Outcome, Refused, collect, follow
from protocol.errors import MessageError
from protocol.messages import parse_status

PROG = "doorbell-owner"
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Read a doorbell's release notices and status with its "
        "owner bundle (from `cloud-stub devices enroll` or `devices owner-cert`).")
    parser.add_argument("--bundle", type=Path, required=True, metavar="DIR",
                        help="the owner bundle directory (device-id, mqtt.pem, mqtt.key, "
                        "ca.pem, owner.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    notices = sub.add_parser("notices", help="fetch, store and print the release notices")
    notices.add_argument("--follow", action="store_true",
                         help="keep printing notices as they arrive, until Ctrl-C or SIGTERM")
    notices.add_argument("--json", action="store_true", help="one JSON object per line")
    notices.add_argument("--state", type=Path, metavar="DIR",
                         help="where the ledger notices.jsonl is kept (default "
                         "~/.local/state/doorbell-owner/<device-id>)")
    status = sub.add_parser("status", help="print the device's retained status")
    status.add_argument("--json", action="store_true", help="one JSON object")
    monitor = sub.add_parser("monitor", help="check the public release log and list this "
                             "doorbell's entries (bundle's release-log/)")
    monitor.add_argument("--state", type=Path, metavar="DIR",
                         help="where the checked checkpoint and found entries are kept")
    monitor.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _say(err: TextIO, text: str) -> None:
    print(f"{PROG}: {text}", file=err, flush=True)


def _link(bundle: OwnerBundle, limits: Limits, *, persistent: bool) -> OwnerLink:
    client_id = (bundle.session_id() if persistent
                 else f"{bundle.user}.status-{secrets.token_hex(8)}")
    return OwnerLink(LinkSettings(
        host=bundle.host, port=bundle.port, client_id=client_id, tls=bundle.tls_context(),
        persistent=persistent, session_expiry_s=limits.session_expiry_s,
        connect_timeout_s=limits.connect_timeout_s,
    ))


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_notices(args: argparse.Namespace, *, limits: Limits, clock: Clock, out: TextIO,
                err: TextIO, stop: threading.Event | None = None) -> int:
    """Raises OwnerError."""
    bundle = load_bundle(args.bundle)
    state = args.state if args.state is not None else default_state_dir(bundle.device_id)
    topic = bundle.topics.notice
    new: set[str] = set()

    def show(outcome: Outcome) -> None:
        if isinstance(outcome, Refused):
            _say(err, f"refused a payload on {render.safe(outcome.topic, 200)} "
                      f"({outcome.size} bytes), not stored: {render.safe(outcome.reason)}")
            return
        if outcome.added is Added.conflict:
            _say(err, render.conflict_line(outcome.entry, outcome.received))
        elif outcome.added is Added.new:
            new.add(outcome.entry.notice.jti)
            if args.follow:
                _print_entries(out, [outcome.entry], {outcome.entry.notice.jti}, args.json)

    # In follow mode the signal handlers go in before anything is printed: a SIGINT that
    # arrives right after "first connection" must end the run cleanly, not as a traceback.
    stop = stop or threading.Event()
    signals = _stop_on_signals(stop) if args.follow else contextlib.nullcontext()
    with signals, open_ledger(state) as ledger:
        link = _link(bundle, limits, persistent=True)
        link.open()
        try:
            if not link.session_present:
                if ledger.existed:
                    _say(err, "the broker held no session for this owner (it expired or the "
                         "broker lost it): notices published while you were offline may be "
                         "lost, except the last one, which the broker retains")
                else:
                    _say(err, "first connection: from now on the broker keeps the notices "
                         f"published while you are offline (up to "
                         f"{limits.session_expiry_s // 86400} days)")
            if args.follow:
                follow(link, ledger, topic=topic, limits=limits, clock=clock,
                       report=show, stop=stop,
                       on_link=lambda up: _say(err, "connected again" if up else
                                               f"connection to {bundle.address} lost "
                                               f"({link.last_error or 'closed'}); "
                                               "reconnecting"))
                return 0
            collect(link, ledger, topic=topic, limits=limits, clock=clock, report=show)
        finally:
            link.close()
        entries = ledger.entries()
    if not entries and not args.json:
        print(f"no release notices for device {render.safe(bundle.device_id)}", file=out)
    _print_entries(out, entries, new, args.json)
    return 0


def _print_entries(out: TextIO, entries: Sequence[Entry], new: set[str],
                   as_json: bool) -> None:
    for entry in entries:
        is_new = entry.notice.jti in new
        if as_json:
            print(render.notice_json(entry, new=is_new), file=out)
        else:
            print("\n".join(render.notice_lines(entry, new=is_new)), file=out)
    out.flush()


def run_status(args: argparse.Namespace, *, limits: Limits, out: TextIO) -> int:
    """Raises OwnerError."""
    bundle = load_bundle(args.bundle)
    topic = bundle.topics.status
    link = _link(bundle, limits, persistent=False)
    link.open()
    try:
        link.subscribe(topic, limits.subscribe_timeout_s)
        message = link.receive(limits.status_wait_s)
        if message is None:
            raise OwnerError(
                f"no status on {topic} within {limits.status_wait_s:g} s: the device has not "
                f"connected to this broker yet, or the broker no longer lets {bundle.user} "
                "read it (ask the operator)")
        link.ack(message)
    finally:
        link.close()
    try:
        status = parse_status(message.payload)
    except MessageError as exc:
        raise OwnerError(f"the status on {topic} is not acceptable "
                         f"({len(message.payload)} bytes): {render.safe(str(exc))}") from None
    if args.json:
        print(render.status_json(bundle.device_id, status), file=out)
    else:
        print("\n".join(render.status_lines(bundle.device_id, status,
                                            retained=message.retain)), file=out)
    return 0


def main(argv: Sequence[str] | None = None, *, limits: Limits | None = None,
         clock: Clock = _utc_now, out: TextIO | None = None, err: TextIO | None = None,
         stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    limits = limits or Limits()
    out, err = out or sys.stdout, err or sys.stderr
    try:
        if args.command == "notices":
            return run_notices(args, limits=limits, clock=clock, out=out, err=err, stop=stop)
        if args.command == "monitor":
            return run_monitor(args, out=out)
        return run_status(args, limits=limits, out=out)
    except OwnerError as exc:
        _say(err, f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
