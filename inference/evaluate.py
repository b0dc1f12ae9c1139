"""Evaluation with the paper's protocol (seed paper 004, section 6, Table 1). docs/evaluation.md.

On recordings with truth (`/rois/NN/truth`): the detector runs on every RoI once; the
post-processing keeps *every* cluster that passes T_low together with its score (the cluster's
max p), so every T_high >= T_low is evaluated from the same run: a cluster is a detection at
T_high exactly when its score >= T_high, which is the paper's second threshold.

At the operating point (the model card's thresholds unless overridden):

- sample level: a sample is positive when any of its RoIs is (truth: scratch pixels; decision:
  any detection); FP rate = FP / negatives, FN rate = FN / positives (paper Table 1).
- image (RoI) level: the same per RoI.
- object level: a truth scratch (one id per sample) is *found* when a detection box, grown by
  `box_tolerance_px`, contains one of its mask pixels in some RoI; a detection is a *true
  positive* when it contains a mask pixel of some truth scratch of its RoI. Recall = found /
  truth scratches, precision = true-positive detections / detections. AP: area under the
  precision-recall curve swept over T_high (step interpolation, as scikit-learn's
  average_precision_score).
- per-kind false alarms: the share of dust / stain / fibre objects (one id per sample) whose
  RoI box is overlapped by a false-positive detection box (grown likewise); false positives
  that overlap no listed object (glass-edge glare, hot pixels, noise) are counted apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

CONTAMINANT_KINDS = ("dust", "stain", "fibre")
AMPLITUDE_BINS_DN = (0.0, 30.0, 100.0, 300.0, 1000.0, float("inf"))


@dataclass(frozen=True)
class EvalParams:
    """Matching rules (docs/evaluation.md)."""

    box_tolerance_px: int = 8
    """A detection box is grown by this many RAW px on each side before overlap tests (its
    box comes from a 1/8-resolution clustering of a 1/2-resolution map)."""
    min_scratch_px: int = 1
    """An RoI (and its sample) is scratched when its truth mask has at least this many
    scratch pixels."""


@dataclass
class TruthObject:
    """One defect as an RoI sees it (RoI RAW px, half-open box)."""

    id: int
    kind: str
    box: tuple[int, int, int, int]
    amplitude_dn: float = float("nan")
    length_mm: float = float("nan")
    mask_px: int = 0  # scratch: its mask pixels in this RoI (inside its box)


@dataclass
class Candidate:
    """A cluster that passed T_low: a detection for every T_high <= score."""

    box: tuple[int, int, int, int]
    score: float
    scratch_ids: list[int] = field(default_factory=list)  # truth scratches it overlaps
    object_ids: list[int] = field(default_factory=list)  # contaminants it overlaps


@dataclass
class RoiRecord:
    """Everything the metrics need from one RoI (JSON-able, so a run can be re-scored)."""

    sample_id: str
    roi: int
    scratch_px: int
    objects: list[TruthObject]
    candidates: list[Candidate]
    network_s: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoiRecord:
        return cls(d["sample_id"], int(d["roi"]), int(d["scratch_px"]),
                   [TruthObject(**{**o, "box": tuple(o["box"])}) for o in d["objects"]],
                   [Candidate(**{**c, "box": tuple(c["box"])}) for c in d["candidates"]],
                   float(d.get("network_s", 0.0)))


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------

def _grow(box: Sequence[int], tol: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    return (max(0, int(box[0]) - tol), max(0, int(box[1]) - tol),
            min(shape[0], int(box[2]) + tol), min(shape[1], int(box[3]) + tol))


def _intersects(a: Sequence[int], b: Sequence[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def truth_objects(defects: Iterable[dict[str, Any]], mask: np.ndarray | None
                  ) -> list[TruthObject]:
    """Truth defects of one RoI (recordings' `Roi.defects()`) with their RoI boxes.

    A scratch listed without a box (e.g. hand labels) gets the bounding box of the whole mask;
    other defects without a box are skipped.
    """
    out = []
    for d in defects:
        geo = d.get("geometry", {}) or {}
        box = geo.get("roi_box_px") or geo.get("box_px")
        params = geo.get("params", {}) or {}
        if box is None:
            if d["kind"] != "scratch" or mask is None or not mask.any():
                continue
            rr, cc = np.nonzero(mask)
            box = [int(rr.min()), int(cc.min()), int(rr.max()) + 1, int(cc.max()) + 1]
        box = tuple(int(v) for v in box)
        n = 0
        if d["kind"] == "scratch" and mask is not None:
            n = int(np.count_nonzero(mask[box[0]:box[2], box[1]:box[3]]))
        out.append(TruthObject(int(d["id"]), str(d["kind"]), box,
                               float(params.get("amplitude_dn", float("nan"))),
                               float(d.get("length_mm", float("nan"))), n))
    return out


def match_candidates(boxes_scores: Iterable[tuple[Sequence[int], float]],
                     objects: Sequence[TruthObject], mask: np.ndarray | None,
                     shape: tuple[int, int], params: EvalParams = EvalParams()
                     ) -> list[Candidate]:
    """Which truth scratches / contaminants each detection box overlaps."""
    out = []
    for box, score in boxes_scores:
        g = _grow(box, params.box_tolerance_px, shape)
        sc, ob = [], []
        for o in objects:
            if not _intersects(g, o.box):
                continue
            if o.kind == "scratch":
                if mask is None:
                    sc.append(o.id)
                    continue
                r0, c0 = max(g[0], o.box[0]), max(g[1], o.box[1])
                r1, c1 = min(g[2], o.box[2]), min(g[3], o.box[3])
                if np.any(mask[r0:r1, c0:c1]):
                    sc.append(o.id)
            else:
                ob.append(o.id)
        out.append(Candidate(tuple(int(v) for v in box), float(score), sc, ob))
    return out


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def metrics_at(records: Sequence[RoiRecord], t_high: float,
               params: EvalParams = EvalParams()) -> dict[str, Any]:
    """Table 1 and the object-level figures at one T_high."""
    samples: dict[str, list[tuple[bool, bool]]] = {}
    truth_scr: dict[tuple[str, int], dict[str, Any]] = {}
    found: set[tuple[str, int]] = set()
    contam: dict[str, set[tuple[str, int]]] = {k: set() for k in CONTAMINANT_KINDS}
    alarmed: dict[str, set[tuple[str, int]]] = {k: set() for k in CONTAMINANT_KINDS}
    n_det = n_tp = n_unexplained = 0
    for r in records:
        pos = r.scratch_px >= params.min_scratch_px
        dets = [c for c in r.candidates if c.score >= t_high]
        samples.setdefault(r.sample_id, []).append((pos, bool(dets)))
        kinds = {o.id: o.kind for o in r.objects}
        for o in r.objects:
            key = (r.sample_id, o.id)
            if o.kind == "scratch" and o.mask_px > 0:
                t = truth_scr.setdefault(key, {"amplitude_dn": o.amplitude_dn,
                                               "length_mm": o.length_mm})
                t["mask_px"] = t.get("mask_px", 0) + o.mask_px
            elif o.kind in contam:
                contam[o.kind].add(key)
        for c in dets:
            n_det += 1
            if c.scratch_ids:
                n_tp += 1
                found.update((r.sample_id, i) for i in c.scratch_ids)
            else:
                hit = [i for i in c.object_ids if kinds.get(i) in alarmed]
                for i in hit:
                    alarmed[kinds[i]].add((r.sample_id, i))
                n_unexplained += not hit
    rois = [x for v in samples.values() for x in v]
    s = [(any(p for p, _ in v), any(d for _, d in v)) for v in samples.values()]

    def table(pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
        pos = sum(p for p, _ in pairs)
        neg = len(pairs) - pos
        fp = sum(d and not p for p, d in pairs)
        fn = sum(p and not d for p, d in pairs)
        return {"n": len(pairs), "positives": pos, "negatives": neg, "fp": fp, "fn": fn,
                "fp_rate": _rate(fp, neg), "fn_rate": _rate(fn, pos)}

    per_kind = {k: {"objects": len(contam[k]), "alarmed": len(alarmed[k] & contam[k]),
                    "rate": _rate(len(alarmed[k] & contam[k]), len(contam[k]))}
                for k in CONTAMINANT_KINDS}
    by_amp = []
    for lo, hi in zip(AMPLITUDE_BINS_DN[:-1], AMPLITUDE_BINS_DN[1:], strict=True):
        keys = [k for k, v in truth_scr.items() if lo <= v["amplitude_dn"] < hi]
        by_amp.append({"amplitude_dn": [lo, hi if np.isfinite(hi) else None],
                       "scratches": len(keys), "found": sum(k in found for k in keys),
                       "recall": _rate(sum(k in found for k in keys), len(keys))})
    return {
        "t_high": t_high,
        "sample": table(s), "image": table(rois),
        "object": {"truth_scratches": len(truth_scr), "found": len(found & set(truth_scr)),
                   "recall": _rate(len(found & set(truth_scr)), len(truth_scr)),
                   "detections": n_det, "true_positive_detections": n_tp,
                   "precision": _rate(n_tp, n_det),
                   "false_positive_detections": n_det - n_tp,
                   "false_positives_on_no_listed_object": n_unexplained},
        "false_alarms_by_kind": per_kind,
        "recall_by_amplitude": by_amp,
    }


def pr_curve(records: Sequence[RoiRecord], t_low: float, params: EvalParams = EvalParams(),
             max_points: int = 200) -> dict[str, Any]:
    """Object-level precision / recall and sample / image FP-FN rates over T_high, and AP."""
    scores = sorted({c.score for r in records for c in r.candidates if c.score >= t_low},
                    reverse=True)
    if len(scores) > max_points:  # keep the curve exact at the ends, subsample the middle
        idx = np.unique(np.linspace(0, len(scores) - 1, max_points).round().astype(int))
        scores = [scores[i] for i in idx]
    pts = []
    for t in scores:
        m = metrics_at(records, t, params)
        pts.append({"t_high": round(t, 6), "recall": m["object"]["recall"],
                    "precision": m["object"]["precision"],
                    "sample_fp": m["sample"]["fp_rate"], "sample_fn": m["sample"]["fn_rate"],
                    "image_fp": m["image"]["fp_rate"], "image_fn": m["image"]["fn_rate"]})
    ap, prev_r = 0.0, 0.0
    for p in pts:  # descending thresholds: recall rises
        r = p["recall"] or 0.0
        ap += (r - prev_r) * (p["precision"] or 0.0)
        prev_r = r
    return {"points": pts, "average_precision": ap}


# --------------------------------------------------------------------------------------------
# Running a detector over recordings
# --------------------------------------------------------------------------------------------

CandidateFn = Callable[[np.ndarray, Any], list[tuple[Sequence[int], float]]]
"""(RoI stack (6, H, W), recordings.Roi) -> [(box (r0, c0, r1, c1) RAW px, score), ...]."""


def record_roi(sample_id: str, roi: Any, candidates: CandidateFn,
               params: EvalParams = EvalParams(), raw: np.ndarray | None = None) -> RoiRecord:
    """Run `candidates` on one RoI and match the result against its truth (`raw`: the RoI's
    stack when the caller has read it already)."""
    raw = roi.raw[()] if raw is None else raw
    mask = roi.scratch_mask()
    objects = truth_objects(roi.defects(), mask)
    t0 = time.perf_counter()
    boxes = candidates(raw, roi)
    dt = time.perf_counter() - t0
    shape = (int(raw.shape[-2]), int(raw.shape[-1]))
    return RoiRecord(sample_id, int(roi.index),
                     int(np.count_nonzero(mask)) if mask is not None else 0, objects,
                     match_candidates(boxes, objects, mask, shape, params), dt)


def record_recording(path: Path, candidates: CandidateFn,
                     params: EvalParams = EvalParams()) -> list[RoiRecord]:
    import recordings

    out = []
    with recordings.open_recording(path) as rec:
        for i in rec.roi_ids():
            roi = rec.roi(i)
            if not roi.has_truth:
                raise recordings.RecordingError(
                    f"{path}: RoI {i} has no truth; evaluate needs recordings with "
                    "/rois/NN/truth (simulated or labelled)")
            out.append(record_roi(rec.sample_id, roi, candidates, params))
    return out


def detector_candidates(detector: Any) -> CandidateFn:
    """Every cluster of the detector's map that passes T_low, with its score (T_high = T_low)."""
    from inference.postprocess import find_scratches, scratch_probability

    pp = replace(detector.postprocess_params, t_high=detector.postprocess_params.t_low)
    act = detector.model.config.output_activation

    def fn(raw: np.ndarray, roi: Any) -> list[tuple[Sequence[int], float]]:
        y = detector.predict_map(raw)
        p = scratch_probability(y, act)
        return [(d.box_px, d.score) for d in find_scratches(p, pp, tuple(raw.shape[-2:]))]

    return fn


_WORKER: dict[str, Any] = {}


def _worker_init(model: str, device: str, threads: int, overrides: dict[str, Any],
                 params: EvalParams, engine: str = "torch", tile_px: int | None = None) -> None:
    import torch

    from inference.detector import Detector
    from inference.tiling import TilingParams

    torch.set_num_threads(threads)
    det = Detector.from_file(model, device=device, engine=engine, threads=threads)
    if tile_px:
        det.tiling = replace(det.tiling, tile=tile_px)
        TilingParams(**det.tiling.to_dict())  # checked like a card's tiling
    if overrides:
        det.postprocess_params = replace(det.postprocess_params, **overrides)
    _WORKER.update(fn=detector_candidates(det), params=params)


def _worker_run(path: str) -> list[dict[str, Any]]:
    return [asdict(r) for r in record_recording(Path(path), _WORKER["fn"], _WORKER["params"])]


def run_detector(paths: Sequence[Path], model: str | Path, *, device: str = "cpu",
                 threads: int = 1, workers: int = 1, overrides: dict[str, Any] | None = None,
                 params: EvalParams = EvalParams(), engine: str = "torch",
                 tile_px: int | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> list[RoiRecord]:
    """Records of every RoI of `paths`, in order. workers > 1: that many processes, each with
    `threads` threads (results do not depend on the split). `engine`, `tile_px`: run the
    detector as a station would with those `[detector]` settings."""
    overrides = overrides or {}
    out: list[RoiRecord] = []
    init = (str(model), device, threads, overrides, params, engine, tile_px)
    if workers <= 1:
        _worker_init(*init)
        for k, p in enumerate(paths, 1):
            out += [RoiRecord.from_dict(asdict(r)) for r in
                    record_recording(Path(p), _WORKER["fn"], params)]
            if progress:
                progress(k, len(paths), Path(p).name)
        return out
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=init) as ex:
        for k, (p, recs) in enumerate(zip(paths, ex.map(_worker_run, [str(p) for p in paths]),
                                          strict=True), 1):
            out += [RoiRecord.from_dict(r) for r in recs]
            if progress:
                progress(k, len(paths), Path(p).name)
    return out


def summarize(records: Sequence[RoiRecord], thresholds: dict[str, Any],
              params: EvalParams = EvalParams(), data: str = "", model: str = ""
              ) -> dict[str, Any]:
    """The full report: Table 1 at the operating point, object level, per kind, PR curve."""
    op = metrics_at(records, float(thresholds["t_high"]), params)
    curve = pr_curve(records, float(thresholds["t_low"]), params)
    n_samples = len({r.sample_id for r in records})
    net = [r.network_s for r in records]
    return {
        "data": data, "model": model, "samples": n_samples, "rois": len(records),
        "scratched_samples": op["sample"]["positives"],
        "operating_point": thresholds,
        "table1": {"sample": {"fp_rate": op["sample"]["fp_rate"],
                              "fn_rate": op["sample"]["fn_rate"]},
                   "image": {"fp_rate": op["image"]["fp_rate"],
                             "fn_rate": op["image"]["fn_rate"]}},
        "sample": op["sample"], "image": op["image"], "object": op["object"],
        "average_precision": curve["average_precision"],
        "false_alarms_by_kind": op["false_alarms_by_kind"],
        "recall_by_amplitude": op["recall_by_amplitude"],
        "matching": asdict(params),
        "network_s_per_roi": float(np.mean(net)) if net else None,
        "pr_curve": curve["points"],
    }


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def _bin(edges: Sequence[float | None]) -> str:
    lo, hi = edges
    return f"{lo:g}+" if hi is None else f"{lo:g}-{hi:g}"


def format_report(rep: dict[str, Any]) -> str:
    """Human-readable Table 1 and the extra figures."""
    op = rep["operating_point"]
    s, i, o = rep["sample"], rep["image"], rep["object"]
    lines = [
        f"{rep['samples']} samples ({rep['scratched_samples']} scratched), {rep['rois']} RoIs"
        f"  model: {rep.get('model', '')}",
        f"operating point: T_low {op['t_low']:g}, T_high {op['t_high']:g} "
        f"(on {op.get('min_high_px', 1)} px), "
        f"{op.get('method', '')} eps {op.get('eps', '')} min_samples {op.get('min_samples', '')}",
        "",
        "Table 1          Sample     Image",
        f"  FP rate        {_pct(s['fp_rate'])}    {_pct(i['fp_rate'])}"
        f"     ({s['fp']}/{s['negatives']}, {i['fp']}/{i['negatives']})",
        f"  FN rate        {_pct(s['fn_rate'])}    {_pct(i['fn_rate'])}"
        f"     ({s['fn']}/{s['positives']}, {i['fn']}/{i['positives']})",
        "",
        f"objects: recall {_pct(o['recall'])} ({o['found']}/{o['truth_scratches']} scratches), "
        f"precision {_pct(o['precision'])} ({o['true_positive_detections']}/{o['detections']} "
        f"detections), AP {rep['average_precision']:.3f}",
        "false alarms by kind: " + ", ".join(
            f"{k} {_pct(v['rate']).strip()} ({v['alarmed']}/{v['objects']})"
            for k, v in rep["false_alarms_by_kind"].items())
        + f"; on no listed object: {o['false_positives_on_no_listed_object']}",
        "recall by amplitude (DN): " + ", ".join(
            f"{_bin(b['amplitude_dn'])} {_pct(b['recall']).strip()} ({b['found']}/{b['scratches']})"
            for b in rep["recall_by_amplitude"]),
    ]
    if rep.get("network_s_per_roi") is not None:
        lines.append(f"network time per RoI: {rep['network_s_per_roi']:.2f} s")
    return "\n".join(lines)


def plot_pr(rep: dict[str, Any], path: str | Path) -> Path:
    """PNG: object-level precision-recall over T_high, and sample / image FP-FN vs T_high."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = rep["pr_curve"]
    op = rep["operating_point"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    r = [p["recall"] or 0.0 for p in pts]
    pr = [p["precision"] or 0.0 for p in pts]
    a.plot(r, pr, "-", color="C0")
    o = rep["object"]
    if o["recall"] is not None and o["precision"] is not None:
        a.plot([o["recall"]], [o["precision"]], "o", color="C3",
               label=f"T_high = {op['t_high']:g}")
        a.legend(loc="lower left")
    a.set_xlabel("object recall")
    a.set_ylabel("object precision")
    a.set_xlim(0, 1.02)
    a.set_ylim(0, 1.02)
    a.grid(alpha=0.3)
    a.set_title(f"scratches over T_high (AP {rep['average_precision']:.3f})")
    t = [p["t_high"] for p in pts]
    for key, style, label in (("sample_fp", "C1-", "sample FP"), ("sample_fn", "C1--",
                                                                   "sample FN"),
                              ("image_fp", "C2-", "image FP"), ("image_fn", "C2--", "image FN")):
        b.plot(t, [100 * (p[key] or 0.0) for p in pts], style, label=label)
    b.axvline(op["t_high"], color="C3", lw=0.8)
    b.set_xlabel("T_high")
    b.set_ylabel("rate (%)")
    b.set_title("Table 1 rates over T_high")
    b.grid(alpha=0.3)
    b.legend()
    fig.suptitle(f"{rep.get('model', '')}: {rep['samples']} samples, {rep['rois']} RoIs",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def card_metrics(rep: dict[str, Any], data_note: str = "") -> dict[str, Any]:
    """The part of a report stored in a model card (no PR curve points)."""
    keep = {k: v for k, v in rep.items() if k != "pr_curve"}
    if data_note:
        keep["data_note"] = data_note
    return keep


def write_card_metrics(model: str | Path, key: str, metrics: dict[str, Any],
                       postprocess: dict[str, Any] | None = None) -> Path:
    """Store `metrics` under card["metrics"][key] (and optionally the operating point's
    post-processing) in NAME.json; the weights file, and so its hash, are untouched."""
    from inference.detector import card_path_for

    path = card_path_for(Path(model))
    card = json.loads(path.read_text())
    card.setdefault("metrics", {})[key] = metrics
    if postprocess:
        card["postprocess"] = {**card.get("postprocess", {}), **postprocess}
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return path


def find_recordings(data: Sequence[str | Path]) -> list[Path]:
    paths: list[Path] = []
    for d in data:
        p = Path(d)
        paths += sorted(p.glob("*.h5")) if p.is_dir() else [p]
    return paths


__all__ = [
    "Candidate", "EvalParams", "RoiRecord", "TruthObject", "card_metrics", "detector_candidates",
    "find_recordings", "format_report", "match_candidates", "metrics_at", "plot_pr", "pr_curve",
    "record_recording", "record_roi", "run_detector", "summarize", "truth_objects",
    "write_card_metrics",
]
