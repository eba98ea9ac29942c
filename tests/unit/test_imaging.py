"""device/imaging.py against OpenCV, whose operations it stands in for.

OpenCV is installed for the `v4l2` camera; the agent's motion detector and simulated
camera use these NumPy versions instead, and must see the same pictures. `lookup` also
works in bounded memory: blocks, not one frame-sized index array.
"""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from device.imaging import LOOKUP_BLOCK, area_downscale, gaussian_blur, linear_resize, lookup

SHAPES_UP = [((18, 32), (180, 320)), ((180, 320), (720, 1280)), ((7, 5), (23, 61)),
             ((2, 2), (2, 2)), ((3, 9), (3, 40)), ((40, 3), (41, 3))]


@pytest.mark.parametrize(("source", "target"), SHAPES_UP)
def test_linear_resize_matches_opencv_inter_linear(
    source: tuple[int, int], target: tuple[int, int]
) -> None:
    src = np.random.default_rng(7).normal(100, 30, source).astype(np.float32)
    ours = linear_resize(src, target[1], target[0])
    theirs = cv2.resize(src, (target[1], target[0]), interpolation=cv2.INTER_LINEAR)
    assert ours.dtype == np.float32
    assert ours.shape == target
    assert float(np.abs(ours - theirs).max()) < 1e-3


def test_linear_resize_keeps_a_flat_picture_flat_and_takes_any_float_input() -> None:
    flat = np.full((4, 6), 77.0)  # float64 in, float32 out
    out = linear_resize(flat, 24, 16)
    assert out.dtype == np.float32
    assert np.array_equal(out, np.full((16, 24), 77.0, dtype=np.float32))


@pytest.mark.parametrize(("source", "target"), [((720, 1280), (180, 320)),
                                                ((180, 320), (90, 160)),
                                                ((181, 321), (90, 160)),
                                                ((100, 70), (33, 29))])
def test_area_downscale_matches_opencv_inter_area(
    source: tuple[int, int], target: tuple[int, int]
) -> None:
    src = np.random.default_rng(8).integers(0, 256, source, dtype=np.uint8)
    ours = area_downscale(src, target[1], target[0])
    theirs = cv2.resize(src, (target[1], target[0]), interpolation=cv2.INTER_AREA)
    assert ours.dtype == np.uint8
    assert ours.shape == target
    assert int(np.abs(ours.astype(int) - theirs.astype(int)).max()) <= 1


@pytest.mark.parametrize("size", [1, 3, 5, 7, 9, 21])
def test_gaussian_blur_matches_opencv(size: int) -> None:
    src = np.random.default_rng(9).integers(0, 256, (90, 160), dtype=np.uint8)
    ours = gaussian_blur(src, size, np.empty((90, 160), dtype=np.float32))
    theirs = cv2.GaussianBlur(src.astype(np.float32), (size, size), 0)
    assert float(np.abs(ours - theirs).max()) < 1e-2


def test_lookup_matches_opencv_lut() -> None:
    src = np.random.default_rng(10).integers(0, 256, (50, 60), dtype=np.uint8)
    table = np.clip(np.arange(256) - 25, 0, 255).astype(np.uint8)
    assert np.array_equal(lookup(src, table), cv2.LUT(src, table))


TABLE = np.clip(np.arange(256, dtype=np.int16) - 25, 0, 255).astype(np.uint8)


def frame(height: int = 720, width: int = 1280) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (height, width), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(720, 1280), (3, 5), (1, LOOKUP_BLOCK + 1)])
def test_lookup_maps_every_pixel_through_the_table(shape: tuple[int, int]) -> None:
    src = frame(*shape)
    expected = TABLE[src.astype(np.intp)]
    assert np.array_equal(lookup(src, TABLE), expected)
    out = np.empty_like(src)
    assert lookup(src, TABLE, out=out) is out
    assert np.array_equal(out, expected)


def test_lookup_into_a_plane_allocates_no_frame_sized_temporary() -> None:
    # One take over 1280x720 would convert the pixels into 7 MiB of 8-byte indices.
    src, out = frame(), np.empty((720, 1280), dtype=np.uint8)
    tracemalloc.start()
    try:
        lookup(src, TABLE, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 2 * LOOKUP_BLOCK * np.dtype(np.intp).itemsize


def test_lookup_refuses_what_it_cannot_map_in_place() -> None:
    src = frame(8, 8)
    with pytest.raises(ValueError, match="uint8 pixels"):
        lookup(src.astype(np.int16), TABLE)
    with pytest.raises(ValueError, match="C-contiguous output"):
        lookup(src, TABLE, out=np.empty((8, 16), dtype=np.uint8)[:, ::2])
