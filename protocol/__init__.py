"""The v1 wire contract shared by the device and the cloud stub.

Pure code only: bytes, keys and a clock go in, typed values or typed rejections come
out. Nothing in this package touches the network, the disk or the system clock.
"""
