"""The camera interface on the simulated camera: triggering, timing, frame-id gap detection and
every injected fault. Small frames keep it fast; timing checks use real (short) exposures."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rig.camera import (
    AcquisitionSettings,
    CameraDisconnected,
    CameraError,
    DroppedFrame,
    FrameIdTracker,
    FrameTimeout,
    camera_class,
    open_camera,
)
from rig.cameras.sim import SimCamera, origin_px_for_stage, state_of_facets
from rig.config import parse_config
from rig.sim.bench_state import BenchState, facets_of_state

H, W = 64, 96
FAST = dict(width=W, height=H, exposure_us=2000.0, readout_s=0.003, timeout_margin_s=0.5)


def marker_renderer(req):
    """Encodes what the camera saw into the frame: [0,0] state+1 (0: none), [0,1] frame id,
    [0,2..3] origin; the rest is black level with one bright pixel per lit facet."""
    img = np.full(req.shape, 64, np.uint16)
    img[0, 0] = 0 if req.state is None else req.state + 1
    img[0, 1] = req.frame_id
    img[0, 2], img[0, 3] = (v % 4096 for v in req.origin_px)
    for f in req.lit_facets:
        img[1, f] = 4095
    return img


def light(bench: BenchState, state: int) -> None:
    levels = [0] * 12
    for f in facets_of_state(state):
        levels[f] = 255
    bench.set_lights(tuple(levels), state)


@pytest.fixture
def bench() -> BenchState:
    return BenchState()


@pytest.fixture
def cam(bench):
    c = SimCamera(bench=bench, renderer=marker_renderer)
    c.open()
    c.configure(AcquisitionSettings(trigger="software", **FAST))
    yield c
    c.close()


def test_software_trigger_reads_the_bench_at_the_trigger(cam, bench):
    cam.arm()
    for state in range(6):
        light(bench, state)
        cam.trigger()
        light(bench, (state + 1) % 6)  # the light changes after the trigger: must not matter
        f = cam.grab()
        assert f.frame_id == state and f.state == state
        assert f.image.dtype == np.uint16 and f.image.shape == (H, W)
        assert f.image[0, 0] == state + 1
        assert sorted(np.flatnonzero(f.image[1, :12] == 4095)) == list(facets_of_state(state))
        assert not f.image.flags.writeable
        assert f.meta["facet_levels"][state] == 255
    assert cam.stats.frames == 6 and not cam.stats.dropped_ids


def test_frame_takes_exposure_plus_readout(cam):
    cam.configure(exposure_us=30000.0, readout_s=0.02)
    cam.arm()
    t0 = time.monotonic()
    cam.trigger()
    cam.grab()
    assert time.monotonic() - t0 >= 0.05
    assert cam.frame_timeout_s == pytest.approx(0.03 + 0.02 + 0.5)


def test_dropped_frame_is_reported_not_replaced(cam):
    cam.arm(states=range(6))
    cam.trigger()
    assert cam.grab().frame_id == 0
    cam.inject_fault("drop")
    cam.trigger()  # id 1: lost in transfer
    cam.trigger()  # id 2
    with pytest.raises(DroppedFrame) as err:
        cam.grab()
    assert err.value.missing_ids == (1,)
    assert err.value.frame is not None and err.value.frame.frame_id == 2
    assert "missing ids [1]" in str(err.value)
    cam.trigger()
    assert cam.grab().frame_id == 3  # the stream goes on; nothing was substituted
    assert cam.stats.dropped_ids == [1]


def test_state_hint_from_armed_sequence_survives_a_drop():
    c = SimCamera(renderer=marker_renderer)  # no bench: the state comes from the sequence
    with c:
        c.configure(AcquisitionSettings(trigger="software", **FAST))
        c.arm(states=[0, 1, 2, 3, 4, 5])
        c.inject_fault("drop")
        for _ in range(3):
            c.trigger()
        with pytest.raises(DroppedFrame) as err:
            c.grab()
        assert err.value.frame.state == 1  # frame 1 is state 1 although frame 0 never came
        assert c.grab().state == 2


def test_failed_buffer(cam):
    cam.arm()
    cam.inject_fault("fail")
    cam.trigger()
    with pytest.raises(DroppedFrame) as err:
        cam.grab()
    assert err.value.missing_ids == (0,) and err.value.frame is None
    cam.trigger()
    assert cam.grab().frame_id == 1


def test_stalled_frame_times_out_then_arrives_late(cam):
    cam.arm()
    cam.inject_fault("stall", stall_s=0.3)
    cam.trigger()
    with pytest.raises(FrameTimeout, match="no frame within 0.100 s"):
        cam.grab(timeout=0.1)
    assert cam.grab(timeout=1.0).frame_id == 0
    assert cam.stats.timeouts == 1


def test_disconnect_wakes_a_waiting_grab_and_needs_a_reopen(cam):
    cam.arm()
    threading.Timer(0.05, cam.inject_fault, args=("disconnect",)).start()
    t0 = time.monotonic()
    with pytest.raises(CameraDisconnected):
        cam.grab(timeout=2.0)
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(CameraDisconnected):
        cam.trigger()
    cam.close()
    with pytest.raises(CameraError):
        cam.open()
    cam.reconnect()
    cam.open()
    cam.configure(AcquisitionSettings(trigger="software", **FAST))
    cam.arm()
    cam.trigger()
    assert cam.grab().frame_id == 0


def test_hardware_trigger_from_the_ring_light(bench):
    """The ring light's trigger output (bench.fire_trigger) exposes frames; each frame shows
    the facets lit at its trigger and carries the ring light's state index."""
    with SimCamera(bench=bench, renderer=marker_renderer) as cam:
        cam.configure(AcquisitionSettings(trigger="hardware", **FAST))
        bench.fire_trigger(0)  # not armed: ignored, like a real camera
        cam.arm()
        with pytest.raises(CameraError, match="software trigger while the trigger source"):
            cam.trigger()
        for step, state in enumerate((3, 4, 5, 0, 1, 2)):
            light(bench, state)
            bench.fire_trigger(state, step=step, sequence_length=6)
        frames = [cam.grab() for _ in range(6)]
        assert [f.state for f in frames] == [3, 4, 5, 0, 1, 2]
        assert [int(f.image[0, 0]) - 1 for f in frames] == [3, 4, 5, 0, 1, 2]
        assert [f.frame_id for f in frames] == list(range(6))
        with pytest.raises(FrameTimeout, match="Line1"):
            cam.grab(timeout=0.05)
        cam.disarm()
        bench.fire_trigger(0)  # unsubscribed on disarm
        assert not bench._hooks


