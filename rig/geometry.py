"""Sample-frame geometry: millimetres <-> sample pixels, and the RoI grid.

Conventions (docs/dev/conventions.md): the sample frame has its origin at the top-left corner of
the glass's bounding box, x across the width, y along the length, in mm. The sample pixel frame
has the same origin, px = mm / pixel_size_mm, arrays indexed [row, col] = [y, x]. RoI origins are
even in both axes so every RoI sees the GRBG Bayer phase of the sample pixel frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

DEFAULT_PIXEL_SIZE_MM = 0.0114
"""Sample-plane pixel pitch: a 3504 x 3120 frame sees ~39.9 x 35.6 mm (seed paper 004, 40 x 35)."""
DEFAULT_SAMPLE_W_MM = 72.0
DEFAULT_SAMPLE_H_MM = 150.0
DEFAULT_GRID = (2, 5)  # columns (x), rows (y): 10 RoIs
DEFAULT_MIN_OVERLAP_PX = 256  # ~2 mm, seed paper 004 section 4


# -- mm <-> px ---------------------------------------------------------------------------------
def mm_to_px(mm: float | np.ndarray, pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM):
    """Sample millimetres -> sample pixels (float; pixel centres sit at integer + 0.5)."""
    return mm / pixel_size_mm


def px_to_mm(px: float | np.ndarray, pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM):
    """Sample pixels -> sample millimetres."""
    return px * pixel_size_mm


def sample_mm_to_px(x_mm: float, y_mm: float,
                    pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM) -> tuple[float, float]:
    """Sample (x, y) mm -> sample pixel (row, col), floats (edge-of-pixel convention)."""
    return y_mm / pixel_size_mm, x_mm / pixel_size_mm


def sample_px_to_mm(row: float, col: float,
                    pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM) -> tuple[float, float]:
    """Sample pixel (row, col) -> sample (x, y) mm."""
    return col * pixel_size_mm, row * pixel_size_mm


def roi_px_to_sample_mm(row: float, col: float, origin_px: tuple[int, int],
                        pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM) -> tuple[float, float]:
    """RoI pixel (row, col) -> sample (x, y) mm, for an RoI whose top-left is `origin_px`."""
    return sample_px_to_mm(origin_px[0] + row, origin_px[1] + col, pixel_size_mm)


def sample_mm_to_roi_px(x_mm: float, y_mm: float, origin_px: tuple[int, int],
                        pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM) -> tuple[float, float]:
    """Sample (x, y) mm -> RoI pixel (row, col) (floats, may lie outside the RoI)."""
    r, c = sample_mm_to_px(x_mm, y_mm, pixel_size_mm)
    return r - origin_px[0], c - origin_px[1]


def roi_centre_mm(origin_px: tuple[int, int], sensor_w: int, sensor_h: int,
                  pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM) -> tuple[float, float]:
    """(x, y) mm of the RoI centre: what the optical axis sees when the stage is on this RoI."""
    return ((origin_px[1] + sensor_w / 2) * pixel_size_mm,
            (origin_px[0] + sensor_h / 2) * pixel_size_mm)


def sample_size_px(sample_w_mm: float, sample_h_mm: float,
                   pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM) -> tuple[int, int]:
    """(width, height) in whole pixels that cover the glass's bounding box."""
    return math.ceil(sample_w_mm / pixel_size_mm - 1e-9), math.ceil(sample_h_mm / pixel_size_mm - 1e-9)


# -- the RoI grid ------------------------------------------------------------------------------
def _even(v: float, how: str = "round") -> int:
    rounding: dict[str, Callable[[float], int]] = {"round": round, "ceil": math.ceil,
                                                   "floor": math.floor}
    f = rounding[how]
    return int(2 * f(v / 2))


def axis_count(extent_px: float, sensor_px: int, min_overlap_px: int) -> int:
    """Fewest frames along one axis that cover `extent_px` with >= min overlap between them."""
    if sensor_px >= extent_px:
        return 1
    step = sensor_px - min_overlap_px
    if step <= 0:
        raise ValueError(f"overlap {min_overlap_px} px must be smaller than the frame ({sensor_px} px)")
    return 1 + math.ceil((extent_px - sensor_px) / step - 1e-9)


def axis_origins(extent_px: float, sensor_px: int, n: int) -> list[int]:
    """`n` even origins spread evenly from 0 to the far edge (last frame ends at or past it).

    With one frame, or a frame larger than the extent, frames are centred on the extent.
    When `n` frames are too few to cover the extent (a small test sensor) they are still evenly
    spread, with gaps between them, so each still sees a different part of the sample.
    """
    if n < 1:
        raise ValueError("need at least one RoI per axis")
    last = _even(extent_px - sensor_px, "ceil")
    if n == 1 or last <= 0:
        return [_even((extent_px - sensor_px) / 2, "floor")] * n
    return [0, *[_even(last * i / (n - 1)) for i in range(1, n - 1)], last]


def roi_grid(
    sample_w_mm: float,
    sample_h_mm: float,
    sensor_w: int,
    sensor_h: int,
    pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM,
    columns: int | None = DEFAULT_GRID[0],
    rows: int | None = DEFAULT_GRID[1],
    min_overlap_px: int = DEFAULT_MIN_OVERLAP_PX,
) -> list[tuple[int, int, int, int]]:
    """RoIs covering the sample, row-major: (grid_row, grid_col, origin_row_px, origin_col_px).

    Origins are in the sample pixel frame, even, evenly spaced, the first at 0 and the last
    reaching the far edge of the glass. `columns` / `rows` = None picks the fewest RoIs that keep
    `min_overlap_px` of overlap; with explicit counts, use `grid_overlap_px` to check the overlap
    (a small sensor with the default 2 x 5 grid leaves gaps: fine for fast test data).
    """
    if sensor_w % 2 or sensor_h % 2:
        raise ValueError(f"sensor size must be even to keep the Bayer phase, got {sensor_w}x{sensor_h}")
    ext_w, ext_h = sample_w_mm / pixel_size_mm, sample_h_mm / pixel_size_mm
    nc = columns if columns is not None else axis_count(ext_w, sensor_w, min_overlap_px)
    nr = rows if rows is not None else axis_count(ext_h, sensor_h, min_overlap_px)
    cols = axis_origins(ext_w, sensor_w, nc)
    rws = axis_origins(ext_h, sensor_h, nr)
    return [(gr, gc, r0, c0) for gr, r0 in enumerate(rws) for gc, c0 in enumerate(cols)]


def grid_overlap_px(grid: list[tuple[int, int, int, int]], sensor_w: int,
                    sensor_h: int) -> tuple[int, int]:
    """Smallest (x, y) overlap in px between neighbouring RoIs of a grid (negative = gap)."""
    cols = sorted({g[3] for g in grid})
    rws = sorted({g[2] for g in grid})
    ox = min((sensor_w - (b - a) for a, b in zip(cols, cols[1:], strict=False)), default=sensor_w)
    oy = min((sensor_h - (b - a) for a, b in zip(rws, rws[1:], strict=False)), default=sensor_h)
    return int(ox), int(oy)


def signed_inside_mm(x: np.ndarray, y: np.ndarray, w: float, h: float, r: float) -> np.ndarray:
    """Distance inside the rounded rectangle [0, w] x [0, h] with corner radius r (< 0 outside)."""
    r = min(r, w / 2, h / 2)
    qx = np.abs(x - w / 2) - (w / 2 - r)
    qy = np.abs(y - h / 2) - (h / 2 - r)
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    inside = np.minimum(np.maximum(qx, qy), 0.0)
    return r - (outside + inside)
