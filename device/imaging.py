"""The few image operations the agent's own code needs, in NumPy alone.

Motion detection and the simulated camera need an area-average downscale, a small
Gaussian blur and a linear upscale, nothing more. OpenCV would bring them at a cost of
about 40 MiB of resident memory in the running agent (its shared library, its own
FFmpeg and BLAS), a tenth of a Raspberry Pi Zero 2 W; only the `v4l2` camera, which
captures through OpenCV, still loads it (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).

All functions take and return C-contiguous 2-D arrays; uint8 results are rounded to
the nearest value, as OpenCV's are.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
Index = npt.NDArray[np.intp]

# OpenCV's fixed kernels for sigma <= 0 and sizes up to 9 (getGaussianKernel; the
# 9-tap one is [4, 13, 30, 51, 60, 51, 30, 13, 4] / 256, pinned by tests/unit/test_imaging.py);
# larger sizes use sigma = 0.3 * ((size - 1) / 2 - 1) + 0.8, as OpenCV does.
_SMALL_KERNELS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: (0.015625, 0.05078125, 0.1171875, 0.19921875, 0.234375, 0.19921875, 0.1171875,
        0.05078125, 0.015625),
}


@cache
def gaussian_kernel(size: int) -> tuple[float, ...]:
    """The 1-D Gaussian weights of odd `size` (sum 1). Raises ValueError for an even size."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"a Gaussian kernel needs an odd size, not {size}")
    if size in _SMALL_KERNELS:
        return _SMALL_KERNELS[size]
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    weights = np.exp(-(x * x) / (2 * sigma * sigma))
    return tuple(float(w) for w in weights / weights.sum())


def gaussian_blur(src: U8, size: int, out: F32) -> F32:
    """Blur `src` with a separable Gaussian of odd `size` into `out` (float32, same
    shape), borders mirrored without repeating the edge (OpenCV's default)."""
    kernel = gaussian_kernel(size)
    half = size // 2
    if half == 0:
        np.copyto(out, src, casting="unsafe")
        return out
    height, width = src.shape
    if half >= min(height, width):
        raise ValueError(f"a {size}x{size} blur needs a frame larger than {width}x{height}")
    padded = np.pad(src.astype(np.float32), half, mode="reflect")
    rows = np.zeros((height + 2 * half, width), dtype=np.float32)
    for i, weight in enumerate(kernel):
        rows += np.float32(weight) * padded[:, i : i + width]
    out.fill(0)
    for i, weight in enumerate(kernel):
        out += np.float32(weight) * rows[i : i + height, :]
    return out


def to_u8(src: F32, out: U8) -> U8:
    """Round and saturate float32 pixels into uint8 `out`."""
    np.copyto(out, np.clip(np.rint(src), 0, 255), casting="unsafe")
    return out


@cache
def _area_weights(source: int, target: int) -> F32:
    """A (target x source) matrix whose row i averages the source pixels (and parts of
    pixels) that target pixel i covers: OpenCV's INTER_AREA for a downscale."""
    weights = np.zeros((target, source), dtype=np.float64)
    scale = source / target
    for i in range(target):
        start, end = i * scale, (i + 1) * scale
        first, last = int(np.floor(start)), min(source, int(np.ceil(end)))
        for j in range(first, last):
            weights[i, j] = min(end, j + 1) - max(start, j)
        weights[i] /= weights[i].sum()
    return weights.astype(np.float32)


def area_downscale(src: U8, width: int, height: int) -> U8:
    """Average `src` down to `width` x `height` (each no larger than the source)."""
    src_h, src_w = src.shape
    if width > src_w or height > src_h:
        raise ValueError(f"cannot area-downscale {src_w}x{src_h} to {width}x{height}")
    if src_w % width == 0 and src_h % height == 0:  # whole blocks: integer sums
        fy, fx = src_h // height, src_w // width
        blocks = src.reshape(height, fy, width, fx).sum(axis=(1, 3), dtype=np.uint32)
        rounded: U8 = ((blocks + (fy * fx) // 2) // (fy * fx)).astype(np.uint8)
        return rounded
    out = _area_weights(src_h, height) @ src.astype(np.float32) @ _area_weights(src_w, width).T
    return to_u8(out, np.empty((height, width), dtype=np.uint8))


@cache
def _linear_taps(source: int, target: int) -> tuple[Index, Index, F32]:
    """For each of `target` pixels, its two source pixels and the weight of the right
    one: linear interpolation with pixel centres aligned (OpenCV's INTER_LINEAR for an
    upscale), edges clamped; `right == left` only where the weight is 0."""
    x = np.arange(target, dtype=np.float64)
    x = np.minimum(np.maximum((x + 0.5) * (source / target) - 0.5, 0.0), source - 1.0)
    left = np.floor(x).astype(np.intp)
    right = np.minimum(left + 1, source - 1)
    return left, right, (x - left).astype(np.float32)


def linear_resize(src: F32, width: int, height: int) -> F32:
    """Resize float32 `src` to `width` x `height` by linear interpolation.

    Two taps per pixel, gathered, one axis after the other. A dense matrix product
    would multiply every source pixel into every output pixel (over 300 million
    multiply-adds for the sim camera's 1280x720 background, on the start-up path) and
    make the BLAS library allocate its buffers in the running agent
    (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).
    """
    src = np.asarray(src, dtype=np.float32)
    left, right, across = _linear_taps(src.shape[1], width)
    columns = src[:, left]  # across first, on the fewer source rows
    columns *= 1 - across
    columns += src[:, right] * across
    top, bottom, down = _linear_taps(src.shape[0], height)
    out = columns[top]  # then whole rows, gathered contiguously, in place: two full-size
    out *= (1 - down)[:, None]  # planes at most
    lower = columns[bottom]
    lower *= down[:, None]
    out += lower
    return out


LOOKUP_BLOCK = 8192  # pixels per step of `lookup`: a 64 KiB index array, on the heap


def lookup(src: U8, table: U8, out: U8 | None = None) -> U8:
    """Map every pixel through a 256-entry table (OpenCV's LUT).

    NumPy indexes with 8-byte integers: one `take` over a 1280x720 plane would convert
    it into a 7 MiB index array, and with `out` also buffer the result (another plane),
    on every frame of the simulated camera. In blocks of `LOOKUP_BLOCK` pixels the
    temporaries stay at 64 KiB, in glibc's heap rather than fresh mappings
    (docs/adr/0019-agent-memory-and-uplink-benchmarks.md). A uint8 index cannot leave a
    256-entry table, so ``mode="clip"`` changes no value and spares NumPy the buffer.
    """
    if src.dtype != np.uint8 or table.shape != (256,):
        raise ValueError(f"lookup maps uint8 pixels through 256 entries, not {src.dtype} "
                         f"through {table.shape}")
    if out is None:
        out = np.empty(src.shape, dtype=table.dtype)
    elif out.shape != src.shape or not out.flags.c_contiguous:
        raise ValueError(f"lookup needs a C-contiguous output of shape {src.shape}")
    flat_src = src.reshape(-1)
    flat_out = out.reshape(-1)
    for start in range(0, flat_src.size, LOOKUP_BLOCK):
        block = slice(start, start + LOOKUP_BLOCK)
        np.take(table, flat_src[block], out=flat_out[block], mode="clip")
    return out
