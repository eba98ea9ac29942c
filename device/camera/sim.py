"""`SimCamera`: a deterministic doorstep scene, rendered cheaply, encoded for real.

The scene (device.camera.scenes) is drawn twice per frame: the analysis stream directly
at the low resolution with sensor noise, and the main stream as I420 at full resolution
from a precomputed background plus flat figures, which costs little more than a copy.
The main stream goes through the same libx264 encoder as every other non-Pi camera.

Timestamps are ``start + index / fps`` where `start` is the clock's time at `start()`,
so a simulation may run faster than real time (`camera.realtime = false`). Scripted
bell presses are handed to `on_bell` (the simulated Button) from inside `read()`, on
the frame during which they happen, exactly as a real press would arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from device.camera.base import CameraFrame, ConfiguredGeometry, EncoderSettings, LoresImage
from device.camera.h264 import H264Encoder, Yuv420Image
from device.camera.scenes import Scene, Walk, scene
from device.clock import Clock
from device.config import CameraSettings
from device.errors import CameraError
from device.imaging import area_downscale, linear_resize, lookup

NOISE_BANK = 16  # distinct noise fields cycled through; enough that no pattern repeats visibly
BACKGROUND_U, BACKGROUND_V = 122, 134


class SceneRenderer:
    """Draws one scene at two resolutions. Pure apart from its precomputed state."""

    def __init__(
        self,
        chosen: Scene,
        *,
        width: int,
        height: int,
        lores_width: int,
        lores_height: int,
        seed: int,
    ) -> None:
        self.scene = chosen
        self.width, self.height = width, height
        self.lores_width, self.lores_height = lores_width, lores_height
        rng = np.random.default_rng(seed)
        luma = _background(rng, width, height)
        self._bg_y = luma
        lores = area_downscale(luma, lores_width, lores_height)
        self._bg_lores = lores.astype(np.int16)
        # The noise fields are drawn from the same generator, in bank order, when a
        # frame first needs one: the same fields as drawing all of them here, without
        # delaying the camera's first frame by the whole bank.
        self._rng = rng
        self._noise: list[npt.NDArray[np.int8]] = []
        self._main = np.empty((height * 3 // 2, width), dtype=np.uint8)

    def lores(self, t: float, index: int) -> LoresImage:
        """The grayscale analysis frame at scene time `t` (with sensor noise)."""
        canvas = self._bg_lores.copy()
        for walk, x, y, pressing in self.scene.figures(t):
            _draw_figure(canvas, walk, x, y, pressing, walk.luma)
        canvas += self._noise_field(index % NOISE_BANK)
        canvas += round(self.scene.lighting(t))
        np.clip(canvas, 0, 255, out=canvas)
        return canvas.astype(np.uint8)

    def _noise_field(self, slot: int) -> npt.NDArray[np.int8]:
        sigma = self.scene.noise_sigma
        shape = (self.lores_height, self.lores_width)
        while len(self._noise) <= slot:
            field = np.clip(np.rint(self._rng.normal(0.0, sigma, shape)), -127, 127)
            self._noise.append(field.astype(np.int8))
        return self._noise[slot]

    def main(self, t: float) -> Yuv420Image:
        """The I420 main frame at scene time `t`. The returned array is reused."""
        h, w = self.height, self.width
        out = self._main
        y_plane = out[:h]
        u_plane = out[h : h + h // 4].reshape(h // 2, w // 2)
        v_plane = out[h + h // 4 :].reshape(h // 2, w // 2)
        offset = round(self.scene.lighting(t))
        lookup(self._bg_y, _shift_table(offset), out=y_plane)
        u_plane.fill(BACKGROUND_U)  # the doorstep's chroma is flat
        v_plane.fill(BACKGROUND_V)
        for walk, x, y, pressing in self.scene.figures(t):
            luma = int(np.clip(walk.luma + offset, 0, 255))
            _draw_figure(y_plane, walk, x, y, pressing, luma)
            _draw_figure(u_plane, walk, x, y, pressing, walk.chroma[0])
            _draw_figure(v_plane, walk, x, y, pressing, walk.chroma[1])
        return out


def _shift_table(offset: int) -> npt.NDArray[np.uint8]:
    """A saturating brightness shift as a lookup table (one pass over the plane)."""
    return np.clip(np.arange(256, dtype=np.int16) + offset, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, width: int, height: int) -> npt.NDArray[np.uint8]:
    """A doorstep: a wall gradient, a door, a mat and some smooth texture, from the seed.

    The smooth parts are computed at a quarter of the size and scaled up, so building a
    1280x720 scene never holds more than one full-size plane (the agent's peak memory).
    """
    sw, sh = max(2, width // 4), max(2, height // 4)
    rows = np.linspace(150, 110, sh, dtype=np.float32)[:, None]
    small = np.repeat(rows, sw, axis=1)
    texture = rng.normal(0.0, 8.0, (max(2, height // 40), max(2, width // 40))).astype(np.float32)
    small += linear_resize(texture, sw, sh)
    small_u8 = np.clip(small, 0, 255).astype(np.uint8)
    smooth = linear_resize(small_u8.astype(np.float32), width, height)
    base = np.clip(np.rint(smooth, out=smooth), 0, 255, out=smooth).astype(np.uint8)
    door_w, door_h = int(width * 0.22), int(height * 0.7)
    left = int(width * (0.5 + rng.uniform(-0.08, 0.08))) - door_w // 2
    top = int(height * 0.18)
    base[top : top + door_h, left : left + door_w] = round(100 + rng.uniform(-8, 8))
    mat = base[int(height * 0.9) :, :]
    np.copyto(mat, lookup(mat, _shift_table(-25)))  # the step and the mat
    return base


def _draw_figure(
    plane: npt.NDArray[np.uint8] | npt.NDArray[np.int16],
    walk: Walk,
    x: float,
    y: float,
    pressing: bool,
    value: int,
) -> None:
    """A body, a head and, while ringing, a raised arm, as flat rectangles."""
    ph, pw = plane.shape
    body_w, body_h = walk.width * pw, walk.height * ph
    cx, feet = x * pw, y * ph
    head = body_h * 0.18
    _rect(plane, cx - body_w / 2, feet - body_h + head, cx + body_w / 2, feet, value)
    _rect(plane, cx - body_w * 0.28, feet - body_h, cx + body_w * 0.28, feet - body_h + head, value)
    if pressing:
        arm_top = feet - body_h * 0.85
        _rect(plane, cx + body_w / 2, arm_top, cx + body_w * 0.8, arm_top + body_h * 0.12, value)


def _rect(
    plane: npt.NDArray[np.uint8] | npt.NDArray[np.int16],
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    value: int,
) -> None:
    ph, pw = plane.shape
    c0, c1 = max(0, round(x0)), min(pw, round(x1))
    r0, r1 = max(0, round(y0)), min(ph, round(y1))
    if c0 < c1 and r0 < r1:
        plane[r0:r1, c0:c1] = value


class SimCamera(ConfiguredGeometry):
    """The simulated camera (see the module docstring). Raises CameraError on misuse."""

    def __init__(
        self,
        settings: CameraSettings,
        clock: Clock,
        *,
        encoder: EncoderSettings,
        on_bell: Callable[[datetime], object] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._encoder_settings = encoder
        self._on_bell = on_bell
        self._scene = scene(settings.scene)
        self._renderer: SceneRenderer | None = None
        self._encoder: H264Encoder | None = None
        self._start: datetime | None = None
        self._mono_start = 0.0
        self._index = 0

    @property
    def scene(self) -> Scene:
        return self._scene

    def start(self) -> None:
        s = self._settings
        self._renderer = SceneRenderer(
            self._scene,
            width=s.width,
            height=s.height,
            lores_width=s.lores_width,
            lores_height=s.lores_height,
            seed=s.seed,
        )
        self._encoder = H264Encoder(
            width=s.width, height=s.height, fps=s.fps, settings=self._encoder_settings
        )
        self._start = self._clock.now()
        self._mono_start = time.monotonic()
        self._index = 0

    def read(self) -> CameraFrame | None:
        if self._renderer is None or self._encoder is None or self._start is None:
            raise CameraError("SimCamera.read() before start()")
        index = self._index
        t = index / self._settings.fps
        if self._settings.realtime:
            delay = self._mono_start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        timestamp = self._start + timedelta(seconds=t)
        lores = self._renderer.lores(t, index)
        packets = self._encoder.encode(self._renderer.main(t), index)
        self._index += 1
        if self._on_bell is not None:
            for _ in self._presses_between(t - 1 / self._settings.fps, t):
                self._on_bell(timestamp)
        return CameraFrame(timestamp=timestamp, index=index, lores=lores, packets=packets)

    def stop(self) -> None:
        self._renderer = None
        self._encoder = None

    def _presses_between(self, after: float, upto: float) -> list[float]:
        period = self._scene.period_s
        cycle = int(upto // period)
        presses = []
        for walk in self._scene.walks:
            for press in walk.presses:
                at = cycle * period + press
                if after < at <= upto:
                    presses.append(at)
        return presses
