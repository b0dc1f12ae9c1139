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


def _small_recording(path: Path) -> Path:
    with R.RecordingWriter.create(path, sample_id="L", rig_config={}, n_rois=1) as w:
        w.write_roi(0, np.full((6, 8, 8), 70, np.uint16), stage_xy_mm=(0, 0), origin_px=(0, 0),
                    pixel_size_mm=0.01, exposure_us=1000.0, timestamps_s=[0.0] * 6,
                    frame_ids=list(range(6)))
    return path


def _external_link(h5: h5py.File, secret: Path) -> None:
    h5["rois/00/stolen"] = h5py.ExternalLink(str(secret), "/data")


def _soft_link_loop(h5: h5py.File, secret: Path) -> None:
    h5["rois/00/loop"] = h5py.SoftLink("/rois/00/loop")


def _external_storage(h5: h5py.File, secret: Path) -> None:
    h5["rois/00"].create_dataset("ext", shape=(8,), dtype="u1", external=[(str(secret), 0, 8)])


def _virtual_dataset(h5: h5py.File, secret: Path) -> None:
    layout = h5py.VirtualLayout(shape=(8,), dtype="u1")
    layout[:] = h5py.VirtualSource(str(secret), "/data", shape=(8,))
    h5["rois/00"].create_virtual_dataset("virt", layout)


@pytest.mark.parametrize("plant", [_external_link, _soft_link_loop, _external_storage,
                                   _virtual_dataset], ids=lambda f: f.__name__.strip("_"))
def test_a_recording_that_reads_outside_itself_is_refused(tmp_path: Path, plant) -> None:
    """Raw data read from any file on the machine, or a link loop: refused before use."""
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["data"] = np.arange(8, dtype=np.uint8)
    path = _small_recording(tmp_path / "rec.h5")
    with h5py.File(path, "r+") as h5:
        plant(h5, secret)
    with pytest.raises(R.RecordingError, match="outside this file|external link|soft link"):
        R.Recording(path)
    assert not R.verify_recording(path).ok
    with pytest.raises(R.RecordingError):
        R.RecordingWriter.resume(path)


# ---- model cards ------------------------------------------------------------------------------

CARD_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**18, 10**18),
    st.sampled_from([0, -1, 1e6, 10**9, "", "x" * 300, None, [], {}, True]),
    st.lists(st.integers(-10**9, 10**9), max_size=12))


@st.composite
def card_edits(draw) -> list[tuple[tuple[str, ...], object]]:
    """A few edits to a valid card: (path of keys, new value); a new key is a typo."""
    paths = [("name",), ("scaling", "black_level"), ("scaling", "white_level"),
             ("architecture", "width"), ("architecture", "encoder_features"),
             ("architecture", "in_channels"), ("architecture", "kernel_size"),
             ("tiling", "tile"), ("tiling", "overlap"), ("tiling", "batch_size"),
             ("postprocess", "t_low"), ("postprocess", "t_high"), ("postprocess", "eps"),
             ("postprocess", "min_samples"), ("postprocess", "cluster_downsample"),
             ("card_version",), ("typo_key",), ("tiling", "typo_key")]
    return [(draw(st.sampled_from(paths)), draw(CARD_VALUES))
            for _ in range(draw(st.integers(1, 3)))]


@pytest.fixture(scope="module")
def small_model_files(tmp_path_factory) -> tuple[Path, str]:
    import json

    from inference.detector import save_model
    from inference.model import NestedUNet, UNetConfig

    cfg = UNetConfig(encoder_features=(8, 16), encoder_convs=(1, 1), decoder_features=(8,),
                     output_scales=1)
    weights, card = save_model(NestedUNet(cfg), tmp_path_factory.mktemp("model") / "m")
    return weights, json.loads(card.read_text())


@FUZZ
@given(card_edits())
def test_any_edited_model_card_loads_or_is_refused_before_allocation(
        tmp_path_factory, small_model_files, edits) -> None:
    import json
    import shutil

    from inference.detector import Detector, ModelLoadError

    weights, card = small_model_files
    card = json.loads(json.dumps(card))
    for keys, value in edits:
        node = card
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    folder = tmp_path_factory.mktemp("card")
    shutil.copy(weights, folder / "m.safetensors")
    (folder / "m.json").write_text(json.dumps(card))  # NaN / Infinity as Python writes them
    try:
        det = Detector.from_file(folder / "m.safetensors", typer=None)
    except ModelLoadError as exc:
        assert str(exc).startswith(str(folder))
        return
    assert all(math.isfinite(v) for v in (det.scaling.black_level, det.scaling.white_level))
    assert det.scaling.white_level > det.scaling.black_level
    assert 0 <= det.postprocess_params.t_low <= det.postprocess_params.t_high <= 1


