"""Calibration on the simulated bench, end to end: real drivers over the emulators, the sim
camera with injected imperfections (stage rotation, pixel size off nominal, strong shading,
unequal facets, many hot pixels), `calibrate` on the command line, and a scan that records the
calibration id it used."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

import recordings as R
from calibration import apply_to_rig, load_calibration, save_calibration
from calibration.apply import StackCorrector
from calibration.flat import nonuniformity
from calibration.procedures import CalibrationOptions, CalibrationSession
from cli import calibrate as calibration_cli
from rig.rig import build_rig
from tests.conftest import fast_sim_config
from tests.test_calibration import strong_optics
from world.imperfections import BenchImperfections
from world.optics import DarkFieldRenderer
from world.targets import diffuser_plate

SENSOR = 256
TRUE = BenchImperfections(stage_rotation_deg=-0.42, pixel_size_error=-0.003)
FAST = CalibrationOptions(dark_frames=8, flat_frames=4, led_frames=1, registration_grid=4)


@pytest.fixture(scope="module")
def calibrated():
    """One full calibration of an imperfect simulated bench (shared by the checks below)."""
    cfg = fast_sim_config(size=SENSOR)
    optics = strong_optics(SENSOR)
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(3)
        sample = rig.samples.sample
        rig.camera.set_imperfections(TRUE)
        rig.camera.set_optics(optics)
        settings = rig.camera.settings
        reports: list[tuple[str, int, int]] = []
        cal = CalibrationSession(rig, cfg, FAST,
                                 progress=lambda s, d, t, m: reports.append((s, d, t))).run(
            ["all"])
        after = {"levels": rig.light.levels(), "settings": rig.camera.settings,
                 "sample": rig.samples.sample, "camera_sample": rig.camera.sample}
        # independent check of the flat: fresh frames of the diffuser with the balanced LEDs
        apply_to_rig(rig, cal)
        rig.samples.place_target("diffuser", (0.0, 0.0), cfg.scan.pixel_size_mm, 0)
        rig.move_to((cfg.stage.sample_origin_mm[0] + 75.0, cfg.stage.sample_origin_mm[1] + 75.0))
        frames = rig.acquire_stack(range(6), cfg.camera.exposure_us, "hardware", 5.0)
        fresh = np.stack([f.image for f in frames])
        calibration_id = rig.calibration_id
    yield {"cfg": cfg, "cal": cal, "optics": optics, "sample": sample, "settings": settings,
           "after": after, "reports": reports, "fresh": fresh, "rig_id": calibration_id}


def test_registration_recovers_injected_rotation_and_pixel_size(calibrated):
    reg = calibrated["cal"].registration
    assert abs(reg.rotation_deg - TRUE.stage_rotation_deg) < 0.05
    true_pix = TRUE.pixel_size_mm(calibrated["cfg"].scan.pixel_size_mm)
    assert abs(reg.pixel_size_mm / true_pix - 1.0) < 0.002
    assert reg.residual_px < 0.2 and reg.n_positions == 16


def test_flat_field_leaves_under_two_percent_per_state(calibrated):
    cal = calibrated["cal"]
    dark = cal.dark_for(20000.0)
    assert max(cal.flat.stats["residual_nonuniformity_p2p"]) < 0.02
    assert min(cal.flat.stats["raw_nonuniformity_p2p"]) > 0.2
    fixed = StackCorrector(dark, cal.flat, cal.black_level_dn)(calibrated["fresh"])
    for k in range(6):
        raw = nonuniformity(calibrated["fresh"][k].astype(np.float32) - dark.mean,
                            dark.hot_pixels)
        res = nonuniformity(fixed[k].astype(np.float32) - cal.black_level_dn, dark.hot_pixels)
        assert raw["p2p"] > 0.2 and res["p2p"] < 0.02, (k, raw, res)


def test_led_balance_equalises_state_means(calibrated):
    leds = calibrated["cal"].leds
    assert leds.spread_before > 0.05  # facet balance sd 8 %: clearly unequal before
    assert leds.spread_after < 0.02
    assert max(leds.levels) == 255 and leds.levels_before == (255,) * 12
    # the fresh stack (balanced levels, hardware-triggered scan path) agrees
    dark = calibrated["cal"].dark_for(20000.0)
    means = [float((calibrated["fresh"][k] - dark.mean).mean()) for k in range(6)]
    assert (max(means) - min(means)) / np.mean(means) < 0.02


def test_dark_frame_finds_the_hot_pixels(calibrated):
    dark = calibrated["cal"].dark_for(20000.0)
    truth = DarkFieldRenderer(diffuser_plate(), (SENSOR, SENSOR), 0.0114,
                              calibrated["optics"]).hot_pixels
    assert len(truth) > 20 and set(dark.hot_pixels.tolist()) == set(truth.tolist())


def test_session_reports_progress_and_leaves_the_rig_as_found(calibrated):
    steps = [s for s, _, _ in calibrated["reports"]]
    assert steps[0] == "dark" and steps[-1] == "registration"
    assert {s for s in steps} == {"dark", "leds", "flat", "registration"}
    last = {s: (d, t) for s, d, t in calibrated["reports"]}
    assert all(d == t and t > 0 for d, t in last.values())
    after = calibrated["after"]
    assert after["levels"] == (255,) * 12
    assert after["settings"] == calibrated["settings"]
    assert after["sample"] is calibrated["sample"] and after["camera_sample"] is not None
    assert calibrated["cal"].updated == ("dark", "leds", "flat", "registration")
    assert calibrated["rig_id"] == calibrated["cal"].calibration_id


def test_scan_records_the_calibration_id(calibrated, tmp_path):
    from inspection import InspectionRun

    cfg = fast_sim_config(size=SENSOR, scan={"columns": 1, "rows": 2})
    cal = calibrated["cal"]
    save_calibration(cal, tmp_path / "cal")
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(1)
        apply_to_rig(rig, load_calibration(tmp_path / "cal" / f"{cal.calibration_id}.h5"))
        assert rig.light.levels() == cal.leds.levels
        result = InspectionRun(cfg, rig, None, tmp_path, "CAL-1").run()
    with R.Recording(result.recording) as rec:
        assert rec.attrs["calibration_id"] == cal.calibration_id


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    calibration_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["calibrate", *argv])
    return args.func(args)


def test_calibrate_command_line(tmp_path: Path, capsys):
    station = tmp_path / "small.toml"
    station.write_text(f'[station]\nname = "cli bench"\n[camera]\nwidth = {SENSOR}\n'
                       f"height = {SENSOR}\n[sim]\nrealtime = false\n")
    out = tmp_path / "cals"
    common = ["--sim", "--config", str(station), "--out", str(out)]
    assert _cli("all", *common, "--frames", "4", "--grid", "3", "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert first["updated"] == ["dark", "leds", "flat", "registration"]
    rows = {(r["part"], r["quantity"]): r for r in first["rows"]}
    # the sim bench got the default imperfections: +0.4 % pixel size, 0.3 deg
    rotation = float(rows[("registration", "stage rotation")]["now"].split()[0])
    assert abs(rotation - 0.3) < 0.05
    assert _cli("flat", *common, "--frames", "4", "--json") == 0
    second = json.loads(capsys.readouterr().out)
    assert second["parent_id"] == first["calibration_id"] and second["updated"] == ["flat"]
    assert set(second["parts"]) == {"dark", "flat", "registration", "leds"}
    assert _cli("list", *common) == 0
    listing = capsys.readouterr().out
    assert first["calibration_id"] in listing and second["calibration_id"] in listing
    assert _cli("show", first["calibration_id"], *common) == 0
    assert "stage rotation" in capsys.readouterr().out
    assert _cli("show", "nope", *common) == 2
    assert "no calibration 'nope'" in capsys.readouterr().out
