"""The pre-roll ring: the last few seconds of encoded video, always from a keyframe.

A clip can only start on a keyframe (a decoder needs the IDR and its SPS/PPS), so the
ring keeps whole groups of pictures: it drops the oldest group only while the group
after it still starts at or before ``newest - pre_roll_s``. The ring therefore always
covers at least `pre_roll_s` (once that much video has been seen) and at most one GOP
more; it starts on a keyframe or is empty. Memory is bounded by
``(pre_roll_s + GOP) * bitrate``.

A stream whose keyframes stop (a camera that never sends the next one) would let the
ring grow without end; the ring never holds more than ``pre_roll_s + max_gop_s``
seconds: past that it is emptied and refills from the next keyframe
(docs/adr/0019-agent-memory-and-uplink-benchmarks.md). `max_gop_s` defaults to the
longest keyframe interval the configuration allows.
"""

from __future__ import annotations

from collections import deque

from device.camera.base import EncodedPacket

MAX_GOP_S = 10.0  # recorder.keyframe_interval_s allows at most this (device/config.py)


class PreRoll:
    """Bounded ring of packets. `push` drops non-keyframes that cannot start a clip."""

    def __init__(self, pre_roll_s: float, max_gop_s: float = MAX_GOP_S) -> None:
        self._span = pre_roll_s
        self._limit = pre_roll_s + max_gop_s
        self._packets: deque[EncodedPacket] = deque()
        self._keyframes: deque[float] = deque()  # pts of the keyframes held, oldest first

    def __len__(self) -> int:
        return len(self._packets)

    @property
    def bytes(self) -> int:
        return sum(len(p.data) for p in self._packets)

    def push(self, packet: EncodedPacket) -> None:
        if not self._packets and not packet.keyframe:
            return  # nothing to decode it against
        self._packets.append(packet)
        if packet.keyframe:
            self._keyframes.append(packet.pts_s)
        horizon = packet.pts_s - self._span
        while len(self._keyframes) >= 2 and self._keyframes[1] <= horizon:
            self._keyframes.popleft()
            cut = self._keyframes[0]
            while self._packets and self._packets[0].pts_s < cut:
                self._packets.popleft()
        if packet.pts_s - self._packets[0].pts_s > self._limit:  # keyframes stopped coming
            newest = self._keyframes[-1]
            while len(self._keyframes) > 1:
                self._keyframes.popleft()
            while self._packets and self._packets[0].pts_s < newest:
                self._packets.popleft()
            if packet.pts_s - newest > self._limit:
                self.clear()

    def drain(self) -> list[EncodedPacket]:
        """Everything held, oldest first (starting on a keyframe); the ring is emptied."""
        packets = list(self._packets)
        self.clear()
        return packets

    def since(self, covered_until: float | None) -> list[EncodedPacket]:
        """The held packets from the latest keyframe at or before the first packet after
        `covered_until` (None: everything held). The ring is left as it is.

        The recorder passes the time of the last packet a finished clip holds, so a new
        clip overlaps the previous one by less than a GOP and never leaves a gap.
        """
        packets = list(self._packets)
        if covered_until is None:
            return packets
        first_new = next((i for i, p in enumerate(packets) if p.pts_s > covered_until), None)
        if first_new is None:
            return []
        start = max((i for i in range(first_new + 1) if packets[i].keyframe), default=0)
        return packets[start:]

    def clear(self) -> None:
        self._packets.clear()
        self._keyframes.clear()
