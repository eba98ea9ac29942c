"""Synthetic doorstep scenes: what happens when, as pure data.

A scene is a repeating script of figures walking along piecewise-linear paths, a slow
lighting drift and sensor noise. The script is the ground truth the tests compare
recordings against: `motion_spans` (when a figure is in view) and `bell_presses`.
Nothing here renders or does I/O; `device.camera.sim` draws these scenes.

Coordinates are fractions of the frame: x of the figure's centre, y of its feet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCENE_NAMES = ("visitor", "passerby", "empty")

SWAY_AMPLITUDE = 0.015  # a waiting person shifts their weight: fraction of frame width
SWAY_PERIOD_S = 1.6
PRESS_LENGTH_S = 0.5  # the arm is raised to the bell for this long around a press


@dataclass(frozen=True, slots=True)
class Waypoint:
    """The figure is at (x, y) at `t` seconds into the scene's cycle."""

    t: float
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Walk:
    """One figure's visit: its size, colours, path and the bell presses it makes."""

    width: float  # fraction of frame width
    height: float  # fraction of frame height
    luma: int  # 0..255 brightness of the figure
    chroma: tuple[int, int]  # (U, V) of its clothes
    path: tuple[Waypoint, ...]
    presses: tuple[float, ...] = ()

    @property
    def enters(self) -> float:
        return self.path[0].t

    @property
    def leaves(self) -> float:
        return self.path[-1].t

    def position(self, t: float) -> tuple[float, float] | None:
        """Where the figure is at cycle time `t`, or None when it is not in the scene."""
        if t < self.enters or t > self.leaves:
            return None
        for a, b in zip(self.path, self.path[1:], strict=False):
            if a.t <= t <= b.t:
                span = b.t - a.t
                k = (t - a.t) / span if span > 0 else 0.0
                x = a.x + (b.x - a.x) * k
                y = a.y + (b.y - a.y) * k
                if a.x == b.x and a.y == b.y:
                    x += SWAY_AMPLITUDE * math.sin(2 * math.pi * (t - a.t) / SWAY_PERIOD_S)
                return x, y
        last = self.path[-1]
        return last.x, last.y

    def pressing(self, t: float) -> bool:
        return any(abs(t - press) <= PRESS_LENGTH_S / 2 for press in self.presses)


@dataclass(frozen=True, slots=True)
class Scene:
    """A repeating scene: the walks of one cycle of `period_s` seconds.

    `lighting_amplitude` (levels of 0..255) over `lighting_period_s` is the slow daylight
    drift; `noise_sigma` the sensor noise of the analysis stream.
    """

    name: str
    period_s: float
    walks: tuple[Walk, ...]
    lighting_amplitude: float = 24.0
    lighting_period_s: float = 240.0
    noise_sigma: float = 2.5

    def motion_spans(self, duration_s: float) -> list[tuple[float, float]]:
        """Scene-time intervals during which a figure moves in view, up to `duration_s`."""
        spans: list[tuple[float, float]] = []
        cycle = 0
        while cycle * self.period_s < duration_s:
            base = cycle * self.period_s
            for walk in self.walks:
                if base + walk.enters < duration_s:
                    spans.append((base + walk.enters, min(base + walk.leaves, duration_s)))
            cycle += 1
        return spans

    def bell_presses(self, duration_s: float) -> list[float]:
        """Scene times of the bell presses up to `duration_s`."""
        presses: list[float] = []
        cycle = 0
        while cycle * self.period_s < duration_s:
            base = cycle * self.period_s
            presses.extend(
                base + t for walk in self.walks for t in walk.presses if base + t < duration_s
            )
            cycle += 1
        return sorted(presses)

    def lighting(self, t: float) -> float:
        """The global brightness offset at scene time `t` (slow sinusoid, starts at 0)."""
        return self.lighting_amplitude * math.sin(2 * math.pi * t / self.lighting_period_s)

    def figures(self, t: float) -> list[tuple[Walk, float, float, bool]]:
        """The figures in view at scene time `t`: (walk, x, y, pressing)."""
        local = t % self.period_s
        out: list[tuple[Walk, float, float, bool]] = []
        for walk in self.walks:
            pos = walk.position(local)
            if pos is not None:
                out.append((walk, pos[0], pos[1], walk.pressing(local)))
        return out


# A visitor walks in from the left edge at 5.0 s (so a 5 s pre-roll fits before it),
# reaches the door at 7.5 s, rings at 8.0 s, waits shifting their weight, and walks out
# of the right edge, out of view at 19.5 s. Half the body width is 0.08, so x = -0.08
# and x = 1.08 are the first and last positions where an edge of the figure is in view.
_VISITOR = Walk(
    width=0.16,
    height=0.62,
    luma=30,
    chroma=(150, 110),
    path=(
        Waypoint(5.0, -0.08, 0.92),
        Waypoint(7.5, 0.5, 0.92),
        Waypoint(16.0, 0.5, 0.92),
        Waypoint(19.5, 1.08, 0.92),
    ),
    presses=(8.0,),
)

# Someone crosses the far side (the pavement), small and never stopping.
_PASSERBY = Walk(
    width=0.05,
    height=0.2,
    luma=200,
    chroma=(100, 160),
    path=(Waypoint(3.0, -0.025, 0.42), Waypoint(9.0, 1.025, 0.42)),
)

SCENES: dict[str, Scene] = {
    "visitor": Scene(name="visitor", period_s=45.0, walks=(_VISITOR,)),
    "passerby": Scene(name="passerby", period_s=30.0, walks=(_PASSERBY,)),
    "empty": Scene(name="empty", period_s=60.0, walks=(), lighting_amplitude=40.0),
}


def scene(name: str) -> Scene:
    """The named scene. Raises KeyError naming the known scenes for an unknown name."""
    try:
        return SCENES[name]
    except KeyError:
        raise KeyError(f"unknown scene {name!r}; known scenes: {', '.join(SCENE_NAMES)}") from None
