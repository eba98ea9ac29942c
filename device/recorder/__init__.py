"""The recorder: pre-roll ring, clip state machine, fragmented MP4 into a clip writer."""

from device.recorder.recorder import ClipSummary, Recorder
from device.recorder.sink import ClipStore, ClipWriter

__all__ = ["ClipStore", "ClipSummary", "ClipWriter", "Recorder"]
