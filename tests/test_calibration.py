"""Calibration maths on rendered frames (no devices): dark / hot pixels, flat field, phase
correlation and registration fit, LED levels, the stack corrector, the file format, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from calibration import leds as L
from calibration.apply import StackCorrector, corrector_for
from calibration.dark import measure_dark, scale_dark
from calibration.flat import measure_flat, nonuniformity
from calibration.registration import (
    calibrated_roi_layout,
    fit_registration,
    phase_correlation,
    stage_offsets,
)
from calibration.store import (
    FORMAT_VERSION,
    Calibration,
    CalibrationError,
    LedBalance,
    Registration,
    find_calibration,
    latest_calibration,
    list_calibrations,
    load_calibration,
    new_calibration,
    save_calibration,
)
from calibration.summary import format_summary, summarize
from world.optics import DarkFieldRenderer, OpticsConfig
from world.targets import diffuser_plate, plate_centre_mm

SENSOR = 256
PIX = 0.0114
FULL_W = 3504


def strong_optics(sensor: int = SENSOR, **kw) -> OpticsConfig:
    """Shading as strong as on a badly set-up full-size station, scaled to a small sensor's
    field (the light field and vignetting are given in mm)."""
    f = sensor / FULL_W
    base = dict(illumination_radius_mm=20.0 * f, vignetting_radius_mm=45.0 * f,
                illumination_gradient=0.5, illumination_curvature=0.35, facet_balance_sd=0.08,
                hot_pixel_fraction=1e-3)
    return OpticsConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def diffuser_renderer() -> DarkFieldRenderer:
    return DarkFieldRenderer(diffuser_plate(), (SENSOR, SENSOR), PIX, strong_optics())


def _origin(r: DarkFieldRenderer) -> tuple[int, int]:
    cx, cy = plate_centre_mm(r.sample)
    return (int(2 * round((cy / PIX - SENSOR / 2) / 2)), int(2 * round((cx / PIX - SENSOR / 2) / 2)))


def _dark(r: DarkFieldRenderer, n: int = 8, first: int = 0):
    origin = _origin(r)
    frames = [r.render(origin, levels=np.zeros(12), frame_counter=first + i) for i in range(n)]
    return measure_dark(frames, 20000.0)


# -- dark ---------------------------------------------------------------------------------------
def test_dark_frame_finds_every_hot_pixel_and_nothing_else(diffuser_renderer):
    r = diffuser_renderer
    dark = _dark(r)
    truth = set(r.hot_pixels.tolist())
    assert len(truth) >= 30  # the strong test sensor has plenty
    assert set(dark.hot_pixels.tolist()) == truth
    assert dark.stats["black_dn"] == pytest.approx(64.0, abs=0.5)
    assert dark.stats["read_noise_dn"] == pytest.approx(2.5, abs=0.3)
    assert dark.n_frames == 8 and "off" in dark.method


def test_scaled_dark_keeps_black_and_scales_dark_signal(diffuser_renderer):
    dark = _dark(diffuser_renderer, n=4)
    half = scale_dark(dark, 10000.0)
    hot = dark.hot_pixels[0]
    black = dark.stats["black_dn"]
    assert half.mean.reshape(-1)[hot] - black == pytest.approx(
        (dark.mean.reshape(-1)[hot] - black) / 2, rel=1e-4)
    assert float(np.median(half.mean)) == pytest.approx(black, abs=0.2)


# -- flat -------------------------------------------------------------------------------------
def _reference(r: DarkFieldRenderer, n: int, first: int) -> list[np.ndarray]:
    origin = _origin(r)
    out = []
    for k in range(6):
        fr = [r.render(origin, k, frame_counter=first + 100 * k + i).astype(np.float64)
              for i in range(n)]
        out.append(np.mean(fr, axis=0).astype(np.float32))
    return out


def test_flat_field_removes_strong_shading_per_state(diffuser_renderer):
    r = diffuser_renderer
    dark = _dark(r)
    flat = measure_flat(_reference(r, 4, first=1000), dark, (255,) * 12, 20000.0, 4)
    corr = StackCorrector(dark, flat, 64.0)
    fresh = _reference(r, 2, first=5000)  # independent frames
    for k in range(6):
        raw = nonuniformity(fresh[k] - dark.mean, dark.hot_pixels)
        fixed = corr.correct_frame(np.rint(fresh[k]).astype(np.uint16), k)
        res = nonuniformity(fixed.astype(np.float32) - 64.0, dark.hot_pixels)
        assert raw["p2p"] > 0.25, "the test bench must be strongly non-uniform"
        assert res["p2p"] < 0.02 and res["rms"] < 0.005, (k, raw, res)
    # RAW domain kept: black level, mean level and colour balance survive the correction
    k = 1
    fixed = corr.correct_frame(np.rint(fresh[k]).astype(np.uint16), k).astype(np.float64)
    planes_raw = [fresh[k][i::2, j::2].mean() - 64 for i in (0, 1) for j in (0, 1)]
    planes_fix = [fixed[i::2, j::2].mean() - 64 for i in (0, 1) for j in (0, 1)]
    assert planes_fix[1] / planes_fix[0] == pytest.approx(0.6, rel=0.02)  # R / G
    assert planes_fix[2] / planes_fix[0] == pytest.approx(0.5, rel=0.02)  # B / G
    assert np.mean(planes_fix) == pytest.approx(np.mean(planes_raw), rel=0.1)


def test_corrector_output_is_raw_dn_and_repairs_hot_pixels(diffuser_renderer):
    r = diffuser_renderer
    dark = _dark(r)
    corr = StackCorrector(dark, None, 64.0)
    frame = r.render(_origin(r), levels=np.zeros(12), frame_counter=777)
    out = corr(np.stack([frame] * 6))
    assert out.dtype == np.uint16 and out.shape == (6, SENSOR, SENSOR)
    assert float(out[0].reshape(-1)[dark.hot_pixels].max()) < 64 + 15
    assert float(np.median(out)) == pytest.approx(64, abs=1)
    with pytest.raises(CalibrationError, match="does not match"):
        corr(np.zeros((6, 128, 128), np.uint16))


# -- registration -------------------------------------------------------------------------------
def test_phase_correlation_is_subpixel_accurate():
    rng = np.random.default_rng(3)
    base = np.zeros((360, 360))
    idx = rng.integers(0, 360, (2, 500))
    base[idx[0], idx[1]] = 1000.0
    base = ndi.gaussian_filter(base, 1.2)
    errors = []
    for _ in range(6):
        d = rng.uniform(-45, 45, 2)
        a = base[80:280, 80:280] + rng.normal(0, 3, (200, 200))
        b = ndi.shift(base, d, order=3)[80:280, 80:280] + rng.normal(0, 3, (200, 200))
        dr, dc, peak = phase_correlation(a, b)
        errors.append(max(abs(dr - d[0]), abs(dc - d[1])))
        assert peak > 0.05
    assert max(errors) < 0.03


def _similarity(rotation_deg: float, pix: float) -> np.ndarray:
    t = math.radians(rotation_deg)
    return -np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) / pix


def test_registration_fit_recovers_rotation_and_pixel_size_and_drops_outliers():
    rng = np.random.default_rng(1)
    true_pix = PIX * 1.004
    jac = _similarity(0.3, true_pix)
    d = stage_offsets((SENSOR * PIX, SENSOR * PIX), grid=5, span=0.3)
    s = d @ jac.T + rng.normal(0, 0.03, d.shape)
    s[7] += (3.0, -2.0)  # one frame where the plate slipped
    reg = fit_registration(d, s, PIX)
    assert reg.rotation_deg == pytest.approx(0.3, abs=0.01)
    assert reg.pixel_size_mm == pytest.approx(true_pix, rel=2e-4)
    assert reg.pixel_size_error == pytest.approx(0.004, abs=2e-4)
    assert reg.stats["dropped"] == [7] and reg.residual_px < 0.1


def test_calibrated_layout_puts_rois_where_the_grid_says():
    """With the registration of an imperfect bench, the RoI stage positions make the simulated
    camera's frames start exactly at the planned origins (in measured pixels)."""
    from rig.cameras.sim import SimCamera
    from tests.conftest import fast_sim_config
    from world.imperfections import BenchImperfections

    cfg = fast_sim_config(size=512)
    imp = BenchImperfections(0.3, 0.004)
    pix = imp.pixel_size_mm(PIX)
    reg = Registration(_similarity(0.3, pix), pix, 0.3, PIX, 0.0, 25, "now")
    cam = SimCamera(imperfections=imp, sample_origin_mm=cfg.stage.sample_origin_mm,
                    pixel_size_mm=PIX)
    for roi in calibrated_roi_layout(cfg, reg):
        origin, true_pix, frac = cam.frame_geometry(roi.stage_xy_mm, (512, 512))
        assert origin == roi.origin_px and max(map(abs, frac)) <= 1 / 32
        assert roi.pixel_size_mm == pytest.approx(true_pix)
    # the nominal layout on the same bench misses by many pixels at the far RoIs
    from rig.layout import roi_layout

    far = roi_layout(cfg)[-1]
    origin, _, _ = cam.frame_geometry(far.stage_xy_mm, (512, 512))
    assert max(abs(a - b) for a, b in zip(origin, far.origin_px, strict=True)) > 20


