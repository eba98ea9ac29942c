"""Stand-in of picamera2.Picamera2 (picamera2 0.3.36, picamera2/picamera2.py).

Names, parameters and defaults as upstream, and the behaviour the doorbell depends on:

- `Picamera2()` on a camera another process holds: RuntimeError("Camera __init__
  sequence did not complete.") from "Failed to acquire camera: Device or resource busy";
- `create_video_configuration`: main XBGR8888 1280x720, a default `raw` stream in the
  sensor's format at the main size, a default lores format YUV420, sizes aligned to
  even numbers (`align_stream(optimal=False)`), controls NoiseReductionMode and
  FrameDurationLimits (33333, 33333) under the caller's;
- `configure`: even sizes, lores no larger than main, lores YUV only on VC4
  (`check_camera_config`); strides padded to 64 bytes as libcamera does on the Pi;
- `start_encoder` gives an encoder whose `framerate` is None 1e6 / max(the sensor's
  shortest frame, 33333 us), i.e. at most 30: not the configured frame rate;
- completed requests: with `queue=True` the newest one is kept (`_max_queue_len` 1),
  and a job queued while one is kept takes it at once (`capture_request_` pops it);
- `capture_request(wait=None)` blocks until a frame comes, for ever if none does; a
  number is a timeout (TimeoutError) after which the job stays queued and takes the
  next frame, never released, unless `cancel_all_and_flush()` removed it; `wait=False`
  returns the `Job` for `wait(job, timeout)`;
- requests are reference counted (request.py); the sensor has `buffer_count` buffers;
- `close()` stops the camera but not the encoders (upstream's close does not call
  stop_encoder): an encoder started before a failed `start()` keeps running.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from picamera2._standin import RIG, stride_for, to_strided
from picamera2.encoders import Encoder
from picamera2.job import Job
from picamera2.outputs import Output
from picamera2.request import CompletedRequest

SENSOR_FORMAT = "SRGGB10_CSI2P"


class Picamera2:
    """The camera system. Only one instance may hold the camera at a time."""

    _open = 0

    def __init__(self, camera_num: int = 0, tuning: Any = None, allocator: Any = None) -> None:
        RIG.record("Picamera2()")
        if camera_num >= len(RIG.cameras):
            raise IndexError("list index out of range")
        if Picamera2._open:
            try:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            except RuntimeError as exc:
                raise RuntimeError("Camera __init__ sequence did not complete.") from exc
        Picamera2._open += 1
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self._encoders: set[Encoder] = set()
        self._closed = False
        self._lock = threading.RLock()  # upstream self.lock; a release may free a buffer under it
        self._job_list: list[Job] = []
        self.completed_requests: list[CompletedRequest] = []
        self._free_buffers = 0
        self._thread: threading.Thread | None = None
        self._stop_sensor = threading.Event()

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        RIG.record("Picamera2.global_camera_info()")
        return [dict(camera) for camera in RIG.cameras]

    @staticmethod
    def align_stream(stream_config: dict[str, Any], optimal: bool = True) -> None:
        if optimal:
            align = 32 if RIG.platform == "VC4" else 64
            if stream_config["format"] in ("YUV420", "YVU420"):
                align *= 2
            elif stream_config["format"] in ("XBGR8888", "XRGB8888"):
                align //= 2
        else:
            align = 2
        width, height = stream_config["size"]
        stream_config["size"] = (width - width % align, height - height % 2)

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
        main_cfg = {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True, **(main or {})}
        self.align_stream(main_cfg, optimal=False)
        lores_cfg = None
        if lores is not None:
            lores_cfg = {"format": "YUV420", "size": main_cfg["size"], "preserve_ar": False}
            lores_cfg.update(lores)
            self.align_stream(lores_cfg, optimal=False)
        raw_cfg = {"format": SENSOR_FORMAT, "size": main_cfg["size"], **(raw or {})}
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
            "raw": raw_cfg,
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
        config = dict(camera_config)
        for name in ("main", "lores", "raw"):
            stream = config.get(name)
            if stream is not None and (stream["size"][0] % 2 or stream["size"][1] % 2):
                raise RuntimeError("width and height should be even")
        main = dict(config["main"])
        main["stride"] = stride_for(main["size"][0]) * (1 if main["format"] == "YUV420" else 4)
        config["main"] = main
        lores = config.get("lores")
        if lores is not None:
            lores = dict(lores)
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if RIG.platform == "VC4" and lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            lores["stride"] = stride_for(lores["size"][0])
            config["lores"] = lores
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
        # "a nominal framerate, which we'll peg at 30fps max in case we only have a dummy
        # value" (upstream): the sensor's limit, not the configured FrameRate.
        min_frame_duration = max(RIG.sensor_min_frame_duration_us, 33333)
        if encoder.framerate is None:
            encoder.framerate = 1000000 / min_frame_duration
        encoder.start(quality=quality)
        with self._lock:
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
        if RIG.fail_start is not None:
            raise RuntimeError(RIG.fail_start)
        if self.started:
            return
        self.started = True
        self._free_buffers = int(self.camera_config["buffer_count"])
        self._stop_sensor.clear()
        # picamera2 runs libcamera's event loop on the NullPreview's thread; completed
        # requests are handed to encoders and jobs there.
        self._thread = threading.Thread(target=self._sensor, name="NullPreview", daemon=True)
        self._thread.start()

    def capture_request(
        self, wait: Any = None, signal_function: Any = None, flush: Any = None
    ) -> Any:
        if not self.started:
            raise RuntimeError("Camera is not running")
        job = Job()
        with self._lock:
            self._job_list.append(job)
            self._run_jobs()
        if wait is None:
            wait = signal_function is None
        if wait is False:
            return job
        return job.get_result(timeout=None if wait is True else wait)

    def wait(self, job: Job, timeout: float | None = None) -> Any:
        return job.get_result(timeout=timeout)

    def cancel_all_and_flush(self) -> None:
        RIG.record("cancel_all_and_flush()")
        with self._lock:
            if RIG.frame_at_flush and self._job_list and self._free_buffers > 0:
                RIG.frame_at_flush = False  # the race: a frame completes first
                self._free_buffers -= 1
                late = CompletedRequest({}, {"SensorTimestamp": 0}, on_free=self._buffer_back)
                self._job_list.pop(0)._future.set_result(late)
            for job in self._job_list:
                job.cancel()
            self._job_list = []

    def stop(self) -> None:
        RIG.record("stop()")
        if not self.started:
            return
        self.started = False
        self._stop_sensor.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:  # stop_ flushes the completed requests back to libcamera
            while self.completed_requests:
                self.completed_requests.pop(0).release()

    def stop_encoder(self, encoders: Any = None) -> None:
        RIG.record("stop_encoder()")
        with self._lock:
            chosen = list(self._encoders) if encoders is None else [encoders]
        for encoder in chosen:
            encoder.stop()
        with self._lock:
            for encoder in chosen:
                self._encoders.discard(encoder)

    def stop_recording(self) -> None:
        RIG.record("stop_recording()")
        self.stop()
        self.stop_encoder()

    def close(self) -> None:
        RIG.record("close()")
        if self._closed:
            return
        self.stop()  # upstream's close stops the camera, never the encoders
        self._closed = True
        Picamera2._open -= 1

    def _run_jobs(self) -> None:
        # Under self._lock: each capture job takes the oldest completed request, whose
        # "use" passes to the caller (upstream capture_request_).
        while self._job_list and self.completed_requests:
            job = self._job_list.pop(0)
            job._future.set_result(self.completed_requests.pop(0))

    def _buffer_back(self) -> None:
        with self._lock:
            self._free_buffers += 1

    def _sensor(self) -> None:
        assert self.camera_config is not None
        config = self.camera_config
        controls = config["controls"]
        fps = float(controls.get("FrameRate", 1e6 / controls["FrameDurationLimits"][0]))
        frame_ns = round(1e9 / fps)
        start = time.monotonic()
        index = 0
        while not self._stop_sensor.is_set():
            t = index / fps
            index += 1
            delay = start + index / fps - time.monotonic()
            if RIG.sensor_stalled:
                self._stop_sensor.wait(max(delay, 0.001))
                continue
            with self._lock:
                free = self._free_buffers > 0
                if free:
                    self._free_buffers -= 1
            if not free:
                with RIG.lock:
                    RIG.dropped_frames += 1
                self._stop_sensor.wait(max(delay, 0.001))
                continue
            arrays = {}
            for name in ("main", "lores"):
                stream = config.get(name)
                if stream is not None:
                    width, height = stream["size"]
                    arrays[name] = to_strided(RIG.scene(t, width, height), width, height)
            metadata = {
                "SensorTimestamp": RIG.sensor_base_ns + (index - 1) * frame_ns,
                "FrameDuration": frame_ns // 1000,
                "ExposureTime": 10000,
            }
            request = CompletedRequest(arrays, metadata, on_free=self._buffer_back)
            with self._lock:  # process_requests
                request.acquire()  # its "use" for being in completed_requests
                self.completed_requests.append(request)
                self._run_jobs()
                for encoder in list(self._encoders):
                    encoder.encode(config["encode"], request)
                request.release()  # the camera's own reference
                max_queue_len = 1 if config["queue"] else 0
                while len(self.completed_requests) > max_queue_len:
                    self.completed_requests.pop(0).release()
            if delay > 0:
                self._stop_sensor.wait(delay)
