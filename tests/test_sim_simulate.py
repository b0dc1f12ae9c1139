"""`simulate`: recordings with truth, accepted by verify, same seed -> same data."""

from __future__ import annotations

import argparse

import numpy as np

from cli import simulate as cli
from recordings import Recording, verify_recording
from world.simulate import parse_sensor, simulate_recordings


def _content(path):
    with Recording(path) as rec:
        return [(r.attrs["checksum"], r.scratch_mask().tobytes(), r.defects()) for r in rec.rois()]


def test_simulate_writes_verified_recordings_deterministically(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # fixes the files' time stamps
    a = simulate_recordings(tmp_path / "a", 2, seed=1, sensor=(128, 96), progress=False)
    b = simulate_recordings(tmp_path / "b", 2, seed=1, sensor=(128, 96), progress=False)
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        rep = verify_recording(pa)
        assert rep.ok and rep.status == "complete" and len(rep.rois_ok) == 10
        assert _content(pa) == _content(pb)
        assert pa.read_bytes() == pb.read_bytes()  # same seed, same bytes
        with Recording(pa) as rec:
            roi = rec.roi(3)
            assert roi.raw.shape == (6, 96, 128) and roi.raw.dtype == np.uint16
            assert roi.has_truth and roi.scratch_mask().shape == (96, 128)
            assert list(roi.attrs["frame_ids"]) == list(range(18, 24))
            assert rec.rig_config["camera"]["width"] == 128


def test_small_sensor_places_defects_in_view(tmp_path):
    (path,) = simulate_recordings(tmp_path, 1, seed=1, sensor=(256, 256), progress=False)
    with Recording(path) as rec:
        kinds = [d["kind"] for r in rec.rois() for d in r.defects()]
        scratch_px = sum(int(r.scratch_mask().sum()) for r in rec.rois())
    assert kinds.count("dust") >= 10  # ~ what full-size RoIs see, not 1/50 of it
    assert "scratch" in kinds and scratch_px > 0  # series seed 1, sample 0 is scratched


def test_cli_registers_simulate(tmp_path):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", "--out", str(tmp_path), "--samples", "1",
                              "--sensor", "64x64", "--seed", "5", "--no-progress"])
    assert args.func(args) == 0
    assert len(list(tmp_path.glob("*.h5"))) == 1


def test_parse_sensor():
    assert parse_sensor("1024x768") == (1024, 768)
    for bad in ("1023x768", "abc", "0x10"):
        try:
            parse_sensor(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