def test_stage_position_picks_the_sample_region(bench):
    from rig.config import load_config
    from rig.layout import roi_layout

    cfg = load_config("sim")
    roi = roi_layout(cfg)[7]
    shape = (cfg.camera.height, cfg.camera.width)
    assert origin_px_for_stage(roi.stage_xy_mm, shape, cfg.stage.sample_origin_mm,
                               cfg.scan.pixel_size_mm) == roi.origin_px
    bench.set_stage(*roi.stage_xy_mm)
    with SimCamera(bench=bench, renderer=marker_renderer, realtime=False,
                   sample_origin_mm=cfg.stage.sample_origin_mm) as cam:
        cam.configure(AcquisitionSettings(trigger="software", **FAST))
        cam.arm()
        cam.trigger()
        f = cam.grab()
        assert f.meta["stage_xy_mm"] == roi.stage_xy_mm
        assert f.meta["origin_px"] == origin_px_for_stage(roi.stage_xy_mm, (H, W),
                                                          cfg.stage.sample_origin_mm,
                                                          cfg.scan.pixel_size_mm)
        assert all(v % 2 == 0 for v in f.meta["origin_px"])


def test_open_camera_from_station_config(bench):
    cfg = parse_config({"camera": {"backend": "sim", "width": W, "height": H,
                                   "exposure_us": 1000.0, "trigger": "software",
                                   "readout_s": 0.001}})
    with open_camera(cfg.camera, bench=bench, renderer=marker_renderer) as cam:
        assert cam.is_open and cam.settings.width == W and cam.settings.trigger == "software"
        assert cam.frame_timeout_s == pytest.approx(0.001 + 0.001 + 1.0)
        light(bench, 2)
        cam.arm()
        frames = cam.grab_sequence(3)
        assert [f.state for f in frames] == [2, 2, 2]
    assert not cam.is_open
    with pytest.raises(CameraError, match="unknown camera backend"):
        camera_class("gige")