@pytest.mark.parametrize("edit,message", [
    ({"scaling": {"black_level": float("nan"), "white_level": 4095}}, "scaling.black_level"),
    ({"architecture_typo": 1}, "unknown key"),
    ({"tiling": {"tile": 10**9, "overlap": 256, "batch_size": 4}}, "tiling.tile"),
])
def test_known_bad_model_cards_are_refused_by_key(tmp_path: Path, small_model_files, edit,
                                                  message) -> None:
    import json
    import shutil

    from inference.detector import ModelLoadError, load_model

    weights, card = small_model_files
    shutil.copy(weights, tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({**card, **edit}))
    with pytest.raises(ModelLoadError, match=message):
        load_model(tmp_path / "m.safetensors")


def _classifier_file(folder: Path) -> Path:
    from inference.classifiers import make_classifier

    rng = np.random.default_rng(0)
    crops = rng.normal(100, 10, (8, 1, 16, 16)).astype(np.float32)
    clf = make_classifier("ce", input_size=16, epochs=1, batch_size=4)
    return clf.fit(crops, ["a", "b"] * 4).save(folder / "clf")


@pytest.fixture(scope="module")
def classifier_files(tmp_path_factory) -> tuple[Path, dict]:
    import json

    weights = _classifier_file(tmp_path_factory.mktemp("clf"))
    return weights, json.loads(weights.with_suffix(".json").read_text())


CLASSIFIER_EDITS = [
    (("config", "input_size"), 10**6), (("config", "input_size"), float("nan")),
    (("config", "embed_dim"), 10**9), (("config", "typo"), [1, 2]), (("typo",), 1),
    (("normalisation", "std"), [0.0]), (("normalisation", "mean"), [float("inf")]),
    (("classes",), []), (("classes",), ["a", "a"]), (("in_channels",), 10**6),
    (("method",), "999"), (("extra", "n_train_classes"), 10**9), (("format",), "x"),
    (("config", "lr"), float("nan")), (("config", "epochs"), "many")]


@pytest.mark.parametrize("keys,value", CLASSIFIER_EDITS,
                         ids=[f"{'.'.join(k)}={v!r:.12}" for k, v in CLASSIFIER_EDITS])
def test_a_bad_classifier_card_is_refused_before_allocation(tmp_path: Path, classifier_files,
                                                            keys, value) -> None:
    import json
    import shutil

    from inference.classifiers import load_classifier
    from inference.detector import ModelLoadError

    weights, card = classifier_files
    card = json.loads(json.dumps(card))
    node = card
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    shutil.copy(weights, tmp_path / "clf.safetensors")
    (tmp_path / "clf.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_classifier(tmp_path / "clf.safetensors")


@pytest.mark.parametrize("damage", ["rig_config", "results", "bytes"])
def test_damaged_metadata_is_a_recording_error_not_a_traceback(tmp_path: Path, damage) -> None:
    """Found by bench/fuzz_cli.py: a non-JSON rig_config, a /results group without its
    datasets, and bytes damaged inside the HDF5 metadata used to end in tracebacks."""
    path = _small_recording(tmp_path / "rec.h5")
    if damage == "bytes":  # the root group's metadata zeroed, the superblock left intact
        data = bytearray(path.read_bytes())
        data[96:4096] = bytes(4000)
        path.write_bytes(bytes(data))
    else:
        with h5py.File(path, "r+") as h5:
            if damage == "rig_config":
                h5.attrs["rig_config"] = 3.5
            else:
                h5.create_group("results").attrs["verdict"] = "PASS"
    with pytest.raises(R.RecordingError), R.Recording(path) as rec, R.damage_reported(path):
        assert isinstance(rec.rig_config, dict)
        rec.results()
        for i in rec.roi_ids():
            rec.roi(i).verified_raw()
    assert not R.verify_recording(path).ok
