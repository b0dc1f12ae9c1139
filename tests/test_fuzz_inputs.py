"""Property-based fuzzing of what comes from outside: station configs and recordings.

Every input either loads or is refused with the station's own error (ConfigError /
RecordingError) naming the problem: never a traceback of another kind, never a hang, never a
huge allocation. Bounded: a fixed number of examples, no deadline surprises on a slow machine.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recordings as R
from rig.config import ConfigError, load_config, parse_config

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

SECTIONS = {"stage": ["max_speed_mm_s", "acceleration_mm_s2", "settle_s", "x_limits_mm"],
            "camera": ["width", "height", "exposure_us", "gain_db", "readout_s"],
            "scan": ["columns", "rows", "min_overlap_px", "pixel_size_mm", "states"],
            "detector": ["tile_px", "batch_size", "threads", "t_low", "t_high", "engine"],
            "light": ["facet_levels", "trigger_pulse_us"], "sim": ["seed", "realtime"]}
VALUES = st.one_of(
    st.integers(-10**15, 10**15), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.booleans(), st.none(),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
    st.lists(st.integers(-1000, 1000), max_size=13))


@st.composite
def configs(draw) -> dict:
    data: dict = {}
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(SECTIONS)))
        key = draw(st.sampled_from(SECTIONS[section] + ["typo_key"]))
        value = draw(VALUES)
        if value is not None:
            data.setdefault(section, {})[key] = value
    return data


def _finite(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, (tuple, list)):
        return all(_finite(v) for v in obj)
    if hasattr(obj, "model_dump"):
        return all(_finite(v) for v in obj.model_dump().values())
    return True


@FUZZ
@given(configs())
def test_any_config_loads_finite_or_is_refused_clearly(data) -> None:
    try:
        cfg = parse_config(data, "fuzz.toml")
    except ConfigError as exc:
        assert "invalid station config fuzz.toml" in str(exc)
        return
    assert _finite(cfg)
    assert cfg.camera.width * cfg.camera.height <= 16384 ** 2 and cfg.detector.threads <= 1024


@pytest.mark.parametrize("text", ["[camera]\nexposure_us = inf\n", "[stage]\nx_limits_mm = [nan, nan]\n",
                                  "[detector]\nthreads = 100000\n", "[camera]\nwidth = 1000000\n"])
def test_known_bad_values_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid station config"):
        parse_config(tomllib.loads(text), "bad.toml")


def test_a_binary_config_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_bytes(b"\xff\xfe[camera]\x00\x81")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


ROOT_ATTRS = {"n_rois": st.one_of(st.integers(-5, 10**15), st.floats(allow_nan=True),
                                  st.text(st.characters(blacklist_characters="\x00"),
                                          max_size=5)),
              "status": st.one_of(st.sampled_from(["complete", "incomplete", "", "x"]),
                                  st.integers(-2**31, 2**31)),
              "format_version": st.sampled_from(["1.0", "2.0", "x", ""])}


@st.composite
def damaged_recordings(draw) -> tuple[dict, list[str], bool]:
    attrs = {k: draw(v) for k, v in ROOT_ATTRS.items() if draw(st.booleans())}
    names = draw(st.lists(st.sampled_from(["00", "01", "99", "x", "-1", "0000001"]),
                          max_size=3, unique=True))
    return attrs, names, draw(st.booleans())


@FUZZ
@given(damaged_recordings())
def test_any_damaged_recording_is_read_or_refused_clearly(tmp_path_factory, case) -> None:
    attrs, names, corrupt = case
    path = tmp_path_factory.mktemp("fuzz") / "rec.h5"
    with R.RecordingWriter.create(path, sample_id="F", rig_config={}, n_rois=2) as w:
        w.write_roi(0, np.full((6, 8, 8), 70, np.uint16), stage_xy_mm=(0, 0), origin_px=(0, 0),
                    pixel_size_mm=0.01, exposure_us=1000.0, timestamps_s=[0.0] * 6,
                    frame_ids=list(range(6)))
    with h5py.File(path, "r+") as h5:
        for k, v in attrs.items():
            h5.attrs[k] = v
        for n in names:
            if n not in h5["rois"]:
                h5["rois"].create_group(n)
        if corrupt:
            h5["rois/00/raw"][0, 0, 0] = 71
    report = R.verify_recording(path)  # never raises, never hangs
    assert report.ok or report.problems
    try:
        with R.Recording(path) as rec:
            ids = rec.roi_ids()
            for i in ids:
                rec.roi(i).verified_raw()
    except R.RecordingError as exc:
        assert str(exc)
        return
    assert ids == [0] and not corrupt
