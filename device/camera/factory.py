"""`make_camera`: build the configured camera, importing its capture library lazily.

Only the module of the selected source is imported, so picamera2 and the OpenCV capture
path are never loaded on a machine that does not use them. Each camera class is built
as ``Class(settings, clock, encoder=...)``; the simulator also takes the bell callback
through which its scripted presses reach the Button seam.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from device.camera.base import Camera, EncoderSettings
from device.clock import Clock
from device.config import CameraSettings


def make_camera(
    settings: CameraSettings,
    clock: Clock,
    *,
    encoder: EncoderSettings,
    on_bell: Callable[[datetime], object] | None = None,
) -> Camera:
    """The camera named by `settings.source`.

    Raises CameraError when the source's library is missing (picamera2 off a Pi) or the
    settings are incomplete (a `file` source without `camera.file`).
    """
    if settings.source == "sim":
        from device.camera.sim import SimCamera

        return SimCamera(settings, clock, encoder=encoder, on_bell=on_bell)
    if settings.source == "file":
        from device.camera.file import FileCamera

        return FileCamera(settings, clock, encoder=encoder)
    if settings.source == "v4l2":
        from device.camera.v4l2 import V4L2Camera

        return V4L2Camera(settings, clock, encoder=encoder)
    from device.camera.pi import PiCamera

    return PiCamera(settings, clock, encoder=encoder)
