"""What each delivered payload becomes, and the two ways of reading: collect and follow.

`judge` is the trust decision: bytes in, a `NoticeMessage` out, no I/O; the payload is
parsed only by `protocol.messages.parse_notice`, and anything it refuses (or anything
on another topic) is `HostileInput`, reported and never stored. `take` stores an
accepted notice in the ledger (deduplicated by jti: the retained copy arrives again on
every connection) and acknowledges the message only then.

`collect` reads until the broker has been quiet for `Limits.quiet_s` after the
subscription was confirmed: the notices queued in the persistent session come right
after the CONNACK, the retained one after the SUBACK. MQTT has no "that was all"
signal, so the quiet period is a heuristic; a notice that arrives later is still in the
session and comes on the next run. `follow` reads until `stop` is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from owner_app.errors import HostileInput, TransportError
from owner_app.ledger import Added, Entry, Ledger
from owner_app.link import Inbound, OwnerLink
from protocol.errors import MessageError
from protocol.messages import NoticeMessage, parse_notice

# The broker keeps an offline owner's session, and the notices queued in it, this long
# after the last connection: an owner away for a season still learns of every release.
# (The deployment's broker also caps each queue at 1000 messages, deploy/mosquitto.)
SESSION_EXPIRY_S: Final = 90 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Limits:
    """Times in seconds."""

    connect_timeout_s: float = 10.0
    subscribe_timeout_s: float = 10.0
    quiet_s: float = 2.0  # collect: done once nothing arrived for this long
    max_collect_s: float = 120.0  # collect: hang guard against a device that never stops
    status_wait_s: float = 5.0  # status: how long to wait for the retained status
    poll_s: float = 0.2
    session_expiry_s: int = SESSION_EXPIRY_S


@dataclass(frozen=True, slots=True)
class Refused:
    """A payload that was reported and dropped."""

    topic: str
    size: int
    reason: str


@dataclass(frozen=True, slots=True)
class Taken:
    """A notice as the ledger now holds it; `added` says whether it is new."""

    entry: Entry
    added: Added
    received: NoticeMessage


Outcome = Taken | Refused


def judge(topic: str, payload: bytes, *, expected_topic: str) -> NoticeMessage:
    """The notice in `payload`. Raises HostileInput naming the problem."""
    if topic != expected_topic:
        raise HostileInput(f"a message on {topic!r:.200}, not on the notice topic")
    try:
        return parse_notice(payload)
    except MessageError as exc:
        raise HostileInput(str(exc)) from None


def take(ledger: Ledger, link: OwnerLink, message: Inbound, *, expected_topic: str,
         now: datetime) -> Outcome:
    """Judge one message, store it if it is a notice, then acknowledge it. A refused
    payload is acknowledged too (it would otherwise come back forever). Raises
    StateError when the ledger cannot be written (the message stays unacknowledged)."""
    try:
        notice = judge(message.topic, message.payload, expected_topic=expected_topic)
    except HostileInput as exc:
        link.ack(message)
        return Refused(message.topic, len(message.payload), str(exc))
    added = ledger.add(notice, now)
    link.ack(message)
    entry = ledger.get(notice.jti)
    assert entry is not None  # add stored it, or it was stored before
    return Taken(entry=entry, added=added, received=notice)


def collect(link: OwnerLink, ledger: Ledger, *, topic: str, limits: Limits,
            clock: Callable[[], datetime], report: Callable[[Outcome], None]) -> None:
    """Subscribe and take what the broker delivers until it has been quiet for
    `limits.quiet_s` (or `max_collect_s` passed). Raises TransportError when the
    connection is lost before that, StateError when the ledger fails."""
    link.subscribe(topic, limits.subscribe_timeout_s)
    started = last = time.monotonic()
    while True:
        message = link.receive(limits.poll_s)
        now = time.monotonic()
        if message is not None:
            report(take(ledger, link, message, expected_topic=topic, now=clock()))
            last = now
            continue
        if not link.connected():
            raise TransportError(f"the connection to the broker at {link.address} was lost "
                                 f"({link.last_error or 'closed'}); run again to resume")
        if now - last >= limits.quiet_s or now - started >= limits.max_collect_s:
            return


def follow(link: OwnerLink, ledger: Ledger, *, topic: str, limits: Limits,
           clock: Callable[[], datetime], report: Callable[[Outcome], None],
           stop: threading.Event, on_link: Callable[[bool], None]) -> None:
    """Subscribe and take every message until `stop` is set. The link reconnects by
    itself with backoff; `on_link(False)` / `on_link(True)` report losing and regaining
    it. Raises StateError when the ledger fails."""
    link.subscribe(topic, limits.subscribe_timeout_s)
    up = True
    while not stop.is_set():
        message = link.receive(limits.poll_s)
        if message is not None:
            report(take(ledger, link, message, expected_topic=topic, now=clock()))
        if link.connected() != up:
            up = not up
            on_link(up)
