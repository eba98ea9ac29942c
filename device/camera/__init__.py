"""The camera seam and its implementations (simulator, file, V4L2 webcam, Pi camera)."""

from device.camera.base import Camera, CameraFrame, EncodedPacket, EncoderSettings
from device.camera.factory import make_camera

__all__ = ["Camera", "CameraFrame", "EncodedPacket", "EncoderSettings", "make_camera"]