# -- LEDs ---------------------------------------------------------------------------------------
def test_led_levels_equalise_facets_and_refine_on_state_means():
    rng = np.random.default_rng(0)
    response = rng.uniform(3.0, 4.0, 12)
    levels = L.balance_levels(response)
    assert max(levels) == 255 and levels[int(np.argmin(response))] == 255
    light = np.asarray(levels) * response
    means = [light[k] + light[k + 6] for k in range(6)]
    assert L.spread(means) < 0.005
    # a driver that is 5 % weaker on state 2 is fixed by the refinement pass
    means[2] *= 0.95
    refined = L.refine_levels(levels, means)
    assert refined[2] == levels[2] and refined[0] < levels[0]


# -- storage ------------------------------------------------------------------------------------
def _full_calibration(r: DarkFieldRenderer) -> Calibration:
    cal = new_calibration("bench 1", (SENSOR, SENSOR), 64.0)
    dark = _dark(r, n=4)
    cal.dark[dark.exposure_us] = dark
    cal.flat = measure_flat(_reference(r, 2, first=0), dark, (250,) * 12, 20000.0, 2)
    cal.registration = fit_registration(
        stage_offsets((3.0, 3.0), 3), stage_offsets((3.0, 3.0), 3) @ _similarity(0.2, PIX).T, PIX)
    cal.leds = LedBalance((250,) * 12, np.full(12, 3.5), np.arange(6.0) + 100,
                          np.full(6, 100.0), (255,) * 12, "now", "test", {"passes": 1})
    cal.updated = ("dark", "flat", "registration", "leds")
    return cal


