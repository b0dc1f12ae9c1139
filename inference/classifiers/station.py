"""Typing detected objects in the station: scratch / dust / stain / fibre (issue 10, item 3).

Three parts:

- **Simulated crop data** (`simulated_crops`): random virtual samples from ``world`` (the only
  use of rig here, training data only; imported lazily), each RoI rendered as a 6-state RAW
  stack, and one crop per ground-truth defect the RoI sees (`RoiTruth.defects[*]`, box
  ``geometry.roi_box_px``), labelled with the defect's ``kind``. Crops are cut by
  `crops.extract_crops` exactly as in the station, then ``log1p`` compressed (`station_crops`):
  the sim spans 4 DN stains to saturated dust, and a linear standardisation would leave stains at
  noise level. Training boxes are shifted by up to ``jitter_px`` so the typer tolerates the
  detector's boxes not being centred as the truth boxes are.
- **`DefectTyper`**: a saved crop classifier plus the crop settings it was trained with (from its
  card); ``type_detections(stack, detections)`` sets ``d.extra["type"]`` / ``["type_score"]``,
  which `inference.detector.to_detected_object` copies to ``DetectedObject.type`` /
  ``type_score`` (recordings, ``recordings show``, GUI table). `Detector.typer` calls it.
- **Train / evaluate** (`train_typer`, `evaluate_typer`): ``classifier train-station`` and
  ``classifier evaluate-station``. Seeds: training from 50000, evaluation from 60000; both are
  disjoint from the detector's held-out test seeds 1000-1999.

The simulated samples use `STATION_MIX` (every sample scratched, more fibres than the default
mix) so the four classes are not too unbalanced (the default mix has ~40 dust per scratch); and a
small 1024 x 1024 sensor with defects placed inside the RoIs (`make_sample(regions_mm=...)`),
so each rendered pixel is likely to show a defect. The crop scale (RAW px) is the station's, so
neither choice changes what a crop of a given defect looks like, apart from the illumination
field across the (smaller) sensor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import CropClassifier, load_classifier, make_classifier
from .crops import DEFAULT_WINDOW_PX, extract_crops
from .metrics import classification_report

TYPE_CLASSES = ("dust", "fibre", "scratch", "stain")
TRAIN_SEED = 50000
"""First training sample seed (the detector's held-out tests use 1000-1999)."""
EVAL_SEED = 60000
"""First evaluation sample seed (disjoint from training runs of < 10000 samples)."""
SIM_SENSOR = (1024, 1024)  # (W, H) RAW px of the simulated RoIs
SIM_GRID = (2, 5)  # RoI columns x rows per sample, as the station's default grid
JITTER_PX = 12
"""Training boxes are shifted by up to this many RAW px per axis (detector box offsets)."""
DEFAULT_EPOCHS = 30
DEFAULT_TRAIN_SAMPLES = 60
DEFAULT_EVAL_SAMPLES = 20
DEFAULT_TYPER = Path(__file__).resolve().parent.parent / "weights" / "typer.safetensors"


def station_mix() -> Any:
    """`world.sample.DefectMix` for typer data: every sample scratched, balanced kinds."""
    from world.sample import DefectMix

    return DefectMix(scratch_fraction=1.0, extra_scratches_mean=4.0, dust_mean=10.0,
                     stain_mean=8.0, fibre_mean=6.0)


def station_crops(stack: np.ndarray, boxes: Sequence[tuple[int, int, int, int]],
                  window: int | None = DEFAULT_WINDOW_PX, transform: str = "log1p"
                  ) -> np.ndarray:
    """(N, 6, h, w) float32 crops as the typer sees them (train and station alike)."""
    crops = extract_crops(stack, boxes, window=window)
    if not crops:
        return np.zeros((0, stack.shape[0] if stack.ndim == 3 else 1, 1, 1), np.float32)
    arr = np.stack(crops)
    if transform == "log1p":
        np.log1p(arr, out=arr)
    elif transform not in ("", "none"):
        raise ValueError(f"unknown crop transform {transform!r}")
    return arr


@dataclass
class CropSet:
    """Labelled crops; ``meta`` says where each came from (sample seed, RoI, defect id)."""

    crops: np.ndarray
    labels: list[str]
    meta: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {c: self.labels.count(c) for c in sorted(set(self.labels))}


def _axis_origins(extent_px: float, sensor_px: int, n: int) -> list[int]:
    """Even RoI origins spread from 0 to the far edge, as `rig.geometry.axis_origins` (which
    inference may not import) places them; gaps between RoIs are fine here."""
    def even(v: float, f: Any = round) -> int:
        return int(2 * f(v / 2))

    last = even(extent_px - sensor_px, math.ceil)
    if n == 1 or last <= 0:
        return [even((extent_px - sensor_px) / 2, math.floor)] * n
    return [0, *[even(last * i / (n - 1)) for i in range(1, n - 1)], last]


def simulated_crops(n_samples: int, seed: int = TRAIN_SEED, *, jitter_px: int = 0,
                    sensor: tuple[int, int] = SIM_SENSOR, grid: tuple[int, int] = SIM_GRID,
                    window: int | None = DEFAULT_WINDOW_PX, transform: str = "log1p",
                    mix: Any = None) -> CropSet:
    """Crops around every truth defect of samples ``seed .. seed + n_samples - 1``.

    A defect seen by several RoIs (overlap, long scratches) gives one crop per RoI, as the
    detector would report it once per RoI before merging.
    """
    from world.optics import DarkFieldRenderer
    from world.sample import DEFAULT_LENGTH_MM, DEFAULT_WIDTH_MM, make_sample

    mix = mix or station_mix()
    w, h = sensor
    px = float(mix.pixel_size_mm)
    rois = [(r0, c0) for r0 in _axis_origins(DEFAULT_LENGTH_MM / px, h, grid[1])
            for c0 in _axis_origins(DEFAULT_WIDTH_MM / px, w, grid[0])]
    regions = [(c0 * px, r0 * px, (c0 + w) * px, (r0 + h) * px) for r0, c0 in rois]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E9E]))
    parts: list[np.ndarray] = []
    labels: list[str] = []
    meta: list[dict[str, Any]] = []
    for s in range(int(seed), int(seed) + int(n_samples)):
        sample = make_sample(s, mix, regions_mm=regions)
        ren = DarkFieldRenderer(sample, sensor=(w, h), pixel_size_mm=px)
        try:
            for i, (r0, c0) in enumerate(rois):
                defects = [d for d in ren.visible_defects((r0, c0)) if d["kind"] in TYPE_CLASSES]
                if not defects:
                    continue
                stack = ren.render_stack((r0, c0))
                boxes = []
                for d in defects:
                    b0, b1, b2, b3 = d["geometry"]["roi_box_px"]
                    dr, dc = (rng.integers(-jitter_px, jitter_px + 1, 2) if jitter_px
                              else (0, 0))
                    boxes.append((b0 + int(dr), b1 + int(dc), b2 + int(dr), b3 + int(dc)))
                    labels.append(d["kind"])
                    meta.append({"seed": s, "roi": i, "id": int(d["id"])})
                parts.append(station_crops(stack, boxes, window, transform))
        finally:
            ren.close()
    crops = np.concatenate(parts) if parts else np.zeros((0, 6, 1, 1), np.float32)
    return CropSet(crops, labels, meta)