def test_settings_the_sim_camera_refuses(cam):
    with pytest.raises(CameraError, match="pixel format Mono8"):
        cam.configure(pixel_format="Mono8")
    with pytest.raises(CameraError, match="configure.. before arm"):
        cam.arm()  # a failed configure leaves the device in an unknown state
    cam.configure(AcquisitionSettings(trigger="software", **FAST))
    cam.arm()
    with pytest.raises(CameraError, match="disarm before"):
        cam.configure(exposure_us=1000.0)
    with pytest.raises(ValueError, match="even"):
        AcquisitionSettings(width=101)


def test_frame_id_tracker():
    t = FrameIdTracker(first_id=0)
    assert t.check(0) == [] and t.check(1) == [] and t.check(4) == [2, 3]
    with pytest.raises(CameraError, match="backwards"):
        t.check(2)
    t = FrameIdTracker()
    assert t.check(17) == [] and t.slot(19) == 2
    assert FrameIdTracker(first_id=1).check(3) == [1, 2]


def test_state_of_facets():
    assert state_of_facets([2, 8]) == 2
    assert state_of_facets([2]) is None and state_of_facets([]) is None
    assert state_of_facets([0, 6, 1]) is None


def test_renders_the_optics_model_for_each_lit_state(bench):
    """Default renderer: the optics model of the glass on the stage, at the stage position, for
    the state the ring light lit at each trigger (bit-exact against rendering it directly)."""
    optics = pytest.importorskip("world.optics")
    from world.sample import make_sample

    sample = make_sample(5)
    w, h = 384, 256
    bench.set_stage(20.0 + 30.0, 20.0 + 60.0)  # sample point (30, 60) mm on the optical axis
    with SimCamera(bench=bench, sample=sample, realtime=False) as cam:
        cam.configure(AcquisitionSettings(trigger="hardware", width=w, height=h))
        cam.arm()
        for k in range(6):
            light(bench, k)
            bench.fire_trigger(k, step=k, sequence_length=6)
        frames = [cam.grab() for _ in range(6)]
    origin = frames[0].meta["origin_px"]
    assert origin == origin_px_for_stage((50.0, 80.0), (h, w), (20.0, 20.0), 0.0114)
    r = optics.get_renderer(sample, (w, h), 0.0114)
    for k, f in enumerate(frames):
        assert f.state == k
        assert np.array_equal(f.image, r.render(origin, k, frame_counter=k,
                                                exposure_us=20000.0))
    assert not np.array_equal(frames[0].image, frames[3].image)


def test_render_ahead_frames_are_the_frames_the_trigger_would_render(bench):
    """A move announces its target; the camera renders the next stack there in the background
    (frame ids of the next arm, levels last seen per state). At the triggers those frames are
    used, bit-identical to rendering on demand; a stack somewhere else is rendered on demand."""
    optics = pytest.importorskip("world.optics")
    from world.sample import make_sample

    sample = make_sample(5)
    w, h = 384, 256

    def take_stack(cam) -> list:
        cam.arm()
        for k in range(6):
            light(bench, k)
            bench.fire_trigger(k, step=k, sequence_length=6)
        frames = [cam.grab() for _ in range(6)]
        cam.disarm()
        return frames

    with SimCamera(bench=bench, sample=sample, realtime=False) as cam:
        cam.configure(AcquisitionSettings(trigger="hardware", width=w, height=h))
        bench.set_stage(50.0, 80.0)
        take_stack(cam)  # the states' levels are seen once
        assert cam.ahead_hits == 0
        bench.announce_target(52.0, 81.0)
        deadline = time.monotonic() + 20
        while len(cam._ahead) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        bench.set_stage(52.0, 81.0)
        ahead = take_stack(cam)
        assert cam.ahead_hits == 6
        bench.announce_target(60.0, 90.0)  # announced, but the stage stops elsewhere
        bench.set_stage(61.0, 91.0)
        elsewhere = take_stack(cam)
        assert cam.ahead_hits == 6
    r = optics.get_renderer(sample, (w, h), 0.0114)
    for frames in (ahead, elsewhere):
        origin = frames[0].meta["origin_px"]
        for k, f in enumerate(frames):
            assert np.array_equal(f.image, r.render(origin, k, frame_counter=k,
                                                    exposure_us=20000.0))


