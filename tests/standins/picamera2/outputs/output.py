"""Stand-in of picamera2.outputs.output.Output, as in picamera2 0.3.23 and later."""

from __future__ import annotations

from typing import Any


class Output:
    """Handles output functionality of encoders."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False
        self.needs_add_stream = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(
        self,
        frame: Any,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """Outputs frame from encoder."""

    def outputtimestamp(self, timestamp: int | None) -> None:
        """Timestamps go to `pts` files in picamera2; the stand-in keeps none."""

    def _add_stream(self, encoder_stream: Any, *args: Any, **kwargs: Any) -> None:
        """Some output types need to know about an encoder's streams."""
