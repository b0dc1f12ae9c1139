"""The harvesters backend through the viky.cti GenTL producer bundled with the `genicam`
package: enumeration, acquisition with frame ids, and clear errors for every feature the
producer lacks (BayerGR12, exposure, gain, triggers)."""

from __future__ import annotations

import pytest

from rig.camera import (
    AcquisitionSettings,
    CameraError,
    CameraNotFound,
    FeatureNotSupported,
    FrameTimeout,
    list_cameras,
    open_camera,
)
from rig.config import parse_config

try:
    import harvesters.core  # noqa: F401

    from rig.cameras.genicam import GenicamCamera, bundled_producer, find_producers

    VIKY = bundled_producer()
    SKIP = "" if VIKY else "the genicam package ships no viky.cti"
except Exception as exc:  # ImportError or a native library failing to load
    VIKY, SKIP = None, f"harvesters / genicam cannot load: {exc}"

pytestmark = pytest.mark.skipif(bool(SKIP), reason=SKIP or "-")

# What viky can do: Mono8, free running, no exposure / gain / trigger features.
VIKY_OK = AcquisitionSettings(pixel_format="Mono8", width=320, height=240, exposure_us=None,
                              gain_db=None, trigger="off", readout_s=0.05)


@pytest.fixture
def cam():
    c = GenicamCamera(serial="1", cti=VIKY)
    c.open()
    yield c
    c.close()


def test_lists_viky_devices():
    cams = list_cameras("genicam", cti=VIKY)
    assert [c.serial for c in cams] == ["0", "1", "2"]
    assert all(c.model == "Viky" and c.extra["producer"] == "viky.cti" for c in cams)


def test_producers_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "a.cti").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.setenv("GENICAM_GENTL64_PATH", f"{tmp_path}:{tmp_path / 'missing'}:{VIKY}")
    assert find_producers() == [tmp_path / "a.cti", VIKY]
    monkeypatch.delenv("GENICAM_GENTL64_PATH")
    assert find_producers() == []


def test_acquires_with_consecutive_frame_ids(cam):
    cam.configure(VIKY_OK)
    cam.arm(states=range(6))
    frames = [cam.grab() for _ in range(4)]
    ids = [f.frame_id for f in frames]
    assert ids == list(range(ids[0], ids[0] + 4))
    assert [f.state for f in frames] == [0, 1, 2, 3]
    assert all(f.image.shape == (240, 320) and f.image.dtype.name == "uint16" for f in frames)
    assert frames[0].device_timestamp is None  # viky has no timestamps
    with pytest.raises(FrameTimeout):
        cam.grab(timeout=0.001)


@pytest.mark.parametrize("change, feature", [
    ({}, "pixel format BayerGR12"),
    ({"exposure_us": 20000.0}, "exposure time"),
    ({"gain_db": 0.0}, "gain in dB"),
    ({"trigger": "software"}, "software trigger"),
    ({"trigger": "hardware"}, "hardware trigger"),
    ({"width": 3504}, "Width 3504"),
])
def test_missing_features_fail_clearly(cam, change, feature):
    base = VIKY_OK if change else AcquisitionSettings()
    with pytest.raises(FeatureNotSupported) as err:
        cam.configure(base, **change)
    msg = str(err.value)
    assert feature in msg and "viky.cti" in msg and "Viky" in msg, msg


def test_open_by_index_and_not_found():
    with GenicamCamera(index=2, cti=VIKY) as c:
        assert c.info.serial == "2"
    with pytest.raises(CameraNotFound, match="no GenTL camera with serial 9 via viky.cti"):
        GenicamCamera(serial="9", cti=VIKY).open()


def test_station_config_with_viky_names_the_missing_feature():
    cfg = parse_config({"camera": {"backend": "genicam", "cti": str(VIKY), "serial": "0"}})
    with pytest.raises(FeatureNotSupported, match="BayerGR12.*offers RGBa8, Mono8"):
        open_camera(cfg.camera)


def test_listing_while_open_keeps_the_camera_and_busy_device_is_an_error(cam):
    cam.configure(VIKY_OK)
    cam.arm()
    first = cam.grab().frame_id
    assert len(list_cameras("genicam", cti=VIKY)) == 3  # must not invalidate the open camera
    assert cam.grab().frame_id == first + 1
    with pytest.raises(CameraError, match="already in use"):
        GenicamCamera(serial="1", cti=VIKY).open()


def test_features_table_writes_nodes_and_names_bad_ones(cam):
    cam.configure(VIKY_OK, features=(("BouncingBallSize", 20), ("AcquisitionFrameRate", 30.0)))
    assert cam._node("BouncingBallSize").value == 20
    assert cam.settings.features == (("BouncingBallSize", 20), ("AcquisitionFrameRate", 30.0))
    with pytest.raises(FeatureNotSupported, match="Nope: no such node"):
        cam.configure(features=(("Nope", 1),))
    with pytest.raises(CameraError, match="PayloadSize is read-only"):
        cam.configure(features=(("PayloadSize", 5),))
