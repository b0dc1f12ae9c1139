"""Nothing trusted: corrupt, edited or half-written recordings never get a verdict, a resume
re-takes what is damaged, and results are replaced whole or not at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import recordings as R
from recordings.writer import RESULTS_STAGING, RecordingWriter, write_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """One small simulated recording with a scratch (10 RoIs of 256 px, with truth)."""
    out = tmp_path_factory.mktemp("sim")
    proc = subprocess.run([sys.executable, "main.py", "--log-dir", str(out / "logs"), "simulate",
                           "--out", str(out), "--samples", "1", "--sensor", "256x256",
                           "--scratch-fraction", "1", "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("*.h5")
    return path


def copy(recording: Path, tmp_path: Path) -> Path:
    dst = tmp_path / recording.name
    shutil.copy(recording, dst)
    return dst


def infer(path: Path, tmp_path: Path) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "main.py", "--log-dir", str(tmp_path / "logs"),
                           "infer", str(path), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)[0], proc.stderr


def test_a_blanked_roi_is_never_judged(recording: Path, tmp_path: Path) -> None:
    path = copy(recording, tmp_path)
    with h5py.File(path, "r+") as h5:
        raw = h5["rois/03/raw"]
        raw[...] = np.full(raw.shape, 64, np.uint16)  # the scratch wiped, checksum kept
    assert not R.verify_recording(path).ok
    code, report, err = infer(path, tmp_path)
    assert code == 2 and report["verdict"] == "INCOMPLETE" and not report["written"]
    assert any("RoI 3: checksum mismatch" in p for p in report["problems"])
    assert 3 not in report["rois"]
    with R.Recording(path) as rec:
        assert not rec.has_results


def test_a_renamed_roi_is_missing_not_inspected(recording: Path, tmp_path: Path) -> None:
    path = copy(recording, tmp_path)
    with h5py.File(path, "r+") as h5:
        h5.move("rois/09", "rois/99")
    report = R.verify_recording(path)
    assert not report.ok and report.missing_rois == [9]
    assert any("['99']" in p for p in report.problems)
    code, rep, _ = infer(path, tmp_path)
    assert code == 2 and rep["verdict"] == "INCOMPLETE" and 9 not in rep["rois"]
    assert any("RoIs [9] were never recorded" in p and "scan --resume" in p
               for p in rep["problems"])
    with pytest.raises(R.RecordingError, match="refusing to resume"):
        RecordingWriter.resume(path)


def test_a_complete_verified_recording_is_judged_and_stored(recording: Path,
                                                            tmp_path: Path) -> None:
    path = copy(recording, tmp_path)
    code, rep, _ = infer(path, tmp_path)
    assert rep["complete"] and rep["written"] and rep["verdict"] in ("PASS", "FAIL")
    assert code == (1 if rep["verdict"] == "FAIL" else 0)
    with R.Recording(path) as rec:
        assert rec.results().verdict == rep["verdict"]


def test_resume_takes_a_corrupt_roi_again(recording: Path, tmp_path: Path) -> None:
    path = copy(recording, tmp_path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["status"] = "incomplete"
        raw = h5["rois/02/raw"]
        raw[0, 0, 0] = raw[0, 0, 0] ^ 1  # one bit flipped
    with RecordingWriter.resume(path) as writer:
        assert writer.missing_rois() == [2]
        assert writer.read_raw(5).shape[0] == 6  # the others stay, verified
        with pytest.raises(R.RecordingError, match="RoI 2 is not recorded"):
            writer.read_raw(2)


def test_results_are_replaced_whole_or_not_at_all(recording: Path, tmp_path: Path) -> None:
    path = copy(recording, tmp_path)
    good = R.DetectionResults("model A", "a" * 64, "PASS", probability_maps={0: np.zeros((4, 4))})
    R.add_results(path, good)
    broken = R.DetectionResults("model B", "b" * 64, "FAIL",
                                probability_maps={0: np.zeros((4, 4)), 1: "not an array"})
    with h5py.File(path, "r+") as h5, pytest.raises(ValueError):
        write_results(h5, broken)  # fails half-way through (as a full disk would)
    with R.Recording(path) as rec:
        res = rec.results()
        assert res.detector == "model A" and res.verdict == "PASS"  # the old, whole
    assert R.verify_recording(path).ok
    R.add_results(path, good)  # the next write clears what the failed one left
    with h5py.File(path, "r") as h5:
        assert RESULTS_STAGING not in h5 and h5["results"].attrs["detector"] == "model A"


def test_a_full_disk_stops_the_sample_cleanly_and_resume_finishes_it(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """The free space runs out before RoI 3 (reported by the OS call the writer asks): the
    sample ends INCOMPLETE with a one-line reason, what was written verifies, and a resume on
    a disk with space completes it."""
    import shutil as sh
    from collections import namedtuple

    from inspection import InspectionRun
    from recordings.writer import DiskFull
    from rig.rig import build_rig
    from tests.conftest import fast_sim_config

    usage, calls = sh.disk_usage, []
    Usage = namedtuple("Usage", "total used free")

    def filling_up(path):
        calls.append(path)
        real = usage(path)
        return Usage(real.total, real.used, real.free if len(calls) <= 3 else 1024)

    cfg = fast_sim_config()
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(11)
        monkeypatch.setattr("recordings.writer.shutil.disk_usage", filling_up)
        result = InspectionRun(cfg, rig, None, tmp_path, "FULL-1").run()
        monkeypatch.setattr("recordings.writer.shutil.disk_usage", usage)
        assert result.verdict == "INCOMPLETE" and result.error.startswith("disk full")
        assert f"scan --resume {result.recording}" in result.error
        report = R.verify_recording(result.recording)
        assert report.ok and report.rois_ok == [0, 1, 2]
        resumed = InspectionRun(cfg, rig, None, tmp_path, "", resume=result.recording).run()
    assert resumed.complete and R.verify_recording(result.recording).rois_ok == list(range(10))
    assert issubclass(DiskFull, R.RecordingError)


def test_scan_on_a_really_full_filesystem_exits_2_without_a_crash(tmp_path: Path) -> None:
    """A 6 MB tmpfs (where this machine lets the test mount one)."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
    try:
        station = tmp_path / "station.toml"
        station.write_text("[camera]\nwidth = 512\nheight = 512\nexposure_us = 2000.0\n"
                           "[sim]\nrealtime = false\n")
        run = subprocess.run(
            [sys.executable, "main.py", "--log-dir", str(tmp_path / "logs"), "scan", "--config",
             str(station), "--sim", "--out", str(mount / "out"), "--sample-id", "DF1",
             "--no-infer"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, run.stderr
        assert "disk full" in run.stderr and "Traceback" not in run.stderr
        assert R.verify_recording(mount / "out" / "DF1.h5").ok
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_verify_finds_damaged_results_and_infer_repairs_them(recording: Path,
                                                             tmp_path: Path) -> None:
    path = copy(recording, tmp_path)
    code, rep, _ = infer(path, tmp_path)
    assert rep["written"]
    with h5py.File(path, "r+") as h5:
        del h5["results/scratches"]  # as a crash of older software could leave it
    report = R.verify_recording(path)
    assert not report.ok and any("/results is damaged" in p for p in report.problems)
    infer(path, tmp_path)
    assert R.verify_recording(path).ok


def test_resume_with_another_sensor_or_grid_is_refused_with_the_differences(tmp_path: Path
                                                                             ) -> None:
    from inspection import InspectionRun
    from rig.rig import build_rig
    from tests.conftest import fast_sim_config

    cfg = fast_sim_config()
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(12)
        run = InspectionRun(cfg, rig, None, tmp_path, "MIX-1")
        run.subscribe(lambda e: run.abort() if type(e).__name__ == "RoiRecorded" else None)
        partial = run.run()
    assert partial.verdict == "ABORTED"
    before = R.verify_recording(partial.recording).rois_ok
    other = fast_sim_config(size=1024, scan={"columns": 3})
    with build_rig(other) as rig, pytest.raises(R.RecordingError) as info:
        InspectionRun(other, rig, None, tmp_path, "", resume=partial.recording).run()
    text = str(info.value)
    assert "camera.width was 512, is 1024" in text and "scan.columns was 2, is 3" in text
    assert R.verify_recording(partial.recording).rois_ok == before  # untouched
