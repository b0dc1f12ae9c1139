"""Two-threshold DBSCAN post-processing; the fast formulation gives the same objects."""

from __future__ import annotations

import numpy as np
import pytest

from inference.postprocess import (
    PostprocessParams,
    find_contaminants,
    find_scratches,
    labels_dbscan,
    labels_fast,
    make_cells,
    measure,
    postprocess,
    scratch_probability,
)
from inference.synthetic import synthetic_output_map


def _line(shape, r0, c0, r1, c1, value, width=1):
    y = np.zeros(shape, np.float32)
    n = int(max(abs(r1 - r0), abs(c1 - c0))) + 1
    rr = np.rint(np.linspace(r0, r1, n)).astype(int)
    cc = np.rint(np.linspace(c0, c1, n)).astype(int)
    for d in range(width):
        y[np.clip(rr + d, 0, shape[0] - 1), cc] = value
    return y


def test_defaults_are_the_paper_values() -> None:
    p = PostprocessParams()
    assert (p.t_low, p.t_high, p.eps, p.min_samples, p.cluster_downsample) == \
        (0.25, 0.75, 25.0, 16, 8)
    assert p.cell == 4  # map is 1/2 of RAW, cells 1/8 of RAW


def test_probability_is_positive_part() -> None:
    np.testing.assert_allclose(scratch_probability(np.array([-0.5, 0.0, 0.6])), [0, 0, 0.6],
                               atol=1e-7)


def test_hysteresis_keeps_strong_drops_weak() -> None:
    shape = (400, 400)
    y = np.maximum(_line(shape, 50, 20, 60, 300, 0.9, 2),   # strong scratch
                   _line(shape, 300, 20, 310, 300, 0.5, 2))  # weak: above T_low, below T_high
    scratches = find_scratches(scratch_probability(y))
    assert len(scratches) == 1
    s = scratches[0]
    assert s.score == pytest.approx(0.9)
    r0, c0, r1, c1 = s.box_px  # RAW px = 2 x map px
    assert (r0, c0) == (100, 40) and r1 == 2 * 62 and c1 == 2 * 301
    assert s.length_px == pytest.approx(2 * np.hypot(10, 280), rel=0.05)
    assert 2 <= s.width_px <= 6
    assert s.angle_deg == pytest.approx(np.degrees(np.arctan2(10, 280)), abs=2)


def test_short_scratch_survives_min_samples_with_weights() -> None:
    shape = (200, 200)
    y = _line(shape, 100, 100, 100, 112, 0.95)  # 13 map px = 26 RAW px = 0.3 mm
    assert len(find_scratches(y)) == 0  # fewer than 16 kept pixels in reach: noise
    y = _line(shape, 100, 100, 100, 122, 0.95)  # 23 map px
    assert len(find_scratches(y)) == 1
    assert len(find_scratches(y, PostprocessParams(weighted=False))) == 0  # the literal reading


def test_isolated_speckles_are_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.zeros((800, 800), np.float32)
    y[rng.integers(0, 800, 30), rng.integers(0, 800, 30)] = 0.9
    assert find_scratches(y) == []


def test_broken_scratch_is_one_object() -> None:
    shape = (300, 600)
    y = _line(shape, 150, 20, 150, 580, 0.9, 2)
    y[:, 100:130] = 0  # gaps of 30 map px = 60 RAW px
    y[:, 300:320] = 0
    s = find_scratches(y)
    assert len(s) == 1 and s[0].length_px == pytest.approx(2 * 561, rel=0.03)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weighted", [True, False])
def test_fast_equals_dbscan_on_realistic_maps(seed: int, weighted: bool) -> None:
    y, _ = synthetic_output_map(np.random.default_rng(seed), shape=(780, 876),
                                n_speckles=400 * (seed + 1))
    pd = PostprocessParams(method="dbscan", weighted=weighted)
    pf = PostprocessParams(method="fast", weighted=weighted)
    p = scratch_probability(y)
    cells = make_cells(p, pd)
    np.testing.assert_array_equal(labels_dbscan(cells, pd), labels_fast(cells, pf))
    a, b = find_scratches(p, pd), find_scratches(p, pf)
    assert [(d.box_px, d.length_px, d.score) for d in a] == \
        [(d.box_px, d.length_px, d.score) for d in b]


