"""The operator window's view model, driven by inspection events without Qt."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gui.view_model import RecordingSummary, StationView
from inspection import RoiDetected, RoiRecorded, SampleResult
from recordings import DetectedObject
from rig.camera import FrameTimeout
from rig.config import parse_config
from rig.layout import roi_layout
from rig.scan import (
    FrameCaptured,
    RoiCaptured,
    RoiRetake,
    RoiStarted,
    ScanError,
    ScanFinished,
    ScanPaused,
)


@pytest.fixture
def view():
    cfg = parse_config({})
    rois = {r.index: r for r in roi_layout(cfg)}
    v = StationView(rois, (cfg.sample.width_mm, cfg.sample.length_mm, 3.0))
    v.has_detector = True
    return v


def obj(roi, score=0.9):
    return DetectedObject(roi, (10, 10, 20, 60), 1.0, 2.0, 0.5, 2.0, score)


def capture(view, roi, scratches=(), contaminants=()):
    """The events of one RoI: started, 6 frames, captured, recorded, detected."""
    updates = [view.on_event(RoiStarted(roi, roi.index, len(view.rois)))]
    for k in range(6):
        updates.append(view.on_event(FrameCaptured(roi, k, roi.index * 6 + k, np.zeros((2, 2)))))
    updates.append(view.on_event(RoiCaptured(roi, np.zeros((6, 2, 2)), roi.stage_xy_mm,
                                             (0.0,) * 6, tuple(range(6)), 1.0, 1.0)))
    updates.append(view.on_event(RoiRecorded(roi, Path("s.h5"), 0.1)))
    updates.append(view.on_event(RoiDetected(roi, list(scratches), list(contaminants),
                                             np.zeros((4, 4), np.float32))))
    return updates


def result(sample_id, verdict, scratches=(), contaminants=(), error=""):
    return SampleResult(sample_id, verdict, Path(f"{sample_id}.h5"), list(scratches),
                        list(contaminants), {"total": 12.5}, error)


def test_the_view_model_imports_no_qt():
    code = ("import sys, gui.view_model; "
            "print(any(m.split('.')[0] in ('PySide6', 'pyqtgraph') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_a_scanned_sample_goes_through_its_states_to_a_verdict(view):
    rois = list(view.rois.values())
    u = view.begin_sample("S1", Path("S1.h5"))
    assert u.banner and view.shown is view.live and view.shown.banner.state == "SCANNING"
    ups = capture(view, rois[0], scratches=[obj(0)])
    assert ups[0].roi_states == {0: "capturing"} and view.live.capturing == 0
    assert ups[1].frame == (0, 0) and "state 0 (0°/180°)" in ups[1].status["lights"]
    assert ups[7].roi_states == {0: "captured"} and view.live.recorded == {0}
    assert ups[1].status["stage"].endswith("RoI 00: capturing")  # not "moving" any more
    assert "RoI 00 written" in ups[8].status["recording"]
    last = ups[9]
    assert last.roi_states == {0: "scratch"} and last.objects and last.detected is not None
    assert view.progress.done == 1 and view.progress.total == len(rois)
    assert view.progress.text == "1/10 RoIs captured · 1/10 inspected"
    assert view.shown.banner.detail == "SCRATCH FOUND so far: 1 scratch(es) · 0 contaminant(s)"
    assert view.shown.objects_note  # per-RoI objects until merged
    capture(view, rois[1], contaminants=[obj(1), obj(1)])
    assert view.live.states[1] == "clean"

    merged = result("S1", "FAIL", [obj(0)], [obj(1)])
    u = view.finish(merged, None)
    assert view.live.banner.state == "FAIL" and not view.scanning
    assert view.shown.objects() == ([obj(0)], [obj(1)]) and not view.shown.objects_note
    assert all(view.live.states[i] == ("scratch" if i == 0 else "clean") for i in view.rois)
    assert u.history.verdict == "FAIL" and u.history.cycle_s == 12.5
    assert view.last_result is merged and u.message.startswith("S1")
    assert view.history.summary() == "shift: 1 samples · 0 PASS · 1 FAIL, mean cycle 12.5 s"


def test_pause_shows_as_paused_and_resume_as_scanning(view):
    view.begin_sample("S2", Path("S2.h5"))
    u = view.on_event(ScanPaused(True))
    assert u.banner and view.shown.banner.state == "PAUSED" and view.progress.text == "paused"
    capture(view, next(iter(view.rois.values())))  # the RoI in progress finishes while paused
    assert view.shown.banner.state == "PAUSED"
    view.on_event(ScanPaused(False))
    assert view.shown.banner.state == "SCANNING"


def test_abort_says_aborting_until_the_run_ends_then_aborted_and_pending_rois(view):
    rois = list(view.rois.values())
    view.begin_sample("S3", Path("S3.h5"))
    capture(view, rois[0], contaminants=[obj(0)])
    view.on_event(RoiStarted(rois[1], 1, len(rois)))
    u = view.request_abort()
    assert u.banner and view.shown.banner.state == "ABORTING"
    view.on_event(ScanPaused(True))  # a pause arriving while aborting does not hide it
    assert view.shown.banner.state == "ABORTING"
    view.on_event(ScanFinished((0,), aborted=True, failed=False, elapsed_s=3.0))
    view.finish(result("S3", "ABORTED", contaminants=[obj(0)]), None)
    b = view.shown.banner
    assert b.state == "ABORTED" and "start sample S3 again" in b.detail
    assert "0 scratch(es) · 1 contaminant(s)" in b.detail  # the counts match the table
    assert view.live.states[1] == "pending" and view.live.states[0] == "clean"
    assert view.shown.objects() == ([], [obj(0)])  # what was inspected stays listed
    assert view.request_abort().banner is False  # nothing to abort any more


def test_errors_reach_the_operator_and_mark_the_roi(view):
    rois = list(view.rois.values())
    view.begin_sample("S4", Path("S4.h5"))
    view.on_event(RoiStarted(rois[0], 0, len(rois)))
    u = view.on_event(RoiRetake(rois[0], 1, FrameTimeout("no frame within 1.1 s")))
    assert "Taking its stack again (retake 1)" in u.status["camera"] and u.error is None
    u = view.on_event(ScanError(rois[0], TimeoutError("no frame")))
    assert u.roi_states == {0: "error"} and isinstance(u.error, TimeoutError)
    view.on_event(RoiStarted(rois[1], 1, len(rois)))  # the next RoI, then the camera goes
    u = view.finish(None, RuntimeError("camera gone"))
    assert view.shown.banner.state == "ERROR" and isinstance(u.error, RuntimeError)
    assert u.roi_states == {1: "pending"} and "capturing" not in view.shown.states.values()
    assert u.history is None  # no result, no history row
    v2 = StationView(view.rois, view.sample_mm)
    v2.begin_sample("S5", Path("S5.h5"))
    u = v2.preparation_failed(OSError("no sample loaded"))
    assert v2.shown.banner.state == "ERROR" and not v2.scanning and u.error is not None


def test_a_replay_keeps_the_live_sample_going_in_the_background(view):
    rois = list(view.rois.values())
    view.begin_sample("LIVE", Path("LIVE.h5"))
    summary = RecordingSummary(Path("old.h5"), "OLD", "partial", len(rois), [0, 1], rois,
                               view.sample_mm, verdict="", scratches=[], contaminants=[])
    view.show_replay(summary)
    assert view.shown.sample_id == "OLD" and view.shown.banner.state == "REPLAY"
    assert view.shown.banner.detail.startswith("recorded verdict INCOMPLETE · old.h5")
    assert view.shown.states[0] == "recorded" and view.shown.states[2] == "pending"
    u = capture(view, rois[0], scratches=[obj(0)])[-1]
    assert u.roi_states == {} and not u.objects and not u.banner  # the replay stays on screen
    assert view.live.states[0] == "scratch"
    view.back_to_live()
    assert view.shown is view.live and view.shown.banner.detail.startswith("SCRATCH FOUND so far: 1 scratch")
    done = RecordingSummary(Path("f.h5"), "F", "complete", len(rois), [0], rois,
                            view.sample_mm, verdict="FAIL", scratches=[obj(0)])
    view.show_replay(done)
    assert view.shown.banner.state == "REPLAY" and view.shown.states[0] == "scratch"
    assert view.shown.banner.detail.startswith("recorded verdict FAIL")


def test_without_a_detector_rois_are_recorded_and_the_verdict_says_so(view):
    view.has_detector = False
    roi = next(iter(view.rois.values()))
    view.begin_sample("S6", Path("S6.h5"))
    ups = capture(view, roi)[:-1]  # no detector, no RoiDetected
    assert ups[-2].roi_states == {0: "recorded"}
    view.finish(result("S6", "NOT-INSPECTED"), None)
    assert "no detector loaded" in view.shown.banner.detail
    assert view.history.summary() == "shift: 1 samples · 0 PASS · 0 FAIL · 1 other"


def test_progress_ends_when_the_last_detection_does(view):
    """Captured is not finished: with a detector the bar reaches 10/10 only once the last
    RoI is inspected (it used to sit at 10/10 while detection ran)."""
    rois = list(view.rois.values())
    view.begin_sample("S2", Path("S2.h5"))
    for roi in rois:
        view.on_event(RoiStarted(roi, roi.index, len(rois)))
        view.on_event(RoiCaptured(roi, np.zeros((6, 2, 2)), roi.stage_xy_mm, (0.0,) * 6,
                                  tuple(range(6)), 1.0, 1.0))
    assert view.progress.done == 0
    assert view.progress.text == "10/10 RoIs captured · 0/10 inspected"
    for roi in rois[:9]:
        view.on_event(RoiDetected(roi, [], [], np.zeros((4, 4), np.float32)))
    assert view.progress.done == 9 and view.progress.text.endswith("9/10 inspected")
    view.has_detector = False  # a scan without a detector counts what is recorded
    view.on_event(RoiCaptured(rois[0], np.zeros((6, 2, 2)), rois[0].stage_xy_mm, (0.0,) * 6,
                              tuple(range(6)), 1.0, 1.0))
    assert view.progress.done == 10 and view.progress.text == "10/10 RoIs captured"
