"""`make_camera`: build the configured camera, importing its capture library lazily.

Only the module of the selected source is imported, so picamera2 and the OpenCV capture
path are never loaded on a machine that does not use them. Each camera class is built
as ``Class(settings, clock, encoder=...)``; the simulator also takes the bell callback
through which its scripted presses reach the Button seam.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from device.camera.base import Camera
from device.config import CameraSettings, RecorderSettings
from device.errors import CameraError
from device.release.clock import Clock


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """What every main-stream encoder (software or the Pi's hardware) must honour.

    `bitrate` in bits per second; `keyframe_interval_s` is the fixed GOP length in
    seconds (a clip can only start on a keyframe, so this bounds pre-roll precision).
    """

    bitrate: int
    keyframe_interval_s: float

    @classmethod
    def from_recorder(cls, settings: RecorderSettings) -> EncoderSettings:
        return cls(bitrate=settings.bitrate, keyframe_interval_s=settings.keyframe_interval_s)


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
    # Imported by name: device/camera/pi.py belongs to the Pi camera's own issue and
    # imports picamera2 at module level, which exists only on a Raspberry Pi.
    try:
        module = importlib.import_module("device.camera.pi")
    except ImportError as exc:
        raise CameraError(f"camera.source = 'pi' needs picamera2 on a Raspberry Pi: {exc}") from exc
    camera: Camera = module.PiCamera(settings, clock, encoder=encoder)
    return camera
