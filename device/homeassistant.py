"""Home Assistant MQTT discovery on the owner's local broker (opt-in, metadata only).

With ``[home_assistant] enabled = true`` the agent announces itself to Home Assistant
through MQTT discovery: a doorbell ``event`` entity (event type ``pressed``), a motion
``binary_sensor`` (device class ``motion``) and their shared availability topic. The
payloads are built in `device.homeassistant_messages`; the discovery configs are sent
again whenever Home Assistant announces itself online on ``{discovery_prefix}/status``.

What crosses to Home Assistant is metadata: that the bell was pressed and when, and
whether motion is seen. Never video, thumbnails, clip ids or keys: the owner's home
automation broker is outside the sealed store's protection.

The connection to the owner's broker is `device.homeassistant_bridge`; here is the
agent's service that feeds it from the agent's status, and the agent's hook.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from device.homeassistant_bridge import HomeAssistantBridge

if TYPE_CHECKING:
    from device.service import AgentContext

log = logging.getLogger(__name__)


class HomeAssistantService:
    """The agent's Home Assistant service: the bridge plus a watcher of the agent's
    status that turns new button presses and motion changes into states.

    It reads only the agent's status (press counter, motion flag and count of motion
    starts): it cannot see footage or keys, by construction.
    """

    service_name = "home_assistant"

    def __init__(
        self,
        bridge: HomeAssistantBridge,
        status: Callable[[], dict[str, Any]],
        now: Callable[[], datetime],
        *,
        poll_s: float = 0.5,
    ) -> None:
        self.bridge = bridge
        self._status = status
        self._now = now
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._presses: int | None = None
        self._motion_starts: int | None = None

    def start(self) -> None:
        """Connect in the background and start watching. Raises TransportError only for
        a broker address that cannot be used at all."""
        # The baseline is taken now, before the agent's loop runs, so that a press in
        # the first half second is not mistaken for the starting count.
        self._presses = 0
        self._motion_starts = 0
        self.poll()
        self.bridge.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="home-assistant", daemon=True)
        self._thread.start()

    def service_report(self) -> dict[str, Any]:
        """For the agent's status: ``connected`` or ``connecting`` (with the reason the
        latest attempt failed), the broker and whether TLS is used."""
        bridge = self.bridge
        report: dict[str, Any] = {
            "state": "connected" if bridge.connected else "connecting",
            "broker": bridge.broker,
            "tls": bridge.tls,
        }
        error = bridge.last_error
        if error is not None and not bridge.connected:
            report["reason"] = error
        return report

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.poll()  # a press in the last half second still reaches Home Assistant
        self.bridge.stop()

    def poll(self) -> None:
        """Publish what changed since the last look. Never raises."""
        try:
            status = self._status()
        except Exception as exc:
            log.warning("home assistant: agent status unavailable: %s", exc)
            return
        presses = status.get("button_presses")
        if isinstance(presses, int):
            if self._presses is not None and presses > self._presses:
                for _ in range(presses - self._presses):
                    self.bridge.pressed(self._now())
            self._presses = presses
        motion = status.get("motion")
        if not isinstance(motion, dict) or not isinstance(motion.get("active"), bool):
            return
        starts = motion.get("starts")
        if isinstance(starts, int):
            # A visit shorter than the poll interval still shows as ON, then OFF.
            if self._motion_starts is not None and starts > self._motion_starts:
                self.bridge.motion(True)
            self._motion_starts = starts
        self.bridge.motion(motion["active"])

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.poll()


def make_service(context: AgentContext) -> HomeAssistantService | None:
    """The agent's hook (`device.compose.optional_services`): the Home Assistant service
    when ``[home_assistant] enabled``, else None. Raises ConfigError for a bad prefix."""
    settings = context.config.home_assistant
    if not settings.enabled:
        return None
    bridge = HomeAssistantBridge(settings, device_id=context.config.agent.device_id)
    return HomeAssistantService(bridge, context.status, context.clock.now)