class DefectTyper:
    """A trained crop classifier used on detections; crop settings come from its card."""

    def __init__(self, classifier: CropClassifier, window: int | None = None,
                 transform: str | None = None, source: str = "") -> None:
        info = classifier.info
        self.classifier = classifier
        self.window = window if window is not None else info.get("window", DEFAULT_WINDOW_PX)
        self.transform = transform if transform is not None else info.get("transform", "none")
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_TYPER) -> DefectTyper:
        return cls(load_classifier(path), source=str(path))

    @property
    def classes(self) -> list[str]:
        return list(self.classifier.classes)

    def type_boxes(self, stack: np.ndarray, boxes: Sequence[tuple[int, int, int, int]]
                   ) -> tuple[list[str], list[float]]:
        """Type and probability per RoI box (row0, col0, row1, col1) of a (6, H, W) stack."""
        if len(boxes) == 0:
            return [], []
        p = self.classifier.predict_proba(station_crops(np.asarray(stack), boxes, self.window,
                                                        self.transform))
        idx = p.argmax(axis=1)
        return ([self.classifier.classes[i] for i in idx],
                [float(p[n, i]) for n, i in enumerate(idx)])

    def type_detections(self, stack: np.ndarray, detections: Sequence[Any]) -> None:
        """Set ``extra["type"]`` / ``extra["type_score"]`` on each `postprocess.Detection`
        (boxes in the RoI pixels of ``stack``)."""
        dets = list(detections)
        types, scores = self.type_boxes(stack, [tuple(d.box_px) for d in dets])
        for d, t, s in zip(dets, types, scores, strict=True):
            d.extra = {**d.extra, "type": t, "type_score": s}  # own dict: copies share extra