def test_free_running_live_view_and_overrun():
    with SimCamera(renderer=marker_renderer) as cam:
        cam.configure(AcquisitionSettings(trigger="off", **{**FAST, "exposure_us": 20000.0,
                                                            "readout_s": 0.01}))
        cam.arm()  # a frame every 30 ms, 4 buffers: 120 ms of slack for a busy test machine
        ids = [cam.grab().frame_id for _ in range(3)]
        assert ids == [0, 1, 2]
        time.sleep(0.4)  # nobody fetches: the small buffer pool overruns
        with pytest.raises(DroppedFrame) as err:
            for _ in range(10):
                cam.grab()
        assert err.value.missing_ids and err.value.frame is not None
        cam.disarm()


def test_ring_light_emulator_triggers_the_camera(bench):
    """Hardware-style triggering end to end: the ring-light emulator, driven over its pseudo-
    terminal, lights each state and pulses its trigger output; the camera exposes on that pulse
    and each frame shows the facets of its own state."""
    serial = pytest.importorskip("serial")
    emulator_mod = pytest.importorskip("rig.sim.ringlight_emulator")
    from rig.ringlight_protocol import EventLine, OkReply, parse_reply

    emu = emulator_mod.RingLightEmulator(bench, boot_delay_s=0.0, time_scale=0.2)
    port = emu.start()
    try:
        with SimCamera(bench=bench, renderer=marker_renderer) as cam, \
                serial.Serial(port, 115200, timeout=2.0) as link:
            cam.configure(AcquisitionSettings(trigger="hardware", **FAST))
            cam.arm(states=range(6))

            def read_until(wanted) -> object:
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    reply = parse_reply(link.readline())
                    if wanted(reply):
                        return reply
                    assert reply is None or isinstance(reply, EventLine), reply
                raise AssertionError("no reply from the ring-light emulator")

            def command(text: str) -> None:
                link.write(text.encode() + b"\n")
                read_until(lambda r: isinstance(r, OkReply) and r.command == text.split()[0])

            read_until(lambda r: isinstance(r, EventLine) and r.name == "READY")  # DTR reset
            command("ARM 6 0 1 2 3 4 5")
            frames = []
            for _ in range(6):
                command("TRIG")
                frames.append(cam.grab())
                while emu.status().mode == "BUSY":  # the step's hold time
                    time.sleep(0.002)
            command("OFF")
    finally:
        emu.stop()
    assert [f.state for f in frames] == [0, 1, 2, 3, 4, 5]
    assert [f.frame_id for f in frames] == list(range(6))
    for k, f in enumerate(frames):
        assert f.image[0, 0] == k + 1
        assert sorted(np.flatnonzero(f.image[1, :12] == 4095)) == list(facets_of_state(k))


def test_features_from_the_config_reach_the_simulated_node_map(bench):
    from rig.camera import CameraError, FeatureNotSupported

    cfg = parse_config({"camera": {"width": 64, "height": 64, "trigger": "software",
                                   "heartbeat_timeout_ms": 5000,
                                   "features": {"BlackLevel": 60.0}}})
    s = AcquisitionSettings.from_config(cfg.camera)
    assert s.features == (("GevHeartbeatTimeout", 5000), ("BlackLevel", 60.0))
    c = SimCamera(bench=bench, renderer=marker_renderer)
    with c:
        c.configure(s)
        assert c.nodes["GevHeartbeatTimeout"] == 5000 and c.nodes["BlackLevel"] == 60.0
        with pytest.raises(FeatureNotSupported, match="Gamma.*writable nodes"):
            c.configure(features=(("Gamma", 1.0),))
        with pytest.raises(CameraError, match="SensorWidth is read-only"):
            c.configure(features=(("SensorWidth", 10),))
        with pytest.raises(CameraError, match="GevSCPD takes a int"):
            c.configure(features=(("GevSCPD", "fast"),))
