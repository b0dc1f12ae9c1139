"""Evaluation metrics (paper Table 1 and the object-level figures) on hand-built recordings
with known detections, whose rates are worked out by hand below; and the `evaluate` command.

Hand-built set: 3 samples x 2 RoIs of 64 x 64 px.

    sample  RoI  truth                               detections (box r0, c0, r1, c1; score)
    S0      0    scratch 0 (row 10, cols 10-40),     (9, 8, 12, 42) 0.90 -> on scratch 0
                 dust 1 (50-54, 50-54)               (48, 48, 56, 56) 0.80 -> on dust 1
    S0      1    fibre 2 (20-22, 0-30)               (19, 0, 23, 31) 0.50 -> on fibre 2
    S1      0    stain 0 (0-30, 0-30)                -
    S1      1    dust 1 (40-44, 40-44)               (10, 10, 14, 14) 0.95 -> on nothing
    S2      0    scratch 0 (col 5, all rows)         -
    S2      1    scratch 0 (col 5, rows 0-20)        (0, 3, 21, 8) 0.77 -> on scratch 0
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import recordings
from inference.evaluate import (
    EvalParams,
    metrics_at,
    pr_curve,
    record_recording,
    summarize,
)

H = W = 64

TRUTH = {
    ("S0", 0): [("scratch", 0, (10, 10, 11, 41)), ("dust", 1, (50, 50, 54, 54))],
    ("S0", 1): [("fibre", 2, (20, 0, 22, 30))],
    ("S1", 0): [("stain", 0, (0, 0, 30, 30))],
    ("S1", 1): [("dust", 1, (40, 40, 44, 44))],
    ("S2", 0): [("scratch", 0, (0, 5, 64, 6))],
    ("S2", 1): [("scratch", 0, (0, 5, 21, 6))],
}
DETECTIONS = {
    ("S0", 0): [((9, 8, 12, 42), 0.90), ((48, 48, 56, 56), 0.80)],
    ("S0", 1): [((19, 0, 23, 31), 0.50)],
    ("S1", 1): [((10, 10, 14, 14), 0.95)],
    ("S2", 1): [((0, 3, 21, 8), 0.77)],
}


def _write(path: Path, sample: str) -> Path:
    with recordings.RecordingWriter.create(path, sample_id=sample, rig_config={},
                                           n_rois=2) as w:
        for roi in (0, 1):
            mask = np.zeros((H, W), np.uint8)
            defects = []
            for kind, did, box in TRUTH[(sample, roi)]:
                if kind == "scratch":
                    mask[box[0]:box[2], box[1]:box[3]] = 1
                defects.append({"id": did, "kind": kind, "x_mm": 0.0, "y_mm": 0.0,
                                "length_mm": 1.0,
                                "geometry": {"roi_box_px": list(box),
                                             "params": {"amplitude_dn": 50.0 + 500 * did}}})
            w.write_roi(roi, np.full((6, H, W), 70, np.uint16), stage_xy_mm=(0, 0),
                        origin_px=(0, 2000 * roi), pixel_size_mm=0.0114, exposure_us=20000.0,
                        timestamps_s=[0.0] * 6, frame_ids=list(range(6)),
                        truth=recordings.RoiTruth(mask, defects))
    return path


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    d = tmp_path_factory.mktemp("hand")
    out = []
    for s in ("S0", "S1", "S2"):
        path = _write(d / f"{s}.h5", s)

        def fake(raw, roi, s=s):
            return DETECTIONS.get((s, roi.index), [])

        out += record_recording(path, fake)
    return out


def test_table1_at_the_operating_point(records) -> None:
    m = metrics_at(records, 0.75)
    # RoIs: positives S0/0, S2/0, S2/1; flagged S0/0, S1/1, S2/1
    assert (m["image"]["positives"], m["image"]["negatives"]) == (3, 3)
    assert m["image"]["fp_rate"] == pytest.approx(1 / 3)  # S1/1
    assert m["image"]["fn_rate"] == pytest.approx(1 / 3)  # S2/0
    # samples: S0 and S2 scratched and flagged; S1 clean but flagged
    assert (m["sample"]["fp_rate"], m["sample"]["fn_rate"]) == (1.0, 0.0)
    o = m["object"]
    assert (o["truth_scratches"], o["found"], o["recall"]) == (2, 2, 1.0)  # S2's counted once
    assert (o["detections"], o["true_positive_detections"], o["precision"]) == (4, 2, 0.5)
    assert o["false_positives_on_no_listed_object"] == 1
    k = m["false_alarms_by_kind"]
    assert (k["dust"]["objects"], k["dust"]["alarmed"], k["dust"]["rate"]) == (2, 1, 0.5)
    assert (k["fibre"]["rate"], k["stain"]["rate"]) == (0.0, 0.0)


def test_rates_move_with_t_high(records) -> None:
    low = metrics_at(records, 0.4)  # the fibre detection (0.5) now counts
    assert low["image"]["fp_rate"] == pytest.approx(2 / 3)
    assert low["false_alarms_by_kind"]["fibre"]["rate"] == 1.0
    high = metrics_at(records, 0.85)  # S2's only detection (0.77) is gone
    assert high["sample"]["fn_rate"] == 0.5
    assert high["image"]["fn_rate"] == pytest.approx(2 / 3)
    assert (high["object"]["recall"], high["object"]["precision"]) == (0.5, 0.5)


def test_average_precision_by_hand(records) -> None:
    # scores descending: 0.95 FP, 0.90 TP (R .5, P .5), 0.80 FP, 0.77 TP (R 1, P .5), 0.50 FP
    curve = pr_curve(records, 0.25)
    assert curve["average_precision"] == pytest.approx(0.5)
    assert [p["t_high"] for p in curve["points"]] == [0.95, 0.9, 0.8, 0.77, 0.5]


def test_box_tolerance_and_min_scratch_px(records) -> None:
    from inference.evaluate import match_candidates, truth_objects

    mask = np.zeros((H, W), np.uint8)
    mask[30, 30:40] = 1
    objs = truth_objects([{"id": 0, "kind": "scratch", "geometry": {
        "roi_box_px": [30, 30, 31, 40]}}], mask)
    near = [((33, 30, 36, 40), 0.9)]  # 2 px below the scratch
    assert match_candidates(near, objs, mask, (H, W), EvalParams(box_tolerance_px=0)
                            )[0].scratch_ids == []
    assert match_candidates(near, objs, mask, (H, W), EvalParams(box_tolerance_px=3)
                            )[0].scratch_ids == [0]
    # S2/1 has 21 scratch pixels: with min_scratch_px 30 it is no longer a positive RoI
    m = metrics_at(records, 0.75, EvalParams(min_scratch_px=30))
    assert m["image"]["positives"] == 2


def test_recall_by_amplitude_bins(records) -> None:
    bins = {tuple(b["amplitude_dn"]): b for b in metrics_at(records, 0.85)["recall_by_amplitude"]}
    b = bins[(30.0, 100.0)]  # both scratches have id 0: amplitude 50 DN
    assert (b["scratches"], b["found"]) == (2, 1)


def test_summary_and_png(records, tmp_path: Path) -> None:
    from inference.evaluate import format_report, plot_pr

    rep = summarize(records, {"t_low": 0.25, "t_high": 0.75, "eps": 25, "min_samples": 16,
                              "method": "fast", "cluster_downsample": 8})
    assert rep["table1"]["sample"] == {"fp_rate": 1.0, "fn_rate": 0.0}
    assert rep["samples"] == 3 and rep["scratched_samples"] == 2
    text = format_report(rep)
    assert "Table 1" in text and "AP 0.500" in text
    png = plot_pr(rep, tmp_path / "pr.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


# -- the command, with a tiny trained model on tiny simulated recordings ------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    from inference.train import TrainConfig, train

    d = tmp_path_factory.mktemp("model")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = train(TrainConfig(width=0.0625, patch_px=64, batch_size=2, steps=2,
                                val_every=0, val_batches=0, run_dir=str(d / "run"),
                                out=str(d / "tiny.safetensors"), sim={"series_seed": 12}),
                    progress=False)
    finally:
        torch.set_num_threads(n)
    return res.model_path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from world.simulate import simulate_recordings

    d = tmp_path_factory.mktemp("data")
    simulate_recordings(d, 2, seed=4242, sensor=(128, 128), progress=False)
    return d


def test_evaluate_cli_json_is_reproducible_and_writes_the_card(tiny_model, tiny_data,
                                                               tmp_path: Path, capsys) -> None:
    from inference.detector import load_model
    from main import main

    png = tmp_path / "pr.png"
    logs = ["--log-dir", str(tmp_path / "logs")]
    args = [*logs, "evaluate", "--data", str(tiny_data), "--model", str(tiny_model), "--json"]
    assert main(args + ["--pr-png", str(png), "--records", str(tmp_path / "r.json")]) == 0
    first = json.loads(capsys.readouterr().out)
    assert png.exists()
    assert first["samples"] == 2 and first["rois"] == 20
    assert set(first["table1"]) == {"sample", "image"}
    assert first["operating_point"]["t_high"] == 0.75
    assert main(args + ["--write-card", "held_out"]) == 0
    second = json.loads(capsys.readouterr().out)
    for key in ("table1", "sample", "image", "object", "false_alarms_by_kind", "pr_curve"):
        assert first[key] == second[key]
    _, card = load_model(tiny_model)  # still loads: the weights' hash is unchanged
    assert card.metrics["held_out"]["table1"] == first["table1"]
    # re-scoring saved records at another T_high needs no network
    assert main([*args, "--from-records", str(tmp_path / "r.json"), "--t-high", "0.9"]) == 0
    assert json.loads(capsys.readouterr().out)["operating_point"]["t_high"] == 0.9


def test_evaluate_cli_errors(tiny_model, tmp_path: Path, capsys) -> None:
    from main import main

    logs = ["--log-dir", str(tmp_path / "logs")]
    assert main([*logs, "evaluate", "--data", str(tmp_path), "--model", str(tiny_model)]) == 2
    assert "no .h5 recordings" in capsys.readouterr().err
    assert main([*logs, "evaluate", "--data", str(tmp_path), "--model",
                 str(tmp_path / "x.safetensors")]) == 2
    assert "no such model file" in capsys.readouterr().err
