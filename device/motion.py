"""Motion detection on the low-resolution grayscale stream.

Per frame: average `downscale` x `downscale` blocks (an area average: a cheap first
noise filter that also cuts the work by its square), Gaussian blur (sensor noise),
subtract the frame's global brightness change against the background (a cloud, a
streetlight switching on), absolute difference against a running average of past
frames (which follows slow daylight drift), threshold, drop
excluded zones, and count the changed fraction of the frame. Motion starts after
`start_frames` consecutive changed frames (a single-frame glitch is not a visitor) and
ends after `quiet_s` without a changed frame.

The detector is a pure object with state: frames and their times in, a `MotionUpdate`
out. No I/O, no clock: the caller passes each frame's timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from device.config import MotionSettings
from device.imaging import area_downscale, gaussian_blur

WARMUP_FRAMES = 3  # frames spent learning the background before anything can trigger


@dataclass(frozen=True, slots=True)
class MotionUpdate:
    """The detector's view after one frame.

    `changed`: this frame differs from the background by more than `min_area`.
    `active`: motion is ongoing (started and not yet quiet for `quiet_s`).
    `started` / `ended`: the transitions on this frame; `ended_at` is the time of the
    last changed frame (when the motion really stopped), set with `ended`.
    `last_change`: the time of the most recent changed frame, if any.
    """

    changed: bool
    active: bool
    started: bool
    ended: bool
    score: float
    last_change: datetime | None
    ended_at: datetime | None = None


class MotionDetector:
    """Stateful detector for frames of one size. Raises ValueError for a frame of another."""

    def __init__(self, settings: MotionSettings, *, width: int, height: int) -> None:
        self._settings = settings
        self._input_shape = (height, width)
        factor = settings.downscale
        self._scaled = (max(1, width // factor), max(1, height // factor))
        width, height = self._scaled
        self._shape = (height, width)
        self._downscale = factor > 1
        self._kernel = settings.blur if settings.blur % 2 else settings.blur + 1
        self._mask = exclusion_mask(settings.exclusion_zones, width=width, height=height)
        self._min_pixels = settings.min_area * width * height
        self._quiet = timedelta(seconds=settings.quiet_s)
        self._average: npt.NDArray[np.float32] | None = None
        self._float = np.empty(self._shape, dtype=np.float32)
        self._delta = np.empty(self._shape, dtype=np.float32)
        self._binary = np.empty(self._shape, dtype=np.bool_)
        self._frames = 0
        self._streak = 0
        self._active = False
        self._last_change: datetime | None = None

    @property
    def active(self) -> bool:
        return self._active

    def update(self, lores: npt.NDArray[np.uint8], at: datetime) -> MotionUpdate:
        """Feed one grayscale frame captured at `at`."""
        if lores.shape != self._input_shape:
            raise ValueError(
                f"motion detector expects {self._input_shape} frames, got {lores.shape}"
            )
        source = lores
        if self._downscale:
            source = area_downscale(lores, *self._scaled)
        gaussian_blur(source, self._kernel, self._float)
        np.rint(self._float, out=self._float)  # the blurred picture in whole grey levels
        if self._average is None:
            self._average = self._float.copy()
            self._frames = 1
            return self._result(changed=False, score=0.0, at=at)
        average = self._average
        # Remove the global brightness change first: a light switching on moves every
        # pixel by about the same amount, a visitor moves only some of them.
        shift = float(self._float.mean(dtype=np.float64) - average.mean(dtype=np.float64))
        np.subtract(self._float, np.float32(shift), out=self._delta)
        np.subtract(self._delta, average, out=self._delta)
        np.abs(self._delta, out=self._delta)
        np.greater(self._delta, np.float32(self._settings.threshold), out=self._binary)
        if self._mask is not None:
            np.logical_and(self._binary, self._mask, out=self._binary)
        changed_pixels = int(np.count_nonzero(self._binary))
        alpha = np.float32(self._settings.background_alpha)
        average *= np.float32(1.0) - alpha  # running average: (1 - a) * old + a * new
        average += alpha * self._float
        self._frames += 1
        if self._frames <= WARMUP_FRAMES:
            return self._result(changed=False, score=0.0, at=at)
        score = changed_pixels / (self._shape[0] * self._shape[1])
        return self._result(changed=changed_pixels >= self._min_pixels, score=score, at=at)

    def _result(self, *, changed: bool, score: float, at: datetime) -> MotionUpdate:
        started = ended = False
        ended_at = None
        if changed:
            self._streak += 1
            self._last_change = at
            if not self._active and self._streak >= self._settings.start_frames:
                self._active = True
                started = True
        else:
            self._streak = 0
            if (
                self._active
                and self._last_change is not None
                and at - self._last_change >= self._quiet
            ):
                self._active = False
                ended = True
                ended_at = self._last_change
        return MotionUpdate(
            changed=changed,
            active=self._active,
            started=started,
            ended=ended,
            score=score,
            last_change=self._last_change if self._active or ended else None,
            ended_at=ended_at,
        )


def exclusion_mask(
    zones: list[tuple[float, float, float, float]], *, width: int, height: int
) -> npt.NDArray[np.uint8] | None:
    """A mask with 0 inside every zone (x, y, w, h as fractions) and 1 elsewhere.

    None when there are no zones. Raises ValueError for a zone outside the frame.
    """
    if not zones:
        return None
    mask = np.ones((height, width), dtype=np.uint8)
    for zone in zones:
        x, y, w, h = zone
        if not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and x + w <= 1 and y + h <= 1):
            raise ValueError(f"exclusion zone {zone} is not inside the frame (fractions 0..1)")
        mask[
            round(y * height) : round((y + h) * height), round(x * width) : round((x + w) * width)
        ] = 0
    return mask
