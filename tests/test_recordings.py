"""Recording format: round trip, crash safety (SIGKILL mid-RoI), verify, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import recordings as R


def _stack(seed: int, shape=(6, 256, 320)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (64 + rng.poisson(3.0, shape)).astype(np.uint16)


def _write(w: R.RecordingWriter, index: int, raw: np.ndarray, truth=None) -> None:
    w.write_roi(index, raw, stage_xy_mm=(10.0 + index, 20.0), origin_px=(0, 2 * index),
                pixel_size_mm=0.0114, exposure_us=20000, timestamps_s=np.arange(6) * 0.1,
                frame_ids=np.arange(6) + 6 * index, truth=truth)


def test_round_trip_with_truth_and_results(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    mask = np.zeros((256, 320), np.uint8)
    mask[100, 10:200] = 1
    defects = [{"id": 3, "kind": "scratch", "x_mm": 1.5, "y_mm": 1.2, "length_mm": 2.2,
                "geometry": {"points_mm": [[0, 0], [1, 1]]}}]
    with R.RecordingWriter.create(path, sample_id="S-1", rig_config={"k": 1}, n_rois=2) as w:
        _write(w, 0, _stack(0), R.RoiTruth(mask, defects))
        _write(w, 1, _stack(1))
        w.write_results(R.DetectionResults(
            detector="test", model_sha256="ab", verdict="FAIL",
            scratches=[R.DetectedObject(0, (90, 10, 110, 200), 1.5, 1.2, 2.2, 2.0, 0.9, "scratch",
                                        0.8)],
            probability_maps={0: np.zeros((128, 160))}, timings_s={"detect": 1.0}))
    with R.open_recording(path) as rec:
        assert rec.status == "complete" and rec.sample_id == "S-1"
        assert rec.roi_ids() == [0, 1]
        roi = rec.roi(0)
        np.testing.assert_array_equal(roi.raw[()], _stack(0))
        np.testing.assert_array_equal(roi.scratch_mask(), mask)
        assert roi.defects()[0]["geometry"] == {"points_mm": [[0, 0], [1, 1]]}
        assert roi.attrs["bayer_pattern"] == "GRBG" and roi.attrs["bit_depth"] == 12
        assert roi.origin_px == (0, 0) and rec.roi(1).origin_px == (0, 2)
        res = rec.results()
        assert res.verdict == "FAIL" and res.scratches[0].type == "scratch"
        assert res.scratches[0].box_px == (90, 10, 110, 200)
        assert res.probability_maps[0].shape == (128, 160)
    assert R.verify_recording(path).ok


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    R.RecordingWriter.create(path, sample_id="a", rig_config={}, n_rois=1).close()
    with pytest.raises(R.RecordingError, match="refusing to overwrite"):
        R.RecordingWriter.create(path, sample_id="a", rig_config={}, n_rois=1)


def test_verify_detects_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with R.RecordingWriter.create(path, sample_id="a", rig_config={}, n_rois=1) as w:
        _write(w, 0, _stack(0))
    with h5py.File(path, "r+") as f:  # a bit flip behind the writer's back
        f["rois/00/raw"][2, 5, 5] ^= 1
    report = R.verify_recording(path)
    assert not report.ok and "checksum mismatch" in report.summary()


@pytest.mark.parametrize("content,message", [
    (b"not hdf5 at all", "not an HDF5 file"),
    (None, "not a dark-field recording"),
    ("version", "format_version 9.0 is not supported"),
    ("truncate", "cannot open HDF5 file"),
])
def test_clear_errors_for_bad_files(tmp_path: Path, content, message) -> None:
    path = tmp_path / "bad.h5"
    if content is None:
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "something-else"
    elif content == "version":
        R.RecordingWriter.create(path, sample_id="a", rig_config={}, n_rois=1).close()
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = "9.0"
    elif content == "truncate":
        with R.RecordingWriter.create(path, sample_id="a", rig_config={}, n_rois=1) as w:
            _write(w, 0, _stack(0, (6, 512, 512)))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(R.RecordingError, match=message):
        R.open_recording(path)
    assert not R.verify_recording(path).ok


CHILD = textwrap.dedent("""
    import sys, numpy as np, recordings as R
    path = sys.argv[1]
    w = R.RecordingWriter.create(path, sample_id="kill", rig_config={}, n_rois=6)
    rng = np.random.default_rng(0)
    for i in range(6):
        raw = (64 + rng.poisson(3.0, (6, 1536, 2048))).astype(np.uint16)
        print(f"start {i}", flush=True)
        w.write_roi(i, raw, stage_xy_mm=(0, 0), origin_px=(0, 0), pixel_size_mm=0.0114,
                    exposure_us=1000, timestamps_s=np.zeros(6), frame_ids=np.arange(6))
    w.close()
    print("done", flush=True)
""")


@pytest.mark.parametrize("delay_s", [0.0, 0.02, 0.05, 0.1])
def test_sigkill_mid_roi_leaves_a_readable_resumable_file(tmp_path: Path, delay_s: float) -> None:
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    for line in proc.stdout:  # wait until RoI 3 has started writing, then kill mid-RoI
        if line.strip() == "start 3":
            break
    time.sleep(delay_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with R.open_recording(path) as rec:
        assert rec.status == "incomplete"
        assert rec.roi_ids()[:3] == [0, 1, 2]
    report = R.verify_recording(path)
    assert report.ok, report.summary()
    assert {0, 1, 2} <= set(report.rois_ok)

    with R.RecordingWriter.resume(path) as w:
        for i in w.missing_rois():
            _write(w, i, _stack(i, (6, 64, 64)))
    report = R.verify_recording(path)
    assert report.ok and report.status == "complete" and report.rois_ok == list(range(6))
