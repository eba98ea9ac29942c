"""Stand-in of picamera2.outputs (the Output base class only)."""

from picamera2.outputs.output import Output

__all__ = ["Output"]
