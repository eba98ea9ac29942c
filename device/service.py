"""What the agent asks of an optional service, and what it hands one.

A service (the release side, the Home Assistant bridge) is built by
`device.compose.optional_services` from an `AgentContext`, started after the store is
recovered and stopped before it closes. This module sits below both the agent and the
services, so a service imports it without importing the agent that runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from device.clock import Clock
from device.config import AgentConfig

if TYPE_CHECKING:  # the store's modules load when the agent opens it, not at import
    from device.vault import SealedStore

log = logging.getLogger(__name__)


class Service(Protocol):
    """Something the agent starts after the store and stops before it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class ReportingService(Protocol):
    """A service whose state the agent's status shows under ``services.<service_name>``
    (e.g. the release side: running, or unavailable and why). `service_report` must not
    call the agent's `status` (it is called from it)."""

    service_name: str

    def service_report(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What a service receives: the configuration, the store, the clock, and a function
    returning the agent's current status (for health reports)."""

    config: AgentConfig
    store: SealedStore
    clock: Clock
    status: Callable[[], dict[str, Any]]


def service_reports(services: Iterable[Service]) -> dict[str, Any]:
    """``service_name -> service_report()`` of the services that report; a report that
    raises is shown as ``{"state": "unknown", "reason": ...}``, never raised."""
    reports: dict[str, Any] = {}
    for service in services:
        if isinstance(service, ReportingService):
            try:
                reports[service.service_name] = service.service_report()
            except Exception as exc:  # a report must not break the status
                reports[service.service_name] = {"state": "unknown", "reason": str(exc)}
    return reports


def start_services(services: Iterable[Service]) -> list[Service]:
    """Start each service in order; the ones that started. A service that fails to
    start is logged and left out: an optional service never stops the recording."""
    started: list[Service] = []
    for service in services:
        try:
            service.start()
        except Exception:
            log.exception("service %s failed to start", type(service).__name__)
            continue
        started.append(service)
    return started


def stop_services(started: Sequence[Service]) -> None:
    """Stop the started services in reverse order; a failure is logged, never raised."""
    for service in reversed(started):
        try:
            service.stop()
        except Exception:
            log.exception("service %s failed to stop", type(service).__name__)
