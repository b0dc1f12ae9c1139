"""The pylon backend through Basler's camera emulator shipped in pypylon (PYLON_CAMEMU=1):
BayerGR12, exposure / gain / trigger settings, a full-resolution 6-state acquisition of rendered
frames served through the emulator's ImageFilename feature, and the fault paths."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rig.camera import (
    AcquisitionSettings,
    CameraError,
    CameraNotFound,
    DroppedFrame,
    FeatureNotSupported,
    FrameTimeout,
    open_camera,
)
from rig.config import parse_config

try:
    from pypylon import pylon  # noqa: F401

    PYLON_ERROR = ""
except Exception as exc:  # ImportError, or the native libraries failing to load
    PYLON_ERROR = f"pypylon cannot load: {exc}"

pytestmark = pytest.mark.skipif(bool(PYLON_ERROR), reason=PYLON_ERROR or "-")

EMU_SERIAL = "0815-0000"
SMALL = dict(width=96, height=64, exposure_us=1000.0, readout_s=0.01, timeout_margin_s=1.0)


@pytest.fixture(autouse=True)
def emulator(monkeypatch):
    monkeypatch.setenv("PYLON_CAMEMU", "1")


@pytest.fixture
def cam():
    from rig.cameras.pylon import PylonCamera

    c = PylonCamera(serial=EMU_SERIAL)
    c.open()
    yield c
    c.close()


def rendered_stack(h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Six dark-field-like RAW frames using the whole 12-bit range (black level, noise, a
    state-dependent streak, a saturated dot), each different."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(6):
        f = rng.integers(58, 71, (h, w), dtype=np.uint16)
        f[h // 2, (k * w) // 6:((k + 1) * w) // 6] = 800 * (k + 1) // 2
        f[10, 10], f[11, 11], f[0, 0] = 4095, 1, k
        frames.append(f)
    return frames


def test_lists_the_emulator():
    from rig.camera import list_cameras

    cams = list_cameras("pylon")
    assert any(c.serial == EMU_SERIAL and c.extra["device_class"] == "BaslerCamEmu"
               for c in cams)


def test_configures_bayergr12_exposure_gain_trigger(cam):
    s = cam.configure(AcquisitionSettings(exposure_us=12345.0, gain_db=6.0, trigger="software"))
    nm = cam._cam  # read back through pylon, not through our own bookkeeping
    assert nm.PixelFormat.Value == "BayerGR12"
    assert (nm.Width.Value, nm.Height.Value) == (3504, 3120)
    assert nm.ExposureTime.Value == pytest.approx(12345.0)
    assert nm.Gain.Value == pytest.approx(6.0, abs=0.1)
    assert (nm.TriggerSelector.Value, nm.TriggerMode.Value, nm.TriggerSource.Value) == \
        ("FrameStart", "On", "Software")
    assert s.frame_timeout_s == pytest.approx(0.012345 + 0.06 + 1.0)
    cam.configure(trigger="hardware")
    assert nm.TriggerSource.Value == "Line1"
    with pytest.raises(FeatureNotSupported, match="pixel format BayerGR11"):
        cam.configure(pixel_format="BayerGR11")
    with pytest.raises(FeatureNotSupported, match="Width 5000"):
        cam.configure(pixel_format="BayerGR12", width=5000)


def test_full_acquisition_of_rendered_frames_through_pypylon(cam, capsys):
    """3504 x 3120 BayerGR12: files written, served by the emulator, grabbed with software
    triggers; every pixel of every state comes back exactly, with ids and state hints."""
    h, w = 3120, 3504
    stack = rendered_stack(h, w)
    cam.configure(AcquisitionSettings(width=w, height=h, exposure_us=5000.0, trigger="software"))
    t0 = time.perf_counter()
    cam.serve_frames(stack)
    t_serve = time.perf_counter() - t0
    cam.arm(states=range(6))
    t0 = time.perf_counter()
    frames = cam.grab_sequence(6)
    t_grab = time.perf_counter() - t0
    for k, f in enumerate(frames):
        assert f.frame_id == k and f.state == k
        assert f.image.dtype == np.uint16 and f.image.shape == (h, w)
        assert np.array_equal(f.image, stack[k]), f"state {k} differs"
    with capsys.disabled():
        print(f"\n  pylon emulator, 3504x3120 BayerGR12, exposure 5 ms: serve 6 frames "
              f"{t_serve:.2f} s, grab {6 / t_grab:.1f} frames/s")


def test_new_batch_rearms_and_restarts_ids(cam):
    cam.configure(AcquisitionSettings(trigger="software", **SMALL))
    a, b = rendered_stack(64, 96, 1), rendered_stack(64, 96, 2)
    cam.serve_frames(a[:2])
    cam.arm(states=[4, 5])
    f0, f1 = cam.grab_sequence(2)
    assert (f0.state, f1.state) == (4, 5)
    cam.serve_frames(b[:3])  # while armed
    assert cam.is_armed
    got = cam.grab_sequence(3)
    assert [f.frame_id for f in got] == [0, 1, 2]
    assert all(np.array_equal(g.image, e) for g, e in zip(got, b[:3], strict=True))
    with pytest.raises(ValueError, match="shape"):
        cam.serve_frames([np.zeros((10, 10), np.uint16)])
    with pytest.raises(ValueError, match="exceeds 12-bit"):
        cam.serve_frames([np.full((64, 96), 4096, np.uint16)])


def test_failed_buffer_is_a_dropped_frame(cam):
    cam.configure(AcquisitionSettings(trigger="software", **SMALL))
    cam.serve_frames(rendered_stack(64, 96))
    cam.arm()
    cam.trigger()
    assert cam.grab().frame_id == 0
    cam.force_failed_buffers(1)
    cam.trigger()
    with pytest.raises(DroppedFrame, match="frame 1 failed in transfer") as err:
        cam.grab()
    assert err.value.missing_ids == (1,)
    cam.trigger()
    assert cam.grab().frame_id == 2
    assert cam.stats.dropped_ids == [1]


def test_timeouts_software_and_hardware(cam):
    cam.configure(AcquisitionSettings(trigger="software", **SMALL))
    cam.arm()
    with pytest.raises(FrameTimeout, match="no frame within 0.050 s"):
        cam.grab(timeout=0.05)  # never triggered
    cam.disarm()
    cam.configure(trigger="hardware")  # Line1: nothing pulses it on the emulator
    cam.arm()
    t0 = time.monotonic()
    with pytest.raises(FrameTimeout, match="Line1"):
        cam.grab(timeout=0.1)
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(CameraError, match="software trigger while"):
        cam.trigger()


def test_wrong_size_file_is_an_error(cam, tmp_path):
    from rig.cameras.pylon import write_emulator_frames

    cam.configure(AcquisitionSettings(trigger="software", **SMALL))
    write_emulator_frames(tmp_path, [np.zeros((32, 48), np.uint16)])
    cam.use_image_folder(tmp_path)
    cam.arm()
    cam.trigger()
    with pytest.raises(CameraError, match="has shape"):
        cam.grab()


def test_open_camera_from_config_and_not_found():
    cfg = parse_config({"camera": {"backend": "pylon", "serial": EMU_SERIAL,
                                   "trigger": "software", "exposure_us": 1000.0}})
    with open_camera(cfg.camera) as cam:
        assert cam.info.serial == EMU_SERIAL and cam.is_emulator
        assert cam.settings.pixel_format == "BayerGR12"
    bad = parse_config({"camera": {"backend": "pylon", "serial": "12345678"}})
    with pytest.raises(CameraNotFound, match="no pylon camera with serial 12345678"):
        open_camera(bad.camera)


def test_transport_settings_and_features_reach_the_node_map():
    cfg = parse_config({"camera": {
        "backend": "pylon", "serial": EMU_SERIAL, "width": 96, "height": 64,
        "trigger": "software", "packet_size_bytes": 1500, "throughput_limit_bytes_s": 90_000_000,
        "features": {"BlackLevel": 32.0, "TestImageSelector": "Testimage2"}}})
    cam = open_camera(cfg.camera)
    try:
        nm = cam._cam.GetNodeMap()
        assert nm.GetNode("GevSCPSPacketSize").GetValue() == 1500
        assert nm.GetNode("DeviceLinkThroughputLimitMode").ToString() == "On"
        assert nm.GetNode("DeviceLinkThroughputLimit").GetValue() == 90_000_000
        assert nm.GetNode("BlackLevel").GetValue() == 32.0
        assert nm.GetNode("TestImageSelector").ToString() == "Testimage2"
        with pytest.raises(FeatureNotSupported, match="NoSuchNode.*no such node"):
            cam.configure(features=(("NoSuchNode", 1),))
        with pytest.raises(CameraError, match="DeviceModelName is read-only"):
            cam.configure(features=(("DeviceModelName", "x"),))
        with pytest.raises(CameraError, match="BlackLevel = 'dark' failed"):
            cam.configure(features=(("BlackLevel", "dark"),))
        # the emulator is no GigE device: a heartbeat setting is refused by name
        with pytest.raises(FeatureNotSupported, match="GevHeartbeatTimeout"):
            cam.configure(features=(("GevHeartbeatTimeout", 3000),))
    finally:
        cam.close()


def test_stream_failure_is_a_lost_link_and_a_reopen_recovers(cam):
    from rig.camera import CameraDisconnected

    cam.configure(AcquisitionSettings(trigger="software", **SMALL))
    cam.arm()
    cam.impose_stream_error("link down")
    with pytest.raises(CameraDisconnected, match="frame stream failed.*link down"):
        cam.grab_sequence(1)
    settings = cam.settings
    cam.close()
    cam.open()
    cam.configure(settings)
    cam.arm()
    assert cam.grab_sequence(2)[1].shape == (64, 96)


def test_scan_with_the_pylon_emulator_survives_a_stream_failure_mid_roi(tmp_path):
    """The whole station with Basler's emulator as its camera (software trigger; the stage and
    ring light emulated on pseudo-terminals): the stream fails during RoI 4, the camera is
    reopened with its settings, RoI 4 is taken again, the recording verifies."""
    import recordings as R
    from inspection import InspectionRun
    from rig.rig import build_rig
    from rig.scan import DeviceReconnected, FrameCaptured
    from tests.conftest import fast_sim_config

    cfg = fast_sim_config(size=96, camera={"backend": "pylon", "serial": EMU_SERIAL,
                                           "height": 64, "trigger": "software",
                                           "exposure_us": 1000.0, "readout_s": 0.01})
    events = []
    with build_rig(cfg) as rig:
        run = InspectionRun(cfg, rig, None, tmp_path, "PYLON-LOST-1")

        def on_event(event) -> None:
            events.append(event)
            if isinstance(event, FrameCaptured) and event.roi.index == 4 and event.state == 1 \
                    and not any(isinstance(e, DeviceReconnected) for e in events):
                rig.camera.impose_stream_error("heartbeat timeout")

        run.subscribe(on_event)
        result = run.run()
    assert result.complete, result.error
    assert [e.device for e in events if isinstance(e, DeviceReconnected)] == ["camera"]
    report = R.verify_recording(result.recording)
    assert report.ok and report.rois_ok == list(range(10))
