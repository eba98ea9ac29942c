"""Stand-in of picamera2 0.3.x for tests (see tests/standins/README.md)."""

from picamera2.picamera2 import Picamera2
from picamera2.request import CompletedRequest

__all__ = ["CompletedRequest", "Picamera2"]
