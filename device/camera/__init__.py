"""The camera seam and its implementations (simulator, file, V4L2 webcam, Pi camera)."""

from device.camera.base import Camera, CameraFrame, EncodedPacket
from device.camera.factory import EncoderSettings, make_camera

__all__ = ["Camera", "CameraFrame", "EncodedPacket", "EncoderSettings", "make_camera"]
