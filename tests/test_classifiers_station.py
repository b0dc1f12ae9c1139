"""Station typing (issue 10 item 3): simulated crop data, DefectTyper, Detector hook."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from inference.classifiers import make_classifier
from inference.classifiers.station import (
    TYPE_CLASSES,
    DefectTyper,
    evaluate_typer,
    format_report,
    simulated_crops,
    station_crops,
)
from inference.detector import Detector, save_model, to_detected_object
from inference.model import NestedUNet, UNetConfig
from inference.postprocess import Detection

SMALL = {"sensor": (512, 512), "grid": (2, 2)}  # 4 small RoIs per sample: fast


@pytest.fixture(scope="module")
def small_set():
    return simulated_crops(2, 50000, **SMALL)


@pytest.fixture(scope="module")
def typer_file(tmp_path_factory: pytest.TempPathFactory, small_set) -> Path:
    torch.manual_seed(0)
    clf = make_classifier("ce", epochs=1, batch_size=16, input_size=64)
    clf.fit(small_set.crops, small_set.labels, window=128, transform="log1p",
            sample_seeds=[50000, 50001])
    return clf.save(tmp_path_factory.mktemp("typer") / "typer.safetensors")


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path, _ = save_model(NestedUNet(UNetConfig(width=0.125)),
                         tmp_path_factory.mktemp("m") / "tiny.safetensors")
    return path


def test_simulated_crops_carry_truth_kinds(small_set) -> None:
    from inference.classifiers.station import station_mix
    from world.sample import make_sample

    assert small_set.crops.shape[1:] == (6, 64, 64) and small_set.crops.dtype == np.float32
    assert len(small_set.labels) == len(small_set.crops) == len(small_set.meta) > 10
    assert set(small_set.labels) <= set(TYPE_CLASSES) and len(set(small_set.labels)) >= 3
    kinds = {s: {d.id: d.kind for d in make_sample(s, station_mix()).defects}
             for s in (50000, 50001)}
    # regions_mm only moves defects, ids and kinds are those of the sample's defect list
    for lab, m in zip(small_set.labels, small_set.meta, strict=True):
        assert kinds[m["seed"]][m["id"]] == lab
    # untouched (no jitter) dust crops are brightest near their centre
    dust = small_set.crops[[i for i, lab in enumerate(small_set.labels) if lab == "dust"]]
    centre = dust[:, :, 28:36, 28:36].max(axis=(1, 2, 3))
    assert np.mean(centre > np.median(dust, axis=(1, 2, 3))) > 0.8


def test_station_crops_log_transform() -> None:
    st = np.full((6, 256, 256), 64, np.uint16)
    st[:, 120:130, 120:130] = 64 + 1000
    a = station_crops(st, [(120, 120, 130, 130)])
    assert a.shape == (1, 6, 64, 64)
    assert a.max() == pytest.approx(np.log1p(1000.0), rel=1e-5) and a.min() == 0.0
    assert station_crops(st, []).shape[0] == 0


def _det(box: tuple[int, int, int, int], kind: str = "contaminant") -> Detection:
    return Detection(kind=kind, box_px=box, centroid_px=((box[0] + box[2]) / 2,
                                                         (box[1] + box[3]) / 2),
                     length_px=10.0, width_px=3.0, angle_deg=0.0, score=0.9, mean_score=0.5,
                     area_px=30)


def test_typer_sets_types_on_detections(typer_file: Path) -> None:
    typer = DefectTyper.from_file(typer_file)
    assert typer.transform == "log1p" and typer.window == 128
    assert typer.classes == sorted(typer.classes) and set(typer.classes) <= set(TYPE_CLASSES)
    st = np.full((6, 300, 300), 70, np.uint16)
    st[:, 100:110, 150:158] = 3000
    dets = [_det((100, 150, 110, 158)), _det((0, 0, 8, 8), "scratch")]
    shared = dets[0].extra
    typer.type_detections(st, dets)
    for d in dets:
        assert d.extra["type"] in typer.classes and 0 < d.extra["type_score"] <= 1
    assert "type" not in shared  # a copy's extra is not changed behind its back
    o = to_detected_object(dets[0].with_origin((0, 0), 0.0114, 0))
    assert o.type == dets[0].extra["type"] and o.type_score == dets[0].extra["type_score"]
    untyped = to_detected_object(_det((0, 0, 4, 4)).with_origin((0, 0), 0.0114, 0))
    assert untyped.type == "" and math.isnan(untyped.type_score)


class _BrightIsScratch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.tanh(4 * x.amax(dim=1, keepdim=True))]


def test_detector_with_typer_writes_types(tiny_model_file: Path, typer_file: Path) -> None:
    det = Detector.from_file(tiny_model_file, typer=None)
    assert det.typer is None
    det._net = _BrightIsScratch()
    st = np.full((6, 512, 640), 64, np.uint16)
    st[:, 100:103, 50:350] = 2000
    plain = det.detect_roi(st, 3, (1000, 2000), 0.0114)
    assert "type" not in plain.scratches[0].extra
    det.typer = DefectTyper.from_file(typer_file)
    res = det.detect_roi(st, 3, (1000, 2000), 0.0114)
    assert len(res.scratches) == 1 and "typing_s" in res.timings_s
    t = res.scratches[0].extra["type"]
    assert t in det.typer.classes
    results = det.sample_results([res])
    assert results.scratches[0].type == t and 0 < results.scratches[0].type_score <= 1
    assert results.scratches[0].to_json()["type"] == t
    assert res.detected_objects()[0][0].type == t


def test_from_settings_attaches_bundled_typer(tiny_model_file: Path, typer_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import inference.detector as D

    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(D, "DEFAULT_TYPER", typer_file)
        det = Detector.from_settings(SimpleNamespace(threads=threads), tiny_model_file)
        assert isinstance(det.typer, DefectTyper)
        assert Detector.from_settings(SimpleNamespace(threads=threads), tiny_model_file,
                                      typer=None).typer is None
        monkeypatch.setattr(D, "DEFAULT_TYPER", typer_file.with_name("none.safetensors"))
        assert Detector.from_settings(SimpleNamespace(threads=threads),
                                      tiny_model_file).typer is None
    finally:
        torch.set_num_threads(threads)


def test_evaluate_report_and_cli(typer_file: Path, capsys: pytest.CaptureFixture) -> None:
    from cli import classifier as cli

    rep = evaluate_typer(DefectTyper.from_file(typer_file), 1, 60000)
    k = len(rep["classes"])
    assert rep["n"] > 0 and np.array(rep["confusion"]).shape == (k, k)
    assert np.array(rep["confusion"]).sum() == rep["n"]
    assert "confusion" in format_report(rep)
    with pytest.raises(ValueError, match="overlap"):
        evaluate_typer(DefectTyper.from_file(typer_file), 1, 50001)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["classifier", "evaluate-station", "--model", str(typer_file),
                              "--samples", "1", "--seed", "60000", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == rep["n"] and out["confusion"] == rep["confusion"]
