"""RoI grid and px <-> mm transforms (rig/geometry.py)."""

from __future__ import annotations

import pytest

from rig.geometry import (
    grid_overlap_px,
    px_to_mm,
    roi_centre_mm,
    roi_grid,
    roi_px_to_sample_mm,
    sample_mm_to_roi_px,
)


def test_default_grid_covers_the_sample_with_overlap():
    g = roi_grid(72, 150, 3504, 3120, 0.0114)
    assert len(g) == 10
    assert [(r, c) for r, c, _, _ in g] == [(r, c) for r in range(5) for c in range(2)]
    assert all(o % 2 == 0 for _, _, r0, c0 in g for o in (r0, c0))
    assert g[0][2:] == (0, 0)
    last = g[-1]
    assert last[3] + 3504 >= 72 / 0.0114 and last[2] + 3120 >= 150 / 0.0114
    ox, oy = grid_overlap_px(g, 3504, 3120)
    assert ox >= 256 and oy >= 256
    rows = sorted({r0 for _, _, r0, _ in g})
    steps = [b - a for a, b in zip(rows, rows[1:], strict=False)]
    assert max(steps) - min(steps) <= 2  # evenly spaced (even rounding)


def test_small_sensor_keeps_grid_and_pixel_size():
    g = roi_grid(72, 150, 1024, 1024, 0.0114)
    assert len(g) == 10 and g[-1][2] + 1024 >= 150 / 0.0114
    assert grid_overlap_px(g, 1024, 1024)[0] < 0  # gaps: fine for test data


def test_automatic_counts_cover_with_min_overlap():
    g = roi_grid(72, 150, 1024, 1024, 0.0114, columns=None, rows=None, min_overlap_px=256)
    assert min(grid_overlap_px(g, 1024, 1024)) >= 256
    assert g[-1][3] + 1024 >= 72 / 0.0114


def test_odd_sensor_rejected():
    with pytest.raises(ValueError):
        roi_grid(72, 150, 1023, 1024)


def test_px_mm_round_trip():
    origin = (2510, 2812)
    x, y = roi_px_to_sample_mm(100.0, 200.0, origin, 0.0114)
    assert x == pytest.approx((2812 + 200) * 0.0114) and y == pytest.approx((2510 + 100) * 0.0114)
    assert sample_mm_to_roi_px(x, y, origin, 0.0114) == pytest.approx((100.0, 200.0))
    assert px_to_mm(1000, 0.0114) == pytest.approx(11.4)
    assert roi_centre_mm((0, 0), 3504, 3120) == pytest.approx((3504 * 0.0057, 3120 * 0.0057))
