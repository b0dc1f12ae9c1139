"""Detector: safe loading with clear errors, RoI detection in sample mm, RoI merge, infer CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import recordings as R
from cli import model as cli
from cli import scan as inspection_cli
from inference.detector import (
    Detector,
    ModelLoadError,
    card_path_for,
    load_model,
    save_model,
)
from inference.model import NestedUNet, UNetConfig
from inference.postprocess import PostprocessParams

PX_MM = 0.0114


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = NestedUNet(UNetConfig(width=0.125))
    path, _ = save_model(model, tmp_path_factory.mktemp("m") / "tiny.safetensors",
                         training_data={"source": "none (random init, tests)"},
                         metrics={"note": "untrained"})
    return path


def _copy_pair(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    dst.write_bytes(src.read_bytes())
    card_path_for(dst).write_text(card_path_for(src).read_text())
    return dst


class _BrightIsScratch(torch.nn.Module):
    """Stand-in network: y = tanh(4 * max over channels) - so any bright line is a 'scratch'."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.tanh(4 * x.amax(dim=1, keepdim=True))]


def _detector_with_fake_net(tiny_model_file: Path) -> Detector:
    det = Detector.from_file(tiny_model_file)
    det._net = _BrightIsScratch()
    return det


def _stack_with_line(h: int, w: int, r: int, c0: int, c1: int) -> np.ndarray:
    st = np.full((6, h, w), 64, np.uint16)
    st[:, r:r + 3, c0:c1] = 2000
    return st


# -- loading ---------------------------------------------------------------------------------

def test_round_trip_and_card(tiny_model_file: Path) -> None:
    model, card = load_model(tiny_model_file)
    assert card.config == UNetConfig(width=0.125)
    assert card.training_data["source"].startswith("none")
    assert card.postprocess["t_low"] == 0.25 and card.tiling["tile"] == 1024
    det = Detector.from_file(tiny_model_file)
    assert not det.model.is_nested  # materialised for inference
    x = torch.rand(1, 24, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(det.model(x)[0], model(x)[0], rtol=0, atol=1e-5)
    assert "width 0.125" in det.name and len(det.sha256) == 64
    Detector(model)
    assert model.is_nested  # the caller's model is not materialised behind its back


def test_bundled_default_model_loads() -> None:
    det = Detector.from_file()
    assert det.card.metrics and det.card.training_data
    assert det.detect_roi(np.full((6, 128, 128), 64, np.uint16), 0).probability.shape == (64, 64)


def test_missing_files(tmp_path: Path, tiny_model_file: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "nope.safetensors")
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(tiny_model_file.read_bytes())
    with pytest.raises(ModelLoadError, match=r"lone\.json is missing"):
        load_model(lone)


def test_corrupt_weights_named_with_fix(tmp_path: Path, tiny_model_file: Path) -> None:
    path = _copy_pair(tiny_model_file, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated copy
    with pytest.raises(ModelLoadError, match=r"tiny\.safetensors.*do not match.*copy both"):
        load_model(path)
    card = json.loads(card_path_for(path).read_text())
    card["weights_sha256"] = ""  # no checksum to catch it: the parser must
    card_path_for(path).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=r"tiny\.safetensors: not a readable safetensors"):
        load_model(path)


def test_mismatched_architecture(tmp_path: Path, tiny_model_file: Path) -> None:
    path = _copy_pair(tiny_model_file, tmp_path)
    card = json.loads(card_path_for(path).read_text())
    card["architecture"]["width"] = 0.25
    card_path_for(path).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=r"do not fit the architecture.*width 0\.25.*wrong shape"):
        load_model(path)
    card["architecture"]["width"] = 0.125
    card["architecture"]["nested"] = False
    card_path_for(path).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="unexpected tensors.*encoder.pool"):
        load_model(path)


def test_bad_card(tmp_path: Path, tiny_model_file: Path) -> None:
    path = _copy_pair(tiny_model_file, tmp_path)
    card_path_for(path).write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"tiny\.json: model card is not valid JSON"):
        load_model(path)
    card_path_for(path).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelLoadError, match="not a detector model card"):
        load_model(path)


def test_nan_weights_refused(tmp_path: Path) -> None:
    model = NestedUNet(UNetConfig(width=0.125))
    with torch.no_grad():
        model.heads.convs[0].bias.fill_(float("nan"))
    path, _ = save_model(model, tmp_path / "nan.safetensors")
    with pytest.raises(ModelLoadError, match="NaN/Inf"):
        load_model(path)


# -- detection -------------------------------------------------------------------------------

def test_detect_roi_positions_in_sample_mm(tiny_model_file: Path) -> None:
    det = _detector_with_fake_net(tiny_model_file)
    st = _stack_with_line(512, 640, 100, 50, 350)
    res = det.detect_roi(st, 3, (1000, 2000), PX_MM)
    assert res.probability.shape == (256, 320) and res.scratches
    assert len(res.scratches) == 1
    s = res.scratches[0]
    r0, c0, r1, c1 = s.box_px
    assert abs(r0 - 100) <= 2 and abs(r1 - 103) <= 2 and abs(c0 - 50) <= 2 and abs(c1 - 350) <= 2
    assert s.roi == 3 and s.sample_box_px == (r0 + 1000, c0 + 2000, r1 + 1000, c1 + 2000)
    assert s.x_mm == pytest.approx((2000 + (c0 + c1) / 2) * PX_MM)
    assert s.y_mm == pytest.approx((1000 + (r0 + r1) / 2) * PX_MM)
    assert s.length_mm == pytest.approx(300 * PX_MM, rel=0.05)
    blank = det.detect_roi(np.full((6, 256, 256), 64, np.uint16))
    assert blank.scratches == [] and det.sample_results([blank]).verdict == "PASS"
    same = det.detect_roi(st, roi=3, origin_px=(1000, 2000), pixel_size_mm=PX_MM)
    assert same.scratches[0].x_mm == s.x_mm
    with pytest.raises(TypeError, match="roi must be the RoI index"):
        det.detect_roi(st, (1000, 2000), PX_MM)  # the origin where the index belongs


