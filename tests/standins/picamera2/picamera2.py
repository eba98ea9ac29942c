"""Stand-in of picamera2.Picamera2 (0.3.x): configuration, recording, request capture.

The methods keep picamera2's names, parameters and defaults. Behaviour that matters to
the code under test is kept too: `create_video_configuration` fills in defaults and
aligns nothing away from what was asked for at even sizes; `configure` refuses a lores
stream larger than main and a lores format other than YUV420 (the VC4 ISP's rule);
`start_recording` = `configure` (if given) + `start_encoder` + `start`; `capture_request`
blocks for the next completed frame, whose buffers stay held until `release()`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from picamera2._standin import RIG, stride_for, to_strided
from picamera2.encoders import Encoder
from picamera2.outputs import Output
from picamera2.request import CompletedRequest


class Picamera2:
    """The camera system. Only one instance may hold the camera at a time."""

    _open = 0

    def __init__(
        self,
        camera_num: int = 0,
        verbose_console: int | None = None,
        tuning: Any = None,
        allocator: Any = None,
    ) -> None:
        RIG.record("Picamera2()")
        if camera_num >= len(RIG.cameras):
            raise IndexError("list index out of range")
        if Picamera2._open:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        Picamera2._open += 1
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self._encoders: set[Encoder] = set()
        self._closed = False
        self._cond = threading.Condition()
        self._latest: CompletedRequest | None = None
        self._sequence = 0
        self._taken = 0
        self._thread: threading.Thread | None = None
        self._stop_sensor = threading.Event()

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        RIG.record("Picamera2.global_camera_info()")
        return [dict(camera) for camera in RIG.cameras]

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        RIG.record("create_video_configuration()")
        main_cfg = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        lores_cfg = None if lores is None else {"format": "YUV420", **lores}
        all_controls = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
        all_controls.update(controls or {})
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_cfg,
            "lores": lores_cfg,
            "raw": raw,
            "controls": all_controls,
            "sensor": sensor or {},
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any] | str | None = None) -> None:
        RIG.record("configure()")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if not isinstance(camera_config, dict):
            raise RuntimeError("stand-in accepts only explicit configurations")
        config = {key: value for key, value in camera_config.items()}
        main = dict(config["main"])
        main["stride"] = stride_for(main["size"][0]) * (1 if main["format"] == "YUV420" else 4)
        config["main"] = main
        lores = config.get("lores")
        if lores is not None:
            lores = dict(lores)
            if lores["format"] != "YUV420":
                raise RuntimeError("lores stream must be YUV420")
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            lores["stride"] = stride_for(lores["size"][0])
            config["lores"] = lores
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is not None and (stream["size"][0] % 2 or stream["size"][1] % 2):
                raise RuntimeError(f"{name} stream size must be even")
        self.camera_config = config

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def start_encoder(
        self,
        encoder: Encoder | None = None,
        output: Output | None = None,
        pts: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        RIG.record("start_encoder()")
        if encoder is None:
            raise RuntimeError("No encoder specified")
        if output is not None:
            encoder.output = output
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        stream_name = name or self.camera_config["encode"]
        stream = self.camera_config.get(stream_name)
        if stream is None:
            raise RuntimeError(f"Encode stream {stream_name} was not defined")
        encoder.name = stream_name
        encoder.width, encoder.height = stream["size"]
        encoder.format = stream["format"]
        encoder.stride = stream["stride"]
        rate = self.camera_config["controls"].get("FrameRate", 30.0)
        if getattr(encoder, "framerate", None) is None:
            encoder.framerate = float(rate)
        encoder.start(quality=quality)
        self._encoders.add(encoder)

    def start_recording(
        self,
        encoder: Encoder,
        output: Output,
        pts: Any = None,
        config: dict[str, Any] | None = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        RIG.record("start_recording()")
        if config is not None:
            self.configure(config)
        self.start_encoder(encoder, output, pts=pts, quality=quality, name=name)
        self.start()

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        RIG.record("start()")
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self.started = True
        self._stop_sensor.clear()
        self._thread = threading.Thread(target=self._sensor, name="standin-sensor", daemon=True)
        self._thread.start()

    def capture_request(
        self, wait: Any = None, signal_function: Any = None, flush: Any = None
    ) -> CompletedRequest:
        if not self.started:
            raise RuntimeError("Camera is not running")
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._sequence > self._taken or not self.started, timeout=5
            )
            if not ok or self._latest is None or not self.started:
                raise TimeoutError("Camera frontend has timed out!")
            self._taken = self._sequence
            request = self._latest
            self._latest = None
        return request

    def capture_array(
        self, name: str = "main", wait: Any = None, signal_function: Any = None
    ) -> Any:
        request = self.capture_request()
        try:
            return request.make_array(name)
        finally:
            request.release()

    def stop(self) -> None:
        RIG.record("stop()")
        if not self.started:
            return
        self.started = False
        self._stop_sensor.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._cond:
            if self._latest is not None:
                self._latest.release()
                self._latest = None
            self._cond.notify_all()

    def stop_encoder(self, encoders: Any = None) -> None:
        RIG.record("stop_encoder()")
        for encoder in list(self._encoders):
            encoder.stop()
        self._encoders.clear()

    def stop_recording(self) -> None:
        RIG.record("stop_recording()")
        self.stop()
        self.stop_encoder()

    def close(self) -> None:
        RIG.record("close()")
        if self._closed:
            return
        if self.started:
            self.stop()
        self._closed = True
        Picamera2._open -= 1

    def _sensor(self) -> None:
        assert self.camera_config is not None
        config = self.camera_config
        fps = float(config["controls"].get("FrameRate", 30.0))
        frame_ns = round(1e9 / fps)
        start = time.monotonic()
        index = 0
        while not self._stop_sensor.is_set():
            t = index / fps
            arrays = {}
            for name in ("main", "lores"):
                stream = config.get(name)
                if stream is not None:
                    width, height = stream["size"]
                    arrays[name] = to_strided(RIG.scene(t, width, height), width, height)
            metadata = {
                "SensorTimestamp": RIG.sensor_base_ns + index * frame_ns,
                "FrameDuration": frame_ns // 1000,
                "ExposureTime": 10000,
            }
            request = CompletedRequest(arrays, metadata)
            for encoder in list(self._encoders):
                encoder.encode(config["encode"], request)
            with self._cond:
                if self._latest is not None:
                    self._latest.release()  # nobody took it: libcamera recycles it
                self._latest = request
                self._sequence += 1
                self._cond.notify_all()
            index += 1
            delay = start + index / fps - time.monotonic()
            if delay > 0:
                self._stop_sensor.wait(delay)
