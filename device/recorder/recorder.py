"""The clip state machine: pre-roll, trigger, post-roll, maximum length, events.

::

    idle --(motion starts | bell pressed)--> recording
    recording --(quiet for post_roll_s)--> idle            (clip finished)
    recording --(max_clip_s reached at a keyframe)--> recording   (next clip continues)

A clip starts with the pre-roll ring (so on a keyframe at least `pre_roll_s` before the
trigger, when that much video exists) and is streamed as fragmented MP4 into the
store's clip writer packet by packet. Times come from the camera's timeline: a packet
is at ``origin + pts_s`` where `origin` is the timestamp of frame 0 (Camera seam).

The recorder never lets a sink failure escape `process`: a clip whose writer raises is
dead, is ended (its writer aborted; the store keeps or drops what reached the disk) and
logged; `StorageFull` from the store stops new clips until an `open_clip` retry, at most
every `retry_s`, succeeds again. The camera loop keeps running either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from device.camera.base import CameraFrame, EncodedPacket
from device.config import RecorderSettings
from device.errors import StorageFull
from device.motion import MotionUpdate
from device.recorder.errors import BadStream, SinkFailed
from device.recorder.mp4 import FragmentedMp4Muxer
from device.recorder.preroll import PreRoll
from device.recorder.sink import ClipStore, ClipWriter

log = logging.getLogger(__name__)

EventKind = Literal["motion_start", "motion_end", "button", "continued"]
STORAGE_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class ClipSummary:
    """What the recorder knows about a clip it closed (for status and logs)."""

    start: datetime
    end: datetime
    bytes: int
    events: tuple[tuple[str, datetime], ...]
    outcome: Literal["sealed", "failed"]
    record: object = None  # what the store's `finish` returned


@dataclass(slots=True)
class _Clip:
    writer: ClipWriter
    muxer: FragmentedMp4Muxer
    start: datetime
    first_pts: float
    events: list[tuple[str, datetime]] = field(default_factory=list)


class Recorder:
    """Turn frames, motion and presses into sealed clips. Thread-confined: call from one
    thread (the camera loop)."""

    def __init__(
        self,
        store: ClipStore,
        settings: RecorderSettings,
        *,
        width: int,
        height: int,
        fps: float,
        retry_s: float = STORAGE_RETRY_S,
    ) -> None:
        self._store = store
        self._settings = settings
        self._width, self._height, self._fps = width, height, fps
        self._frame_s = 1.0 / fps
        self._retry = timedelta(seconds=retry_s)
        self._post_roll = timedelta(seconds=settings.post_roll_s)
        self._ring = PreRoll(settings.pre_roll_s)
        self._clip: _Clip | None = None
        self._origin: datetime | None = None
        self._last_activity: datetime | None = None
        self._pending: list[tuple[str, datetime]] = []
        self._retry_at: datetime | None = None
        self._last_keyframe: float | None = None
        self._gop_s = settings.keyframe_interval_s
        self._last_pts: float | None = None
        self._covered_until: float | None = None  # pts of the last packet in a sealed clip
        self.storage_full = False
        self.last_clip: ClipSummary | None = None
        self.clips_finished = 0
        self.clips_failed = 0

    @property
    def recording(self) -> bool:
        return self._clip is not None

    # -- the loop's one call -------------------------------------------------------

    def process(
        self, frame: CameraFrame, motion: MotionUpdate, presses: Sequence[datetime] = ()
    ) -> None:
        """Take one frame's packets, its motion verdict and the presses seen meanwhile.

        Never raises for a store or writer failure (see the module docstring).
        """
        if self._origin is None:
            self._origin = frame.timestamp - timedelta(seconds=frame.index * self._frame_s)
        now = frame.timestamp
        if motion.started:
            self._event("motion_start", now)
        if motion.active and motion.last_change is not None:
            self._touch(motion.last_change)
        if motion.ended and motion.ended_at is not None:
            self._event("motion_end", motion.ended_at)
        for _ in presses:
            # A press is placed on the camera's timeline at the frame that saw it.
            self._event("button", now)
            self._touch(now)
        for packet in frame.packets:
            self._route(packet)
        wanted = self._wanted(now) or motion.active
        if self._clip is None and wanted:
            self._try_open(now, continued=False)
        elif self._clip is not None and not wanted:
            self._finish(self._packet_end())
        self._trim_pending()

    def close(self) -> None:
        """End of stream or shutdown: finish the clip in progress, if any."""
        if self._clip is not None:
            self._finish(self._packet_end())

    def new_stream(self) -> None:
        """The camera was reopened: its frames and packet times start again from 0.

        Finishes the clip in progress and forgets the old stream's timeline and pre-roll
        (its packets cannot be decoded with the new stream's parameter sets). Triggers
        still within their post-roll carry over, so a visit continues in a new clip.
        """
        self.close()
        self._ring.clear()
        self._origin = None
        self._last_pts = None
        self._last_keyframe = None
        self._covered_until = None
        self._gop_s = self._settings.keyframe_interval_s

    # -- internals -----------------------------------------------------------------

    def _touch(self, at: datetime) -> None:
        if self._last_activity is None or at > self._last_activity:
            self._last_activity = at

    def _wanted(self, now: datetime) -> bool:
        return self._last_activity is not None and now - self._last_activity < self._post_roll

    def _time(self, pts_s: float) -> datetime:
        assert self._origin is not None
        return self._origin + timedelta(seconds=pts_s)

    def _packet_end(self) -> datetime:
        pts = self._last_pts if self._last_pts is not None else 0.0
        return self._time(pts + self._frame_s)

    def _event(self, kind: EventKind, at: datetime) -> None:
        if self._clip is not None:
            self._add_event(self._clip, kind, at)
        else:
            self._pending.append((kind, at))

    def _add_event(self, clip: _Clip, kind: str, at: datetime) -> None:
        when = max(at, clip.start)
        try:
            clip.writer.add_event(kind, when)
        except Exception as exc:
            # A lost event label is not worth losing the video: log it and go on.
            log.warning("clip writer refused event %s at %s: %s", kind, when.isoformat(), exc)
            return
        clip.events.append((kind, when))

    def _trim_pending(self) -> None:
        # Keep only events that a clip opened now could still contain.
        if self._pending and self._clip is None and self._last_pts is not None:
            horizon = self._time(self._last_pts) - timedelta(
                seconds=self._settings.pre_roll_s + 2 * self._gop_s
            )
            self._pending = [(k, at) for k, at in self._pending if at >= horizon]

    def _route(self, packet: EncodedPacket) -> None:
        if self._last_pts is not None and packet.pts_s <= self._last_pts:
            log.warning("camera packet at %.3fs does not advance time; dropped", packet.pts_s)
            return
        self._last_pts = packet.pts_s
        if packet.keyframe:
            if self._last_keyframe is not None:
                self._gop_s = packet.pts_s - self._last_keyframe
            self._last_keyframe = packet.pts_s
        # The ring always runs, also while recording: after a dead clip or a cut at the
        # maximum length the next clip starts from it without losing video.
        self._ring.push(packet)
        clip = self._clip
        if clip is None:
            return
        elapsed = packet.pts_s - clip.first_pts
        limit = self._settings.max_clip_s + 1e-6
        if packet.keyframe and elapsed + self._gop_s > limit:
            # Cut on this keyframe so the next clip starts on it: no gap, no overlap.
            self._finish(self._time(packet.pts_s))
            if self._last_activity is not None and (
                self._time(packet.pts_s) - self._last_activity < self._post_roll
            ):
                self._try_open(self._time(packet.pts_s), continued=True)
            return
        if elapsed + self._frame_s > limit:
            # An irregular GOP: stop at the hard limit; the next clip starts on the
            # keyframe before this packet (overlapping by less than a GOP).
            self._finish(self._time(packet.pts_s))
            return
        self._write(clip, packet)

    def _write(self, clip: _Clip, packet: EncodedPacket) -> None:
        try:
            clip.muxer.write(packet)
        except BadStream as exc:
            log.warning("skipping a packet that breaks the camera contract: %s", exc)
        except SinkFailed as exc:
            self._kill(exc)
        except Exception as exc:
            self._kill(SinkFailed(f"muxing failed: {exc}", exc, from_writer=False))

    def _try_open(self, now: datetime, *, continued: bool) -> None:
        if self._retry_at is not None and now < self._retry_at:
            return
        packets = self._ring.since(self._covered_until)
        if not packets:
            return  # no keyframe yet: the clip opens at the next one
        start = self._time(packets[0].pts_s)
        try:
            writer = self._store.open_clip(start)
        except StorageFull as exc:
            if not self.storage_full:
                log.error("storage full, not recording until space returns: %s", exc)
            self.storage_full = True
            self._retry_at = now + self._retry
            return
        except Exception:
            log.exception("could not open a clip; retrying in %s", self._retry)
            self.clips_failed += 1
            self._retry_at = now + self._retry
            return
        if self.storage_full:
            log.info("storage available again; recording resumes")
        self.storage_full = False
        self._retry_at = None
        muxer = FragmentedMp4Muxer(writer, width=self._width, height=self._height, fps=self._fps)
        clip = _Clip(writer=writer, muxer=muxer, start=start, first_pts=packets[0].pts_s)
        self._clip = clip
        log.info("clip opened at %s (pre-roll %d packets)", start.isoformat(), len(packets))
        if continued:
            self._add_event(clip, "continued", start)
        for kind, at in sorted(self._pending, key=lambda item: item[1]):
            if self._clip is clip and at >= start:
                self._add_event(clip, kind, at)
        self._pending.clear()
        for packet in packets:
            if self._clip is not clip:
                break
            self._write(clip, packet)

    def _finish(self, end: datetime) -> None:
        clip, self._clip = self._clip, None
        if clip is None:
            return
        try:
            clip.muxer.close()
            record = clip.writer.finish(end)
        except SinkFailed as exc:
            self._clip = clip
            self._kill(exc)
            return
        except Exception as exc:
            self._clip = clip
            self._kill(SinkFailed(f"could not finish the clip: {exc}", exc))
            return
        self.clips_finished += 1
        self._covered_until = clip.muxer.last_pts_s
        self.last_clip = ClipSummary(
            start=clip.start,
            end=end,
            bytes=clip.muxer.bytes_written,
            events=tuple(clip.events),
            outcome="sealed",
            record=record,
        )
        log.info(
            "clip sealed: %s .. %s, %d bytes, events %s",
            clip.start.isoformat(),
            end.isoformat(),
            clip.muxer.bytes_written,
            [kind for kind, _ in clip.events],
        )

    def _kill(self, failure: SinkFailed) -> None:
        """End a dead clip, log it, keep looping.

        When the writer failed, the store has already ended the clip (kept as truncated
        when it holds anything); `abort()` only releases the writer. When the muxer
        failed, what was sealed so far is finished as a clip (a playable prefix up to
        the last whole fragment); only if that fails too is the clip aborted.
        """
        clip, self._clip = self._clip, None
        if clip is None:
            return
        self.clips_failed += 1
        if isinstance(failure.cause, StorageFull):
            self.storage_full = True
        # Back off before the next clip, so a store that keeps failing is not handed a
        # new clip every frame; the pre-roll ring keeps the video of the gap meanwhile.
        self._retry_at = self._time(self._last_pts or 0.0) + self._retry
        clip.muxer.discard()
        end = self._packet_end()
        kept = False
        if not failure.from_writer:
            try:
                clip.writer.finish(end)
                kept = True
            except Exception as exc:
                log.error("finishing the dead clip's prefix failed too: %s", exc)
        if not kept:
            try:
                clip.writer.abort()
            except Exception:
                log.exception("aborting the dead clip failed as well")
        self.last_clip = ClipSummary(
            start=clip.start,
            end=end,
            bytes=clip.muxer.bytes_written,
            events=tuple(clip.events),
            outcome="failed",
        )
        log.error("clip started %s died: %s", clip.start.isoformat(), failure)