@pytest.mark.parametrize("eps,min_samples", [(1.5, 3), (3.0, 5), (10.0, 40), (25.0, 16)])
def test_fast_equals_dbscan_random_points(eps: float, min_samples: int) -> None:
    rng = np.random.default_rng(int(eps * 10) + min_samples)
    for _ in range(5):
        p = np.zeros((300, 300), np.float32)
        n = int(rng.integers(50, 3000))
        p[rng.integers(0, 300, n), rng.integers(0, 300, n)] = rng.uniform(0.2, 1, n)
        for weighted in (True, False):
            prm = PostprocessParams(eps=eps, min_samples=min_samples, weighted=weighted)
            cells = make_cells(p, prm)
            np.testing.assert_array_equal(labels_dbscan(cells, prm), labels_fast(cells, prm))


def test_planted_scratches_found_on_realistic_map() -> None:
    y, lines = synthetic_output_map(np.random.default_rng(1))
    _, scratches, contaminants = postprocess(y)
    assert len(scratches) == len(lines) == 3
    for pts in lines:
        r, c = 2 * pts.mean(axis=0)  # RAW px
        assert any(d.box_px[0] - 20 <= r <= d.box_px[2] + 20 and
                   d.box_px[1] - 20 <= c <= d.box_px[3] + 20 for d in scratches)
    assert len(contaminants) >= 15


def test_contaminants_from_negative_output() -> None:
    y = np.zeros((100, 100), np.float32)
    y[10:16, 10:16] = -0.9  # dust
    y[50, 50] = -0.9  # a single hot pixel: below min area
    y[80:84, 10:60] = -0.15  # faint and never strongly negative: not listed
    y[60:62, 10:40] = -0.2
    y[60:62, 25] = -0.5  # faint fibre crossing the threshold once: one object, full extent
    c = find_contaminants(y)
    assert len(c) == 2
    assert c[0].box_px == (20, 20, 32, 32) and c[0].score == pytest.approx(0.9)
    assert c[1].box_px == (120, 20, 124, 80)
    assert find_scratches(scratch_probability(y)) == []


def test_measure_straight_and_curved() -> None:
    t = np.linspace(0, np.pi / 2, 400)
    rr, cc = np.rint(100 * np.sin(t)).astype(int), np.rint(100 * np.cos(t)).astype(int)
    pts = np.unique(np.stack([rr, cc], 1), axis=0)
    length, width, _ = measure(pts[:, 0], pts[:, 1])
    assert length == pytest.approx(np.pi / 2 * 100, rel=0.08)
    assert 0.8 <= width <= 1.6


def test_min_high_px_needs_that_many_pixels_above_t_high() -> None:
    """A faint cloud with one strong noise pixel is not a scratch when min_high_px > 1; a
    scratch whose ridge crosses T_high over many pixels still is."""
    rng = np.random.default_rng(3)
    y = np.zeros((400, 400), np.float32)
    y[rng.integers(100, 200, 200), rng.integers(100, 200, 200)] = 0.2  # faint speckle cloud
    y[150, 150] = 0.6  # one pixel above T_high
    y = np.maximum(y, _line(y.shape, 300, 20, 310, 300, 0.6, 2))
    pp = PostprocessParams(t_low=0.1, t_high=0.4)
    assert len(find_scratches(y, pp)) == 2  # the paper's rule: the cloud's maximum seeds it
    found = find_scratches(y, PostprocessParams(t_low=0.1, t_high=0.4, min_high_px=3))
    assert len(found) == 1 and found[0].box_px[0] == 600
    assert found[0].score == pytest.approx(0.6)  # 3rd largest p of the scratch
    with pytest.raises(ValueError, match="min_high_px"):
        PostprocessParams(min_high_px=0)
