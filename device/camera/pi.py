"""`PiCamera`: the Raspberry Pi camera module through picamera2, behind the Camera seam.

One libcamera video configuration with two streams of the same sensor frames:

- ``main`` (default 1280x720, YUV420) goes to picamera2's `H264Encoder` (the VideoCore
  hardware encoder on a Pi 4 or Zero 2; libx264 through PyAV on a Pi 5, which picamera2
  substitutes under the same name). It runs with ``repeat=True`` (SPS and PPS before
  every IDR) and ``iperiod`` = the configured GOP, so a clip may start on any keyframe.
  The encoder thread hands each access unit to `PacketOutput.outputframe`, which copies
  it into a bounded in-memory queue: encoded bytes never touch the disk in plaintext.
- ``lores`` (default 320x240, YUV420) is captured per frame with
  `capture_request(wait=False)` and `wait(job, timeout)`; its Y plane is the grayscale
  image for motion analysis, and the request's ``SensorTimestamp`` places the frame and
  the packets on one timeline. picamera2 would wait for ever for a frame that never
  comes (a loose ribbon cable): after `CAPTURE_TIMEOUT_S` the job is flushed
  (`cancel_all_and_flush`; a request that completed meanwhile is released) and `read`
  raises `CameraError`, so the agent restarts the camera before the watchdog fires.

The encoder is built with ``framerate`` = the configured fps: picamera2 otherwise gives
the V4L2 encoder the sensor's limit capped at 30 and the libav one a fixed 30, and rate
control spends ``bitrate / framerate`` per frame (half the bitrate at 15 fps). A
`start` that fails after the encoder started stops it before closing the camera:
picamera2's `close` does not, and each retry would leave an encoder thread and its
buffers behind. Supported picamera2: 0.3.26 and later
(docs/adr/0018-pi-libraries-checked-upstream.md).

Timeline (the Camera seam's contract): frame 0's timestamp is the wall clock when it is
read; later frames add the sensor's own elapsed time, so the timeline never jumps with
the wall clock. Packet times are the encoder's (microseconds since its first frame,
whose sensor time picamera2 keeps in ``encoder.firsttimestamp``), rebased on frame 0.
A wall clock that steps away from that timeline (NTP setting a Pi's clock after boot)
raises `CameraError`, so the agent restarts the camera on the corrected time instead of
sealing clips with times that are off by hours.

Pre-roll: picamera2's `CircularOutput2` is not used; the recorder's keyframe-aligned
ring serves the simulated and the Pi paths alike (ADR 0010 says why).

The encoder thread never raises into picamera2: a failure flags the output dead and the
next `read()` raises `CameraError` naming it. A consumer too slow for the queue loses
packets up to the next keyframe (counted in `dropped_packets`), never a corrupt GOP.

picamera2 is imported only here, and only when this camera is built; a missing
picamera2 raises `CameraError` saying how to install it.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import numpy as np

from device.camera.base import CameraFrame, ConfiguredGeometry, EncodedPacket, EncoderSettings
from device.camera.pi_output import PacketSink, make_output
from device.clock import Clock
from device.config import CameraSettings
from device.errors import CameraError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not importable. On Raspberry Pi OS install it with "
    "`sudo apt install python3-picamera2` and run the agent from a venv created with "
    "`python3 -m venv --system-site-packages` (deploy/raspberry-pi/install.sh does both); "
    "picamera2 and libcamera's Python bindings exist only as system packages"
)
QUEUE_SECONDS = 4.0  # packets held between two reads before the queue counts as overrun
STALL_SECONDS = 5.0  # frames arriving but no packet for this long: the encoder is stuck
CLOCK_STEP_SECONDS = 2.0  # wall clock this far from the sensor timeline: a clock step
CAPTURE_TIMEOUT_S = 2.0  # no frame for this long (at least 4 frame periods): camera stalled


def load_picamera2() -> tuple[ModuleType, ModuleType, ModuleType]:
    """picamera2, picamera2.encoders and picamera2.outputs. Raises CameraError with the
    install instructions when picamera2 (or libcamera under it) cannot be imported."""
    try:
        return (
            importlib.import_module("picamera2"),
            importlib.import_module("picamera2.encoders"),
            importlib.import_module("picamera2.outputs"),
        )
    except ImportError as exc:
        raise CameraError(f"{INSTALL_HINT} ({exc})") from exc


class PiCamera(ConfiguredGeometry):
    """The Pi camera module. `start` opens it, `read` blocks for the next frame.

    Raises CameraError: at construction when picamera2 is missing or the sizes are
    impossible; in `start` when no camera is attached or libcamera refuses the
    configuration; in `read` when the camera, the encoder or the wall clock fails.
    """

    def __init__(
        self,
        settings: CameraSettings,
        clock: Clock,
        *,
        encoder: EncoderSettings,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("camera.width", settings.width),
            ("camera.height", settings.height),
            ("camera.lores_width", settings.lores_width),
            ("camera.lores_height", settings.lores_height),
        ):
            if value % 2:
                raise CameraError(f"{name} = {value}: YUV420 needs an even size")
        if settings.lores_width > settings.width or settings.lores_height > settings.height:
            raise CameraError("the lores stream cannot be larger than the main stream")
        self._settings = settings
        self._clock = clock
        self._encoder_settings = encoder
        self._monotonic = monotonic
        self._picamera2, self._encoders, self._outputs = load_picamera2()
        self._gop = max(1, round(encoder.keyframe_interval_s * settings.fps))
        self._sink = PacketSink(max(8, round(QUEUE_SECONDS * settings.fps)))
        self._camera: Any = None
        self._encoder: Any = None
        self._index = 0
        self._anchor_wall: datetime | None = None
        self._anchor_sensor_us = 0
        self._last_pts_us = -1
        self._last_received = 0
        self._last_progress = 0.0

    @property
    def dropped_packets(self) -> int:
        return self._sink.dropped

    def start(self) -> None:
        """Configure both streams and start the camera with the H.264 encoder running."""
        if self._camera is not None:
            return
        picamera2_class = self._picamera2.Picamera2
        try:
            cameras = picamera2_class.global_camera_info()
        except Exception as exc:
            raise CameraError(f"libcamera cannot list cameras: {exc}") from exc
        if not cameras:
            raise CameraError(
                "no camera found: check the ribbon cable and run `rpicam-hello --list-cameras`"
            )
        s = self._settings
        try:
            camera = picamera2_class()
        except Exception as exc:
            raise CameraError(
                f"cannot open the camera (in use by another program?): {exc}"
            ) from exc
        try:
            config = camera.create_video_configuration(
                main={"size": (s.width, s.height), "format": "YUV420"},
                lores={"size": (s.lores_width, s.lores_height), "format": "YUV420"},
                controls={"FrameRate": float(s.fps)},
            )
            camera.configure(config)
            encoder = self._encoders.H264Encoder(
                bitrate=self._encoder_settings.bitrate,
                repeat=True,
                iperiod=self._gop,
                framerate=float(s.fps),
            )
            output = make_output(self._outputs.Output, self._sink)
            camera.start_recording(encoder, output)
        except Exception as exc:
            _stop_encoders_quietly(camera)
            _close_quietly(camera)
            raise CameraError(f"camera refused {s.width}x{s.height}@{s.fps}: {exc}") from exc
        self._camera = camera
        self._encoder = encoder
        self._last_progress = self._monotonic()

    def read(self) -> CameraFrame | None:
        """The next frame with the packets the encoder finished since the last one."""
        camera = self._camera
        if camera is None:
            raise CameraError("read() before start()")
        if self._sink.dead is not None:
            raise CameraError(f"the H.264 output failed: {self._sink.dead}")
        request = self._capture(camera)
        try:
            try:
                yuv = request.make_array("lores")
                metadata = request.get_metadata()
            finally:
                request.release()
        except Exception as exc:
            raise CameraError(f"the camera stopped delivering frames: {exc}") from exc
        sensor_ns = metadata.get("SensorTimestamp") if isinstance(metadata, dict) else None
        if not isinstance(sensor_ns, int):
            raise CameraError("the camera's frame metadata has no SensorTimestamp")
        lores = self._y_plane(yuv)
        sensor_us = sensor_ns // 1000
        now = self._clock.now()
        if self._anchor_wall is None:
            self._anchor_wall = now
            self._anchor_sensor_us = sensor_us
        timestamp = self._anchor_wall + timedelta(microseconds=sensor_us - self._anchor_sensor_us)
        step = abs((now - timestamp).total_seconds())
        if step > CLOCK_STEP_SECONDS:
            raise CameraError(
                f"the wall clock stepped {step:.1f} s away from the camera's timeline "
                "(NTP synchronized?); restart the camera to continue on the new time"
            )
        packets = self._packets()
        self._watch_encoder()
        frame = CameraFrame(timestamp=timestamp, index=self._index, lores=lores, packets=packets)
        self._index += 1
        return frame

    def _capture(self, camera: Any) -> Any:
        """The next completed request, or CameraError after the capture timeout."""
        timeout = max(CAPTURE_TIMEOUT_S, 4.0 / self._settings.fps)
        try:
            job = camera.capture_request(wait=False)
            return camera.wait(job, timeout=timeout)
        except TimeoutError:
            pass
        except Exception as exc:
            raise CameraError(f"the camera stopped delivering frames: {exc}") from exc
        # Flush the job, or it would take (and hold for ever) the next frame's buffers.
        try:
            camera.cancel_all_and_flush()
            late = camera.wait(job, timeout=0)  # completed between the timeout and flush
        except Exception:  # CancelledError: the flush got it first
            late = None
        if late is not None:
            _release_quietly(late)
        raise CameraError(
            f"no frame from the camera in {timeout:.1f} s (camera stalled, or its cable "
            "loose?)"
        )

    def stop(self) -> None:
        """Stop recording and release the camera. Idempotent, never raises."""
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.stop_recording()
        except Exception as exc:
            log.warning("picamera2 stop_recording failed: %s", exc)
        _close_quietly(camera)
        self._sink.drain()

    def _y_plane(self, yuv: object) -> np.ndarray[Any, np.dtype[np.uint8]]:
        s = self._settings
        if (
            not isinstance(yuv, np.ndarray)
            or yuv.dtype != np.uint8
            or yuv.ndim != 2
            or yuv.shape[0] < s.lores_height * 3 // 2
            or yuv.shape[1] < s.lores_width
        ):
            shape = getattr(yuv, "shape", None)
            raise CameraError(
                f"lores buffer {shape} is not YUV420 {s.lores_width}x{s.lores_height}"
            )
        # YUV420 arrives as (height * 3/2, stride): Y is the first `height` rows.
        return np.ascontiguousarray(yuv[: s.lores_height, : s.lores_width])

    def _packets(self) -> tuple[EncodedPacket, ...]:
        first = getattr(self._encoder, "firsttimestamp", None)
        base_us = first if isinstance(first, int) else self._anchor_sensor_us
        out: list[EncodedPacket] = []
        for unit in self._sink.drain():
            pts_us = unit.timestamp_us + base_us - self._anchor_sensor_us
            if pts_us < 0:
                continue  # encoded before frame 0 of this timeline
            pts_us = max(pts_us, self._last_pts_us + 1)
            self._last_pts_us = pts_us
            out.append(EncodedPacket(data=unit.data, pts_s=pts_us / 1e6, keyframe=unit.keyframe))
        return tuple(out)

    def _watch_encoder(self) -> None:
        now = self._monotonic()
        if self._sink.received != self._last_received:
            self._last_received = self._sink.received
            self._last_progress = now
        elif now - self._last_progress > STALL_SECONDS:
            raise CameraError(
                f"the H.264 encoder delivered nothing for {now - self._last_progress:.1f} s"
            )


def _stop_encoders_quietly(camera: Any) -> None:
    try:
        camera.stop_encoder()
    except Exception as exc:
        log.warning("picamera2 stop_encoder failed: %s", exc)


def _release_quietly(request: Any) -> None:
    try:
        request.release()
    except Exception as exc:
        log.warning("picamera2 request release failed: %s", exc)


def _close_quietly(camera: Any) -> None:
    try:
        camera.close()
    except Exception as exc:
        log.warning("picamera2 close failed: %s", exc)
