"""`main.py scan` end to end on the simulated bench: recordings, report, exit status."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import recordings as R

ROOT = Path(__file__).resolve().parents[1]

SMALL_STATION = """
[camera]
width = 512
height = 512
exposure_us = 2000.0
[sim]
realtime = false
"""


def _scan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    station = tmp_path / "station.toml"
    station.write_text(SMALL_STATION)
    return subprocess.run(
        [sys.executable, "main.py", "--log-dir", str(tmp_path / "logs"), "scan", "--config",
         str(station), "--sim", "--out", str(tmp_path / "out"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_batch_without_detection_writes_verified_recordings_and_report(tmp_path: Path) -> None:
    proc = _scan(tmp_path, "--samples", "3", "--sample-id", "LOT7", "--no-infer", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    ids = [s["sample_id"] for s in report["samples"]]
    assert ids == ["LOT7-001", "LOT7-002", "LOT7-003"]
    assert report["summary"]["NOT-INSPECTED"] == 3
    for s in report["samples"]:
        rep = R.verify_recording(s["recording"])
        assert rep.ok and rep.status == "complete" and len(rep.rois_ok) == 10
    rows = list(csv.DictReader(Path(report["files"]["csv"]).read_text().splitlines()))
    assert [r["sample_id"] for r in rows] == ids
    assert (tmp_path / "logs" / "station.log").stat().st_size > 0


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    station = tmp_path / "bad.toml"
    station.write_text("[scan]\nrows = 0\n")
    proc = subprocess.run([sys.executable, "main.py", "scan", "--config", str(station)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "scan.rows = 0: Input should be greater than or equal to 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    proc = _scan(tmp_path, "--sample-id", "ONE", "--no-infer")
    assert proc.returncode == 0, proc.stderr
    again = _scan(tmp_path, "--sample-id", "ONE", "--no-infer")
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_infer_on_a_scanned_recording_gives_the_same_results(tmp_path: Path) -> None:
    """One pipeline: `infer` inspects with the settings and calibration the recording names,
    so it reproduces the scan's scratch and contaminant tables and verdict exactly."""
    station = tmp_path / "station.toml"  # [detector] settings that differ from the model card
    station.write_text(SMALL_STATION.replace("[sim]", "[sim]\nscratch_fraction = 1.0") +
                       "[sample]\nwidth_mm = 11.0\nlength_mm = 28.0\ncorner_radius_mm = 2.0\n"
                       "[detector]\nt_high = 0.9\ndbscan_min_samples = 40\n")  # not the card's
    proc = subprocess.run(
        [sys.executable, "main.py", "--log-dir", str(tmp_path / "logs"), "scan", "--config",
         str(station), "--sim", "--out", str(tmp_path / "out"), "--sample-id", "SAME",
         "--seed", "3", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    recording = tmp_path / "out" / "SAME.h5"
    with R.open_recording(recording) as rec:
        scanned = rec.results()
    assert scanned is not None and scanned.scratches and scanned.contaminants
    proc = subprocess.run(
        [sys.executable, "main.py", "--log-dir", str(tmp_path / "logs"), "infer",
         str(recording), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    assert "recorded [detector] settings" in proc.stderr
    (report,) = json.loads(proc.stdout)
    with R.open_recording(recording) as rec:
        inferred = rec.results()
    assert inferred.verdict == scanned.verdict == report["verdict"]
    assert inferred.scratches == scanned.scratches
    assert inferred.contaminants == scanned.contaminants
    assert report["scratches"] == [o.to_json() for o in scanned.scratches]


def test_unsafe_sample_ids_are_refused_and_nothing_is_written_outside_out(tmp_path: Path) -> None:
    for bad in ("../../ESCAPE", "/tmp/ABS", "LOT 7/12"):
        proc = _scan(tmp_path, "--sample-id", bad, "--no-infer")
        assert proc.returncode == 2, (bad, proc.stderr)
        assert "cannot name a recording" in proc.stderr and "Traceback" not in proc.stderr
    assert "for example 'LOT-7-12'" in proc.stderr
    assert not list(tmp_path.rglob("*.h5")) and not (tmp_path.parent / "ESCAPE.h5").exists()


def test_check_sample_id() -> None:
    import pytest

    for good in ("S1", "LOT7-001", "a.b_c-D", "x" * 64):
        assert R.check_sample_id(good) == good
    for bad in ("", ".hidden", "-x", "a/b", "a b", "a..b", "x" * 65, "é", "a\x00b"):
        with pytest.raises(R.RecordingError):
            R.check_sample_id(bad)


def test_an_unanticipated_exception_exits_3_with_the_log_path(tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    import cli.model
    import main

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli.model, "cmd_model_info", broken)  # a command with a bug in it
    code = main.main(["--log-dir", str(tmp_path / "logs"), "model-info"])
    err = capsys.readouterr().err
    assert code == 3 and "internal error: ZeroDivisionError: a bug" in err
    assert str(tmp_path / "logs" / "station.log") in err
    assert "ZeroDivisionError" in (tmp_path / "logs" / "station.log").read_text()


def test_two_batches_in_the_same_second_keep_both_reports(tmp_path: Path) -> None:
    from cli.scan import _write_report
    from inspection import SampleResult

    results = [SampleResult("S1", "PASS", tmp_path / "S1.h5")]
    first, second = _write_report(tmp_path, results), _write_report(tmp_path, results)
    paths = {first["files"]["json"], second["files"]["json"]}
    assert len(paths) == 2 and all(json.loads(Path(p).read_text())["samples"] for p in paths)


def test_a_scan_killed_again_and_again_resumes_to_the_same_complete_recording(
        tmp_path: Path) -> None:
    """SIGKILL at moments spread over the sample (no chance to clean up), then resume, three
    times; every RoI written before a kill keeps its checksum, and the file always verifies."""
    import os
    import signal
    import time

    station = tmp_path / "station.toml"
    station.write_text(SMALL_STATION)
    path = tmp_path / "out" / "KILL.h5"
    base = [sys.executable, "main.py", "--log-dir", str(tmp_path / "logs"), "scan", "--config",
            str(station), "--sim", "--no-infer"]
    kept: dict[int, str] = {}
    # kill once the file has grown by this much since the round began (an RoI is ~1.2 MB
    # here), so the kills land inside RoI writes at different points, not in start-up
    for round_, growth in enumerate((1_700_000, 2_900_000, 600_000)):
        args = ["--out", str(tmp_path / "out"), "--sample-id", "KILL"] if round_ == 0 \
            else ["--resume", str(path)]
        start = path.stat().st_size if path.exists() else 0
        proc = subprocess.Popen(base + args, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and \
                (path.stat().st_size if path.exists() else 0) < start + growth:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        report = R.verify_recording(path)
        assert report.ok, report.summary()
        with R.Recording(path) as rec:
            now = {i: rec.roi(i).attrs["checksum"] for i in rec.roi_ids()}
        assert all(now.get(i) == c for i, c in kept.items()), "a kept RoI changed"
        kept = now
    assert len(kept) < 10, "no kill landed inside the scan: shorten the delays"
    proc_done = subprocess.run(base + ["--resume", str(path)], cwd=ROOT, capture_output=True,
                               text=True, timeout=600)
    assert proc_done.returncode == 0, proc_done.stderr
    report = R.verify_recording(path)
    assert report.ok and report.status == "complete" and len(report.rois_ok) == 10
    with R.Recording(path) as rec:
        assert all(rec.roi(i).attrs["checksum"] == c for i, c in kept.items())