# ---------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------

def train_typer(n_samples: int = DEFAULT_TRAIN_SAMPLES, seed: int = TRAIN_SEED,
                method: str = "ce", jitter_px: int = JITTER_PX, log: Any = print,
                **overrides: Any) -> tuple[CropClassifier, CropSet]:
    """Fit ``method`` on simulated crops of ``n_samples`` samples from ``seed``."""
    t0 = time.perf_counter()
    data = simulated_crops(n_samples, seed, jitter_px=jitter_px)
    t_data = time.perf_counter() - t0
    if log:
        log(f"{len(data.labels)} crops from {n_samples} samples in {t_data:.1f} s: "
            f"{data.counts()}")
    cfg = {"epochs": DEFAULT_EPOCHS, "seed": 0, **overrides}
    clf = make_classifier(method, **cfg)
    clf.fit(data.crops, data.labels, data="world station crops", sample_seeds=[
        int(seed), int(seed) + int(n_samples) - 1], class_counts=data.counts(),
        window=DEFAULT_WINDOW_PX, transform="log1p", jitter_px=jitter_px,
        sensor=list(SIM_SENSOR), data_seconds=round(t_data, 2))
    if log:
        log(f"trained {clf.method} in {clf.info['train_seconds']:.1f} s")
    return clf, data


def evaluate_typer(typer: DefectTyper | CropClassifier, n_samples: int = DEFAULT_EVAL_SAMPLES,
                   seed: int = EVAL_SEED) -> dict[str, Any]:
    """Accuracy, per-class table and confusion matrix on crops of held-out simulated samples."""
    if isinstance(typer, CropClassifier):
        typer = DefectTyper(typer)
    clf = typer.classifier
    used = clf.info.get("sample_seeds")
    if used and not (seed + n_samples - 1 < used[0] or seed > used[1]):
        raise ValueError(f"evaluation seeds {seed}..{seed + n_samples - 1} overlap the "
                         f"training seeds {used[0]}..{used[1]}; pick another --seed")
    data = simulated_crops(n_samples, seed, window=typer.window, transform=typer.transform)
    t0 = time.perf_counter()
    pred = clf.predict(data.crops)
    rep = classification_report(data.labels, pred, clf.classes)
    rep.update({"method": clf.method, "sample_seeds": [int(seed), int(seed) + n_samples - 1],
                "predict_seconds": round(time.perf_counter() - t0, 3),
                "per_crop_ms": round(1000 * (time.perf_counter() - t0) / max(len(pred), 1), 3)})
    return rep


def format_report(rep: dict[str, Any]) -> str:
    """Accuracy line, per-class table and the confusion matrix (rows true, columns predicted)."""
    cls = rep["classes"]
    lines = [f"accuracy {rep['accuracy']:.4f} on {rep['n']} held-out crops "
             f"(samples {rep['sample_seeds'][0]}..{rep['sample_seeds'][1]})",
             f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for c, r in rep["per_class"].items():
        lines.append(f"{c:<10}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}"
                     f"{r['support']:>9d}")
    lines.append("confusion (rows true, columns predicted):")
    lines.append(f"{'':<10}" + "".join(f"{c:>9}" for c in cls))
    for c, row in zip(cls, rep["confusion"], strict=True):
        lines.append(f"{c:<10}" + "".join(f"{v:>9d}" for v in row))
    return "\n".join(lines)

