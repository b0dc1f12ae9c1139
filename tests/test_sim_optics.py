"""The simulated dark-field camera: determinism, RAW format, sensor model, ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from world.optics import DarkFieldRenderer, OpticsConfig, render_frame, state_levels
from world.sample import Dust, Sample, Scratch, make_sample

PIX = 0.0114


def _one_defect_sample(defect) -> Sample:
    return Sample(seed=7, sample_id="T", haze_dn=6.0, defects=(defect,))


def _origin_on(x_mm: float, y_mm: float, size: int) -> tuple[int, int]:
    return int(y_mm / PIX - size / 2) // 2 * 2, int(x_mm / PIX - size / 2) // 2 * 2


def test_same_seed_same_bytes_and_noise_varies_with_frame_counter():
    a = DarkFieldRenderer(make_sample(3), (256, 192)).render((5000, 2000), 2, frame_counter=7)
    b = DarkFieldRenderer(make_sample(3), (256, 192)).render((5000, 2000), 2, frame_counter=7)
    assert a.dtype == np.uint16 and a.shape == (192, 256)
    assert a.tobytes() == b.tobytes()
    c = DarkFieldRenderer(make_sample(3), (256, 192)).render((5000, 2000), 2, frame_counter=8)
    assert not np.array_equal(a, c)
    assert abs(float(a.mean()) - float(c.mean())) < 0.5  # only the noise differs


def test_threads_do_not_change_the_output():
    s = make_sample(4)
    one = DarkFieldRenderer(s, (512, 384)).render_stack((3000, 1000))
    r2 = DarkFieldRenderer(s, (512, 384), config=OpticsConfig(threads=2))
    assert np.array_equal(one, r2.render_stack((3000, 1000)))
    r2.close()


def test_dark_frame_is_black_level_plus_read_noise():
    clean = Sample(seed=1, sample_id="CLEAN")
    f = render_frame(clean, (4000, 2000), (512, 512), PIX, levels=np.zeros(12))
    assert abs(np.median(f) - 64) <= 1
    d = f.astype(float) - np.median(f)
    assert 2.0 < 1.4826 * np.median(np.abs(d)) < 3.2  # read noise ~2.5 DN
    assert 2.0 < d[np.abs(d) < 30].std() < 3.2
    assert (d > 100).sum() <= 20  # a few hot pixels


def test_grbg_phase_and_colour_response():
    # a big flat dust grain: inside it every Bayer phase sees the same white light
    dust = Dust(id=0, amplitude_dn=2000.0, centre=(30.0, 60.0), radius_mm=60 * PIX, dome=0.0)
    r = DarkFieldRenderer(_one_defect_sample(dust), (256, 256), PIX)
    f = r.render(_origin_on(30.0, 60.0, 256), 0).astype(float) - 64
    core = f[108:148, 108:148]  # even offsets keep the phase
    g1, red, blue, g2 = core[0::2, 0::2], core[0::2, 1::2], core[1::2, 0::2], core[1::2, 1::2]
    assert abs(g1.mean() / g2.mean() - 1) < 0.02
    assert abs(red.mean() / g1.mean() - 0.6) < 0.03
    assert abs(blue.mean() / g1.mean() - 0.5) < 0.03
    assert core.min() > 800  # signal well above background, not clipped
    assert f.max() < 4095 - 64


def test_clipping_at_full_scale():
    dust = Dust(id=0, amplitude_dn=50000.0, centre=(30.0, 60.0), radius_mm=20 * PIX)
    f = render_frame(_one_defect_sample(dust), _origin_on(30.0, 60.0, 128), (128, 128), PIX,
                     state=1)
    assert f.max() == 4095
    assert (f == 4095).sum() > 200


def test_levels_path_matches_state_path():
    s = make_sample(12)
    r = DarkFieldRenderer(s, (512, 512))
    origin = (7900, 1400)
    for k in (0, 3):
        a = r.render(origin, k).astype(float)
        b = r.render(origin, levels=state_levels(k)).astype(float)
        assert abs(a.mean() - b.mean()) < 0.2
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.5
    half = r.render(origin, levels=0.5 * state_levels(0)).astype(float) - 64
    full = r.render(origin, 0).astype(float) - 64
    assert 0.4 < half.mean() / full.mean() < 0.6
    longer = r.render(origin, 0, exposure_us=40000.0).astype(float) - 64
    assert 1.8 < longer.mean() / full.mean() < 2.2


def test_state_levels():
    lv = state_levels(2)
    assert lv[2] == lv[8] == 1 and lv.sum() == 2
    with pytest.raises(ValueError):
        state_levels(6)


def test_origin_and_sensor_must_be_even():
    r = DarkFieldRenderer(make_sample(1), (64, 64))
    with pytest.raises(ValueError):
        r.render((1, 0), 0)
    with pytest.raises(ValueError):
        DarkFieldRenderer(make_sample(1), (63, 64))


def test_scratch_truth_mask_follows_the_bright_scratch():
    sc = Scratch(id=0, amplitude_dn=800.0, shape="straight", points_mm=((28.0, 60.0), (32.0, 60.0)),
                 width_mm=2 * PIX, lobes=((0.0, 25.0, 0.5), (180.0, 25.0, 0.5)), floor=0.01)
    r = DarkFieldRenderer(_one_defect_sample(sc), (512, 256), PIX)
    origin = _origin_on(30.0, 60.0, 256)
    origin = (origin[0], int(30.0 / PIX - 256) // 2 * 2)
    truth = r.truth(origin)
    m = truth.scratch_mask
    assert m.dtype == np.uint8 and m.shape == (256, 512) and set(np.unique(m)) == {0, 1}
    rows = np.nonzero(m.any(axis=1))[0]
    assert 1 <= len(rows) <= 3  # a horizontal line ~2 px wide
    assert 300 <= m.sum() <= 3 * 360
    stack = r.render_stack(origin).astype(float) - 64
    on = stack[:, m == 1].mean(axis=1)
    # horizontal scratch (psi = 0): brightest under the pair at 90/270, darkest at 0/180
    assert np.argmax(on) == 3 and np.argmin(on) == 0
    assert on[3] > 200 and on[0] < 40
    assert [d["kind"] for d in truth.defects] == ["scratch"]
    box = truth.defects[0]["geometry"]["roi_box_px"]
    assert box[0] <= rows[0] and box[2] > rows[-1]


def test_truth_lists_only_defects_in_view():
    s = make_sample(12)
    r = DarkFieldRenderer(s, (1024, 1024))
    seen = {d["id"] for g in ((0, 0), (6000, 2000), (12000, 5000)) for d in r.truth(g).defects}
    assert seen and seen < {d.id for d in s.defects}
    for d in r.truth((6000, 2000)).defects:
        assert {"id", "kind", "x_mm", "y_mm", "length_mm", "geometry"} <= set(d)


def test_glass_edge_glare_and_corner():
    clean = Sample(seed=2, sample_id="CLEAN", glare_scale=1.0)
    r = DarkFieldRenderer(clean, (512, 512))
    f = r.render((0, 0), 0).astype(float) - 64  # top-left corner, lit along x
    assert f[300:, :4].mean() > 500  # left edge faces the lit pair: bright line
    assert f[200:300, 200:300].mean() < 30  # glass interior: dark field
    assert f[:20, :20].mean() < 10  # outside the rounded corner: nothing


def test_window_of_a_larger_sensor_matches_that_part_of_the_full_frame():
    """Training patches render a window of a full-size sensor: same light field and
    vignetting as the same pixels of the whole frame (noise switched off to compare exactly)."""
    quiet = OpticsConfig(read_noise_dn=0.0, shot_gain_dn_per_e=0.0, hot_pixel_fraction=0.0)
    s = make_sample(5)
    full_sensor, (wr, wc) = (3504, 3120), (2992, 3376)  # the window: the frame's far corner
    full = DarkFieldRenderer(s, full_sensor, config=quiet).render((0, 0), 4).astype(int)
    win = DarkFieldRenderer(s, (128, 128), config=quiet, window_of=full_sensor,
                            window_origin_px=(wr, wc)).render((wr, wc), 4).astype(int)
    assert np.abs(win - full[wr:wr + 128, wc:wc + 128]).max() <= 1
    centred = DarkFieldRenderer(s, (128, 128), config=quiet).render((wr, wc), 4).astype(int)
    black = quiet.black_level_dn  # a patch-sized sensor sees the brighter field centre:
    assert (centred - black).mean() > 1.1 * (win - black).mean()
    with pytest.raises(ValueError, match="not inside"):
        DarkFieldRenderer(s, (128, 128), window_of=(512, 384), window_origin_px=(300, 0))