def test_raw_correction_hook(tiny_model_file: Path) -> None:
    det = _detector_with_fake_net(tiny_model_file)
    st = _stack_with_line(256, 256, 100, 20, 200)
    det.raw_correction = lambda s: np.full_like(s, 64)  # "corrects" the line away
    assert det.detect_roi(st).scratches == []
    det.raw_correction = None
    assert len(det.detect_roi(st).scratches) == 1


def test_sample_merge_deduplicates_overlap(tiny_model_file: Path) -> None:
    det = _detector_with_fake_net(tiny_model_file)
    h, w, overlap = 512, 640, 256
    full = np.full((6, h, 2 * w - overlap), 64, np.uint16)
    full[:, 200:203, 300:700] = 2000  # crosses the overlap [384, 640): seen by both RoIs
    full[:, 460:463, 20:200] = 2000  # only RoI 0 (> eps = 200 px from the first)
    full[:, 460:463, 850:1010] = 2000  # only RoI 1
    rois = [det.detect_roi(full[:, :, :w], 0, (0, 0), PX_MM),
            det.detect_roi(full[:, :, w - overlap:], 1, (0, w - overlap), PX_MM)]
    assert sum(len(r.scratches) for r in rois) == 4
    results = det.sample_results(rois)
    assert len(results.scratches) == 3 and results.verdict == "FAIL"
    assert all(isinstance(o, R.DetectedObject) for o in results.scratches)
    # the crossing scratch: one object spanning both RoIs' views, in sample-frame mm
    c = max(results.scratches, key=lambda o: o.length_mm)
    assert c.length_mm == pytest.approx(400 * PX_MM, rel=0.05)
    assert c.x_mm == pytest.approx(500 * PX_MM, rel=0.05)
    assert results.probability_maps.keys() == {0, 1}


def test_two_scratches_in_one_roi_are_not_merged(tiny_model_file: Path) -> None:
    det = _detector_with_fake_net(tiny_model_file)
    det.postprocess_params = PostprocessParams(eps=2, min_samples=4)
    st = _stack_with_line(512, 512, 100, 50, 400)
    st[:, 140:143, 50:400] = 2000  # 40 px below: separate clusters with a small eps
    assert len(det.sample_results([det.detect_roi(st, 0, (0, 0), PX_MM)]).scratches) == 2


# -- command ---------------------------------------------------------------------------------

def _recording(path: Path) -> None:
    rng = np.random.default_rng(0)
    with R.RecordingWriter.create(path, sample_id="S-7", rig_config={}, n_rois=2) as w:
        for i in range(2):
            raw = (64 + rng.poisson(3.0, (6, 256, 320))).astype(np.uint16)
            w.write_roi(i, raw, stage_xy_mm=(0, 0), origin_px=(0, 64 * i), pixel_size_mm=PX_MM,
                        exposure_us=1000, timestamps_s=np.zeros(6), frame_ids=np.arange(6))


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    inspection_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_infer_writes_results(tmp_path: Path, tiny_model_file: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "s7.h5"
    _recording(rec)
    status = _run(["infer", str(rec), "--model", str(tiny_model_file)])
    out = capsys.readouterr().out
    assert out.startswith("S-7: PASS") or out.startswith("S-7: FAIL")
    assert status == (0 if "PASS" in out.split()[1] else 1)
    with R.open_recording(rec) as r:
        res = r.results()
        assert res.verdict in ("PASS", "FAIL") and res.model_sha256 == load_model(
            tiny_model_file)[1].weights_sha256
        assert res.probability_maps[0].shape == (128, 160) and res.probability_scale == 2
    assert R.verify_recording(rec).ok
    # `recordings show` displays what infer stored
    from cli import recordings as rec_cli

    parser = argparse.ArgumentParser()
    rec_cli.register(parser.add_subparsers())
    args = parser.parse_args(["recordings", "show", str(rec)])
    assert args.func(args) == 0
    shown = capsys.readouterr().out
    assert "results: PASS" in shown or "results: FAIL" in shown
    status = _run(["infer", str(rec), "--model", str(tiny_model_file), "--json", "--no-write"])
    report = json.loads(capsys.readouterr().out)
    assert report[0]["sample_id"] == "S-7" and report[0]["rois"] == [0, 1]
    assert report[0]["verdict"] == res.verdict


def test_infer_reports_bad_model_and_recording(tmp_path: Path, tiny_model_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "s7.h5"
    _recording(rec)
    assert _run(["infer", str(rec), "--model", str(tmp_path / "m.safetensors")]) == 2
    assert "no such model file" in capsys.readouterr().err
    assert _run(["infer", str(tmp_path / "x.h5"), "--model", str(tiny_model_file)]) == 2
    assert "x.h5: no such file" in capsys.readouterr().err
    for bad in (["--t-low", "0.9", "--t-high", "0.5"], ["--min-high-px", "0"]):
        assert _run(["infer", str(rec), "--model", str(tiny_model_file), *bad]) == 2
        assert "error: post-processing options" in capsys.readouterr().err


def test_model_info_prints_counts(tiny_model_file: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["model-info", "--model", str(tiny_model_file)]) == 0
    out = capsys.readouterr().out
    assert "13.90 M" in out and "44.40 M" in out and "9.25 M" in out and "39.78 M" in out
    assert "width 0.125" in out and "training data" in out
