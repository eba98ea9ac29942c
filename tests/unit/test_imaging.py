"""device/imaging.py against OpenCV, whose operations it stands in for.

OpenCV is installed for the `v4l2` camera; the agent's motion detector and simulated
camera use these NumPy versions instead, and must see the same pictures.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.imaging import area_downscale, gaussian_blur, linear_resize, lookup

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
