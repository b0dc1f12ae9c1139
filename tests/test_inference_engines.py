"""Inference engines (inference/engines.py): every engine finds the same objects as the
reference PyTorch path on simulated RoIs of several sizes; exported artefacts are checked
before use; the engine that ran is recorded with the results."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inference import engines as E
from inference.detector import DEFAULT_MODEL, Detector
from world.optics import DarkFieldRenderer
from world.sample import DefectMix, make_sample

PX_MM = 0.0114
# (width, height): one tile, several tiles with odd sizes, smaller than a tile
SIZES = [(1024, 1024), (1281, 777), (333, 517)]


@pytest.fixture(scope="module")
def stacks() -> dict[tuple[int, int], np.ndarray]:
    """Scratched simulated RoIs, each centred on a scratch of the same virtual glass."""
    sample = make_sample(3, DefectMix(scratch_fraction=1.0))
    x, y = sample.of_kind("scratch")[0].centre_mm()
    out = {}
    for w, h in SIZES:
        origin = (max(0, int(y / PX_MM) - h // 2) // 2 * 2, max(0, int(x / PX_MM) - w // 2) // 2 * 2)
        ren = DarkFieldRenderer(sample, (w + w % 2, h + h % 2), PX_MM)  # renders even sizes
        out[(w, h)] = ren.render_stack(origin)[:, :h, :w]
        ren.close()
    return out


@pytest.fixture(scope="module")
def reference() -> Detector:
    return Detector.from_file(DEFAULT_MODEL, engine="torch")


def _objects(det: Detector, stack: np.ndarray):
    r = det.detect_roi(stack, 0, (0, 0), PX_MM)
    return r, det.sample_results([r])


@pytest.mark.parametrize("engine", [e for e in E.ENGINES if e != "torch"])
def test_engine_finds_the_same_objects_as_the_reference(engine, stacks, reference) -> None:
    if engine not in E.available_engines():
        pytest.skip(f"{engine} is not installed")
    det = Detector.from_file(DEFAULT_MODEL, engine=engine, threads=2)
    assert det.engine == f"{engine} fp32"
    for size, stack in stacks.items():
        ref_roi, ref = _objects(reference, stack)
        roi, got = _objects(det, stack)
        assert ref.scratches, f"{size}: the simulated RoI should show its scratch"
        assert np.abs(roi.probability - ref_roi.probability).max() <= 1e-3, size
        assert got.verdict == ref.verdict
        assert [o.box_px for o in got.scratches] == [o.box_px for o in ref.scratches], size
        assert [o.box_px for o in got.contaminants] == [o.box_px for o in ref.contaminants], size
        assert got.detector.endswith(f"· {engine} fp32")  # recorded in /results


@pytest.mark.parametrize("engine", [e for e in E.ENGINES if e != "torch"])
def test_whole_frame_pass_matches_the_reference_whole_frame(engine, stacks) -> None:
    """One tile larger than the frame (the bundled profiles' `tile_px = 3520`): the RAW
    input is passed without a copy and scaled in the exported graph."""
    if engine not in E.available_engines():
        pytest.skip(f"{engine} is not installed")
    stack = stacks[(1281, 777)]
    ref = Detector.from_file(DEFAULT_MODEL, engine="torch")
    det = Detector.from_file(DEFAULT_MODEL, engine=engine, threads=2)
    for d in (ref, det):
        d.tiling = replace(d.tiling, tile=1344)
    ref_roi, want = _objects(ref, stack)
    roi, got = _objects(det, stack)
    assert np.abs(roi.probability - ref_roi.probability).max() <= 1e-3
    assert [o.box_px for o in got.scratches] == [o.box_px for o in want.scratches]
    # a black level of the frame's own (the `black_level` argument) reaches the graph too
    lifted = (stack.astype(np.int32) + 100).astype(np.uint16)
    a = ref.detect_roi(lifted, 0, (0, 0), PX_MM, black_level=164.0)
    b = det.detect_roi(lifted, 0, (0, 0), PX_MM, black_level=164.0)
    assert np.abs(a.probability - b.probability).max() <= 1e-3
    assert np.abs(a.probability - ref_roi.probability).max() > 1e-3  # the level did change


def test_raw_beyond_int16_is_clipped_not_wrapped() -> None:
    from inference.tiling import raw_int16

    raw = np.array([[[0, 4095, 32767, 40000, 65535]]], np.uint16)
    assert raw_int16(raw).tolist() == [[[0, 4095, 32767, 32767, 32767]]]
    small = np.array([[[64, 4095]]], np.uint16)
    assert np.shares_memory(raw_int16(small), small)  # 12-bit data: a view, not a copy


def test_auto_choice_is_measured_once_and_recorded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DARKFIELD_CACHE_DIR", str(tmp_path))
    det = Detector.from_file(DEFAULT_MODEL, engine="auto", threads=1)
    label = det.engine
    assert label.split()[0] in E.available_engines() and label.endswith("fp32")
    records = list(tmp_path.glob("engine-choice-*.json"))
    assert len(records) == 1
    saved = json.loads(records[0].read_text())
    assert "torch/fp32" in saved["seconds_per_batch"] and saved["name"] == label.split()[0]
    again = Detector.from_file(DEFAULT_MODEL, engine="auto", threads=1)
    assert again.engine == label  # read back, not measured again
    records[0].write_text("{not json")  # a damaged record is measured again, not trusted
    assert Detector.from_file(DEFAULT_MODEL, engine="auto", threads=1).engine.endswith("fp32")


def test_corrupt_or_foreign_artefact_is_rebuilt(tmp_path, reference) -> None:
    sha = reference.card.weights_sha256
    path = E.onnx_artefact(reference.model, sha, tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    assert E.onnx_artefact(reference.model, sha, tmp_path).read_bytes() == good
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "weights_sha256": "0" * 64}))  # another model's
    assert E.onnx_artefact(reference.model, sha, tmp_path).read_bytes() == good
    assert json.loads(sidecar.read_text())["weights_sha256"] == sha
    with pytest.raises(E.ModelError, match="SHA-256"):
        E.onnx_artefact(reference.model, "", tmp_path)


def test_unknown_or_missing_engine_is_refused_with_the_fix(reference) -> None:
    with pytest.raises(E.ModelError, match="unknown inference engine 'tensorrt'"):
        E.build_engine("tensorrt", reference.model, reference.card.weights_sha256)


def test_instruction_set_is_reported() -> None:
    assert E.instruction_set()


def test_engine_setting_in_the_station_config(tmp_path: Path) -> None:
    from rig.config import ConfigError, load_config

    station = tmp_path / "station.toml"
    station.write_text("[detector]\nengine = 'tensorrt'\n")
    with pytest.raises(ConfigError, match="detector.engine"):
        load_config(station)
    assert load_config().detector.engine == "auto"