def test_calibration_file_round_trip_and_lookup(tmp_path, diffuser_renderer):
    cal = _full_calibration(diffuser_renderer)
    path = save_calibration(cal, tmp_path)
    assert path.name == f"{cal.calibration_id}.h5" and cal.calibration_id.startswith("bench-1-")
    back = load_calibration(path)
    assert back.calibration_id == cal.calibration_id and back.station == "bench 1"
    assert back.parts == ("dark", "flat", "registration", "leds") and back.updated == cal.updated
    d0, d1 = cal.dark[20000.0], back.dark[20000.0]
    assert np.abs(d0.mean - d1.mean).max() <= 1 / 32 + 1e-6  # stored in 1/16 DN
    assert np.array_equal(d0.hot_pixels, d1.hot_pixels) and d1.stats == d0.stats
    assert np.allclose(back.flat.gain(3), cal.flat.gain(3))
    assert back.flat.facet_levels == (250,) * 12
    assert back.registration.rotation_deg == pytest.approx(cal.registration.rotation_deg)
    assert np.allclose(back.registration.matrix, cal.registration.matrix)
    assert back.leds.levels == (250,) * 12 and back.leds.stats == {"passes": 1}
    with pytest.raises(CalibrationError, match="never overwritten"):
        save_calibration(cal, tmp_path)
    child = new_calibration("bench 1", (SENSOR, SENSOR), 64.0, parent=back)
    assert child.parent_id == cal.calibration_id and child.flat is back.flat
    save_calibration(child, tmp_path)
    assert [c for _, c, _ in list_calibrations(tmp_path)][-1] == child.calibration_id
    assert latest_calibration(tmp_path, "bench 1").calibration_id == child.calibration_id
    assert latest_calibration(tmp_path, "other") is None
    assert find_calibration(tmp_path, cal.calibration_id).parent_id == ""
    assert corrector_for(back, 20000.0) is not None


def test_unreadable_or_foreign_files_are_refused(tmp_path):
    import h5py

    with pytest.raises(CalibrationError, match="no such"):
        load_calibration(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CalibrationError, match="not a readable"):
        load_calibration(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "rec.h5", "w") as f:
        f.attrs["format"] = "darkfield-recording"
    with pytest.raises(CalibrationError, match="not a calibration"):
        load_calibration(tmp_path / "rec.h5")
    with h5py.File(tmp_path / "future.h5", "w") as f:
        f.attrs["format"] = "darkfield-calibration"
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CalibrationError, match="newer"):
        load_calibration(tmp_path / "future.h5")


