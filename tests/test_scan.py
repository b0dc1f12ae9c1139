"""Scan runner and inspection run on the simulated bench (real drivers over pseudo-terminals)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import recordings as R
from inspection import QUEUE_DEPTH, InspectionRun, RoiRecorded
from rig.camera import DroppedFrame, FrameTimeout
from rig.layout import roi_layout
from rig.rig import build_rig
from rig.scan import (
    DeviceReconnected,
    FrameCaptured,
    RoiCaptured,
    RoiRetake,
    RoiStarted,
    ScanError,
    ScanFinished,
    ScanPlan,
    ScanRunner,
)
from tests.conftest import fast_sim_config


def test_plan_is_data_from_config(sim_config) -> None:
    plan = ScanPlan.from_config(sim_config, "S1")
    assert len(plan.rois) == 10 and plan.states == (0, 1, 2, 3, 4, 5)
    assert plan.azimuths_deg == (0, 30, 60, 90, 120, 150)
    assert plan.trigger == "hardware" and plan.n_frames == 60
    only = ScanPlan.from_config(sim_config, "S1", only_rois=[3, 7])
    assert [r.index for r in only.rois] == [3, 7]


def test_roi_layout_covers_the_sample_with_overlap() -> None:
    cfg = fast_sim_config(size=512, camera={"width": 3504, "height": 3120})
    rois = roi_layout(cfg)
    assert len(rois) == 10
    pix = cfg.scan.pixel_size_mm
    # neighbours overlap by at least 256 px, the last RoIs reach the far edges of the glass
    cols = sorted({r.origin_px[1] for r in rois})
    rows = sorted({r.origin_px[0] for r in rois})
    assert cols[1] - cols[0] <= 3504 - 256 and all(b - a <= 3120 - 256
                                                   for a, b in zip(rows, rows[1:], strict=False))
    assert (cols[-1] + 3504) * pix >= 72.0 and (rows[-1] + 3120) * pix >= 150.0
    r = rois[3]
    x, y = r.to_sample_mm(100, 200)
    assert np.allclose(r.to_roi_px(x, y), (100, 200))


def test_runner_events_and_hardware_triggered_stacks(sim_config) -> None:
    events = []
    with build_rig(sim_config) as rig:
        rig.samples.load_virtual_sample(5)
        plan = ScanPlan.from_config(sim_config, "S1", only_rois=[0, 1])
        runner = ScanRunner(rig, plan)
        runner.subscribe(events.append)
        finished = runner.run()
        lights = rig.samples.state.snapshot().facet_levels
    assert finished.captured == (0, 1) and not finished.aborted and not finished.failed
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RoiStarted" and kinds[-1] == "ScanFinished"
    frames = [e for e in events if isinstance(e, FrameCaptured)]
    assert [f.state for f in frames] == [0, 1, 2, 3, 4, 5] * 2
    stacks = [e for e in events if isinstance(e, RoiCaptured)]
    assert stacks[0].stack.shape == (6, 512, 512) and stacks[0].stack.dtype == np.uint16
    assert len(set(stacks[0].frame_ids)) == 6
    assert max(lights) == 0  # lights off after the sequence


def test_abort_mid_scan_leaves_incomplete_recording_and_safe_rig(tmp_path: Path) -> None:
    cfg = fast_sim_config()
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(1)
        run = InspectionRun(cfg, rig, None, tmp_path, "ABORT-1")

        def on_event(event) -> None:
            if isinstance(event, RoiStarted) and event.roi.index == 3:
                run.abort()

        run.subscribe(on_event)
        result = run.run()
        assert max(rig.samples.state.snapshot().facet_levels) == 0
    assert result.verdict == "ABORTED"
    report = R.verify_recording(result.recording)
    assert report.ok and report.status == "incomplete" and report.rois_ok == [0, 1, 2]


def test_device_fault_mid_scan_then_resume_completes(tmp_path: Path) -> None:
    cfg = fast_sim_config(scan={"reconnect_s": 0.5})  # the camera does not come back in time
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(2)
        run = InspectionRun(cfg, rig, None, tmp_path, "FAULT-1")

        def on_event(event) -> None:  # the camera stops answering during RoI 4
            if isinstance(event, RoiStarted) and event.roi.index == 4:
                rig.camera.inject_fault("disconnect")

        run.subscribe(on_event)
        result = run.run()
        assert result.verdict == "INCOMPLETE" and "did not come back within" in result.error
    report = R.verify_recording(result.recording)
    assert report.ok and report.status == "incomplete" and report.rois_ok == [0, 1, 2, 3]

    with build_rig(cfg) as rig:  # a fresh rig, as after re-plugging the camera
        rig.samples.load_virtual_sample(2)
        resumed = InspectionRun(cfg, rig, None, tmp_path, "", resume=result.recording).run()
    assert resumed.verdict == "NOT-INSPECTED" and resumed.sample_id == "FAULT-1"
    report = R.verify_recording(result.recording)
    assert report.ok and report.status == "complete" and report.rois_ok == list(range(10))


def test_slow_recorder_applies_back_pressure(tmp_path: Path) -> None:
    """Capture may run at most the queue depth (+1 in hand) ahead of the recorder."""
    cfg = fast_sim_config()
    ahead = []
    captured = recorded = 0
    lock = threading.Lock()
    gate = threading.Event()

    def on_event(event) -> None:
        nonlocal captured, recorded
        with lock:
            if isinstance(event, RoiCaptured):
                captured += 1
                ahead.append(captured - recorded)
            elif isinstance(event, RoiRecorded):
                recorded += 1
                gate.wait(0.3)  # a slow disk

    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(3)
        run = InspectionRun(cfg, rig, None, tmp_path, "SLOW-1")
        run.subscribe(on_event)
        result = run.run()
    assert result.complete
    assert max(ahead) <= QUEUE_DEPTH + 1, ahead  # in the queue + in the recorder's hands


def test_pause_and_resume(sim_config, tmp_path: Path) -> None:
    events = []
    with build_rig(sim_config) as rig:
        rig.samples.load_virtual_sample(4)
        plan = ScanPlan.from_config(sim_config, "P", only_rois=[0, 1, 2])
        runner = ScanRunner(rig, plan)

        def on_event(event) -> None:
            events.append(event)
            if isinstance(event, RoiCaptured) and event.roi.index == 0:
                runner.pause()
                threading.Timer(0.3, runner.resume).start()

        runner.subscribe(on_event)
        finished = runner.run()
    assert isinstance(events[-1], ScanFinished) and finished.captured == (0, 1, 2)
    names = [type(e).__name__ for e in events]
    assert names.index("ScanPaused") < names.index("RoiStarted", 1)


def test_layout_png_and_overlap(tmp_path: Path) -> None:
    from rig.layout import draw_layout, grid_overlap_px

    cfg = fast_sim_config(camera={"width": 3504, "height": 3120})
    assert min(grid_overlap_px(roi_layout(cfg))) >= cfg.scan.min_overlap_px
    draw_layout(cfg, tmp_path / "layout.png")
    assert (tmp_path / "layout.png").read_bytes()[:4] == b"\x89PNG"


def test_pipelined_scan_never_exposes_while_moving_or_before_settle() -> None:
    """Real time: the next move starts once the last frame is exposed (it overlaps readout),
    and no exposure of any frame overlaps a motion or starts before the settle time."""
    cfg = fast_sim_config(realtime=True)
    triggers, captured_at = [], {}
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(6)
        bench = rig.samples.state
        bench.add_trigger_hook(lambda _state: triggers.append(bench.last_trigger))
        plan = ScanPlan.from_config(cfg, "PIPE", only_rois=[0, 1, 2, 3])
        runner = ScanRunner(rig, plan)
        runner.subscribe(lambda e: captured_at.setdefault(e.roi.index, time.monotonic())
                         if isinstance(e, RoiCaptured) else None)
        assert runner.run().captured == (0, 1, 2, 3)
        motions = [tuple(m) for m in bench.motion_log]
    exposure_s = cfg.camera.exposure_us * 1e-6
    assert len(triggers) == 24 and not any(t.stage_moving for t in triggers)
    for t in triggers:
        for start, end in motions:
            assert not (t.time < end and t.time + exposure_s > start), (t, start, end)
        ended = [end for _, end in motions if end <= t.time]
        assert ended and t.time - max(ended) >= cfg.stage.settle_s - 0.002
    # the move to the next RoI started before the previous RoI's last frame was read out
    starts = sorted(start for start, _ in motions)
    assert sum(any(captured_at[i] > s > triggers[6 * i + 5].time for s in starts)
               for i in range(3)) == 3


def test_a_dropped_or_late_frame_retakes_the_roi(sim_config) -> None:
    events = []
    with build_rig(sim_config) as rig:
        rig.samples.load_virtual_sample(7)
        plan = ScanPlan.from_config(sim_config, "DROP", only_rois=[0, 1, 2])
        runner = ScanRunner(rig, plan)

        def on_event(event) -> None:
            events.append(event)
            if isinstance(event, RoiStarted) and event.roi.index == 1:
                rig.camera.inject_fault("drop", after=5)  # its last frame never arrives
            if isinstance(event, RoiStarted) and event.roi.index == 2:
                # the board paces the stack, so the next frame reveals the gap in the ids
                rig.camera.inject_fault("drop", after=1)

        runner.subscribe(on_event)
        finished = runner.run()
    assert finished.captured == (0, 1, 2) and not finished.failed
    retakes = [e for e in events if isinstance(e, RoiRetake)]
    assert [(r.roi.index, type(r.error).__name__) for r in retakes] == [
        (1, "FrameTimeout"), (2, "DroppedFrame")]
    stacks = {e.roi.index: e for e in events if isinstance(e, RoiCaptured)}
    for s in stacks.values():  # every kept stack: six consecutive frames, states in order
        assert np.all(np.diff(s.frame_ids) == 1)
    assert [e.roi.index for e in events if isinstance(e, RoiCaptured)] == [0, 1, 2]


def test_a_frame_lost_twice_fails_the_scan_with_the_camera_error(sim_config) -> None:
    with build_rig(sim_config) as rig:
        rig.samples.load_virtual_sample(8)
        plan = ScanPlan.from_config(sim_config, "DROP2", only_rois=[0, 1])
        runner = ScanRunner(rig, plan)
        errors = []

        def on_event(event) -> None:
            if isinstance(event, RoiStarted) and event.roi.index == 1:
                rig.camera.inject_fault("drop", count=20)
            if isinstance(event, ScanError):
                errors.append(event)

        runner.subscribe(on_event)
        finished = runner.run()
    assert finished.failed and finished.captured == (0,)
    assert errors and errors[0].roi.index == 1
    assert isinstance(errors[0].error, (DroppedFrame, FrameTimeout))


def _scan_with_fault(tmp_path: Path, sample_id: str, fault, cfg=None):
    """A whole inspection run with `fault(rig)` done once, when RoI 4's second frame is in
    (mid-RoI); the events and the result."""
    cfg = cfg or fast_sim_config()
    events: list = []
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(2)
        run = InspectionRun(cfg, rig, None, tmp_path, sample_id)
        done = threading.Event()

        def on_event(event) -> None:
            events.append(event)
            if isinstance(event, FrameCaptured) and event.roi.index == 4 and not done.is_set() \
                    and event.state == 1:
                done.set()
                fault(rig)

        run.subscribe(on_event)
        result = run.run()
    return events, result


def _every_roi_once(events, result) -> None:
    assert result.complete and result.verdict == "NOT-INSPECTED", result.error
    captured = [e.roi.index for e in events if isinstance(e, RoiCaptured)]
    assert sorted(captured) == list(range(10)) and len(captured) == 10
    report = R.verify_recording(result.recording)
    assert report.ok and report.status == "complete" and report.rois_ok == list(range(10))


def test_camera_removed_mid_roi_is_reopened_and_the_roi_retaken(tmp_path: Path) -> None:
    def unplug_then_replug(rig) -> None:
        rig.camera.inject_fault("disconnect")
        threading.Timer(0.8, rig.camera.reconnect).start()  # the cable goes back in later

    events, result = _scan_with_fault(tmp_path, "CAM-LOST-1", unplug_then_replug)
    back = [e for e in events if isinstance(e, DeviceReconnected)]
    assert len(back) == 1 and back[0].device == "camera" and back[0].roi.index == 4
    assert back[0].downtime_s >= 0.7  # it waited for the cable, trying again with back-off
    assert any(isinstance(e, RoiRetake) and e.roi.index == 4 for e in events)
    _every_roi_once(events, result)


@pytest.mark.parametrize("device", ["stage", "light"])
def test_serial_adapter_unplugged_and_replugged_mid_roi(tmp_path: Path, device) -> None:
    """The USB adapter goes away and comes back on another pty; the driver finds it again
    under its stable by-id name, the board (which reset) is set up again, the RoI retaken."""
    paths = []

    def unplug_then_replug(rig) -> None:
        emu = rig.samples.emulators[0 if device == "stage" else 1]
        paths.append(emu.device_path)
        emu.disconnect()

        def replug() -> None:
            emu.replug()
            paths.append(emu.device_path)

        threading.Timer(0.5, replug).start()

    events, result = _scan_with_fault(tmp_path, f"{device.upper()}-LOST-1", unplug_then_replug)
    assert len(paths) == 2 and paths[0] != paths[1]  # re-enumerated as another device
    back = [e for e in events if isinstance(e, DeviceReconnected)]
    assert [e.device for e in back] == ["stage" if device == "stage" else "ring light"]
    _every_roi_once(events, result)


def test_live_pass_sample_lists_no_glass_edge_object(tmp_path: Path) -> None:
    """The glass outline scatters in every state; without the edge mask every sample listed
    it as 12-21 mm "contaminants" in the corner and side RoIs. With it, a clean sample is a
    PASS whose listed objects are specks, none lying on the outline."""
    from inference.detector import Detector
    from rig.layout import glass_edge_mask

    cfg = fast_sim_config(size=1024, sim={"scratch_fraction": 0.0})
    det = Detector.from_settings(cfg.detector, threads=2)
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(4)
        layout = {r.index: r for r in rig.layout}
        result = InspectionRun(cfg, rig, det, tmp_path, "EDGE-1").run()
    assert result.verdict == "PASS" and not result.scratches
    assert result.contaminants  # the specks are still listed
    for o in result.contaminants:
        roi = layout[o.roi]
        edge = glass_edge_mask(roi.origin_px, roi.size_px, roi.pixel_size_mm, cfg.sample,
                               cfg.detector.edge_band_mm)
        r0, c0, r1, c1 = o.box_px
        assert edge[r0:r1, c0:c1].mean() < 0.5, o
        assert o.length_mm < 2.0, o