def test_summary_says_what_changed(diffuser_renderer):
    old = _full_calibration(diffuser_renderer)
    new = new_calibration("bench 1", (SENSOR, SENSOR), 64.0, parent=old)
    new.registration = fit_registration(
        stage_offsets((3.0, 3.0), 3),
        stage_offsets((3.0, 3.0), 3) @ _similarity(0.25, PIX * 1.001).T, PIX)
    new.updated = ("registration",)
    rows = {(r.part, r.quantity): r for r in summarize(new, old)}
    rot = rows[("registration", "stage rotation")]
    assert rot.measured and rot.change == "+0.0500 deg"
    assert rows[("registration", "pixel size")].change == "+1000 ppm"
    assert not rows[("leds", "facet levels")].measured
    text = format_summary(new, old)
    assert new.calibration_id in text and "carried over: dark, flat, leds" in text


def test_detector_applies_the_calibration_hook(diffuser_renderer):
    """The detector's `raw_correction` hook: the network sees the corrected stack, still RAW."""
    torch = pytest.importorskip("torch")
    from calibration.apply import attach_to_detector
    from inference.detector import Detector
    from inference.model import NestedUNet, UNetConfig
    from inference.tiling import TilingParams

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return [torch.zeros_like(x[:, :1])]

    r = diffuser_renderer
    cal = _full_calibration(r)
    det = Detector(NestedUNet(UNetConfig(width=0.125)), channels_last=False)
    det._net = Spy()
    det.tiling = TilingParams(tile=SENSOR, overlap=0)
    stack = np.stack([np.rint(f).astype(np.uint16) for f in _reference(r, 1, first=9000)])
    det.predict_map(stack)
    assert attach_to_detector(det, cal, 20000.0) and det.raw_correction is not None
    det.predict_map(stack)
    raw_in, fixed_in = seen[0], seen[-1]
    # channel 4k + 0 is the G plane of state k (space-to-depth): shading gone, level kept
    g_raw, g_fix = raw_in[0, 4], fixed_in[0, 4]
    assert float(g_raw.std() / g_raw.mean()) > 0.08
    assert float(g_fix.std() / g_fix.mean()) < 0.03
    assert float(g_fix.mean()) == pytest.approx(float(g_raw.mean()), rel=0.25)
    attach_to_detector(det, None, 20000.0)
    assert det.raw_correction is None


def test_imperfect_sim_camera_truth_lines_up_with_its_frames():
    """With bench imperfections the frame is not where the nominal layout says; `truth_at`
    gives the truth of the frame actually taken (sub-pixel shift included)."""
    from rig.camera import AcquisitionSettings
    from rig.cameras.sim import SimCamera
    from rig.sim.bench_state import BenchState
    from world.imperfections import BenchImperfections
    from world.sample import DefectMix, make_sample

    size = 256
    region = (30.0, 60.0, 30.0 + size * PIX, 60.0 + size * PIX)
    sample = make_sample(4, DefectMix(scratch_fraction=1.0, dust_mean=0, stain_mean=0,
                                      fibre_mean=0, scratch_amplitude_dn=(1500.0, 2000.0),
                                      scratch_length_mm=(1.0, 2.0)), regions_mm=[region])
    bench = BenchState()
    xy = (20.0 + region[0] + size * PIX / 2 + 0.0031, 20.0 + region[1] + size * PIX / 2)
    bench.set_stage(*xy)
    with SimCamera(bench=bench, sample=sample, realtime=False,
                   imperfections=BenchImperfections(0.3, 0.004)) as cam:
        cam.configure(AcquisitionSettings(trigger="software", width=size, height=size,
                                          exposure_us=20000.0))
        cam.arm()
        frames = []
        for k in range(6):
            levels = [0] * 12
            levels[k] = levels[k + 6] = 255
            bench.set_lights(tuple(levels), k)
            cam.trigger()
            frames.append(cam.grab().image.astype(np.float32))
        truth = cam.truth_at(xy)
        assert frames[0].shape == (size, size) and any(cam.frame_geometry(xy, (size, size))[2])
    peak = np.max(frames, axis=0)
    mask = truth.scratch_mask.astype(bool)
    assert mask.sum() > 20
    assert np.median(peak[mask]) > np.percentile(peak[~mask], 99.5)
