"""The scratch detector: weights + model card -> per-RoI objects -> sample verdict.

A model is two files side by side: ``NAME.safetensors`` (weights; safetensors cannot execute
code on load, unlike pickle) and ``NAME.json``, the model card: architecture, thresholds,
tiling, RAW scaling, what it was trained on, its metrics, and the SHA-256 of the weights file.
`Detector.from_file` refuses a pair that does not match, naming the file and the fix.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.cards import DetectorCard, ModelLoadError, parse_card, read_card_text
from inference.model import NestedUNet, UNetConfig
from inference.postprocess import Detection, PostprocessParams, postprocess
from inference.preprocess import SPACE_TO_DEPTH_Q, RawScaling
from inference.tiling import PAPER_TILE_PX, TilingParams, predict_tiled
from recordings import DetectedObject, DetectionResults, verdict_of

CARD_FORMAT = "darkfield-detector-card"
CARD_VERSION = 1
DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "default.safetensors"
DEFAULT_TYPER = DEFAULT_MODEL.with_name("typer.safetensors")  # defect typer, issue 10 item 3
DEFAULT_PIXEL_SIZE_MM = 0.0114


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def card_path_for(weights: Path) -> Path:
    return weights.with_suffix(".json")


@dataclass
class ModelCard:
    """Everything needed to rebuild and judge a model (stored as JSON beside the weights)."""

    name: str
    architecture: dict[str, Any]
    postprocess: dict[str, Any] = field(default_factory=lambda: PostprocessParams().to_dict())
    tiling: dict[str, Any] = field(default_factory=lambda: TilingParams().to_dict())
    scaling: dict[str, Any] = field(default_factory=lambda: asdict(RawScaling()))
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    weights_file: str = ""
    created: str = ""
    notes: str = ""
    format: str = CARD_FORMAT
    card_version: int = CARD_VERSION

    @property
    def config(self) -> UNetConfig:
        return UNetConfig.from_dict(self.architecture)

    def summary(self) -> str:
        c = self.config
        return (f"{self.name} (NestedUNet width {c.width:g}, "
                f"{'nested' if c.nested else 'unnested'}, {c.output_activation})")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path) -> ModelCard:
        d = parse_card(text, source, DetectorCard, what="detector model card", fmt=CARD_FORMAT,
                       version_key="card_version", newest=CARD_VERSION)
        return cls(**{k: v for k, v in d.items() if v is not None})


def save_model(model: NestedUNet, path: str | Path, *, name: str | None = None,
               postprocess: PostprocessParams | None = None, tiling: TilingParams | None = None,
               scaling: RawScaling | None = None, training_data: dict[str, Any] | None = None,
               metrics: dict[str, Any] | None = None, notes: str = "") -> tuple[Path, Path]:
    """Write NAME.safetensors + NAME.json; returns both paths."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": CARD_FORMAT,
                                          "architecture": json.dumps(model.config.to_dict())})
    card = ModelCard(
        name=name or path.stem, architecture=model.config.to_dict(),
        postprocess=(postprocess or PostprocessParams()).to_dict(),
        tiling=(tiling or TilingParams()).to_dict(), scaling=asdict(scaling or RawScaling()),
        training_data=training_data or {}, metrics=metrics or {},
        weights_sha256=file_sha256(path), weights_file=path.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"), notes=notes)
    card_path = card_path_for(path)
    card_path.write_text(card.to_json() + "\n")
    return path, card_path


def load_model(path: str | Path) -> tuple[NestedUNet, ModelCard]:
    """Load and check a weights/card pair; raises ModelLoadError with a fix on any problem."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    card_path = card_path_for(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file; pass --model with a .safetensors "
                             f"file exported by inference (default: {DEFAULT_MODEL})")
    if not card_path.exists():
        raise ModelLoadError(f"{path}: its model card {card_path.name} is missing; copy the "
                             ".json that was exported with these weights next to them")
    card = ModelCard.from_json(read_card_text(card_path), card_path)
    digest = file_sha256(path)
    if card.weights_sha256 and card.weights_sha256 != digest:
        raise ModelLoadError(
            f"{path}: weights do not match the model card {card_path.name} (sha256 "
            f"{digest[:12]}... != {card.weights_sha256[:12]}...): the file is damaged or the "
            "pair was mixed up; copy both files of one export together")
    try:  # the dataclasses' own consistency rules (lengths, multiples) beside the schema's
        cfg = card.config
        PostprocessParams.from_dict(card.postprocess)
        TilingParams(**card.tiling)
        RawScaling(**card.scaling)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{card_path}: the model card is not consistent: {exc}") from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc}); the file is "
                             "truncated or corrupt: copy it again from the export") from None
    with torch.device("meta"):  # shapes only: nothing is allocated before the file matches
        expected = NestedUNet(cfg).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} with wrong shape (e.g. {k}: file "
                           f"{tuple(state[k].shape)}, card wants {tuple(expected[k].shape)})")
        raise ModelLoadError(
            f"{path}: weights do not fit the architecture in {card_path.name} (width "
            f"{cfg.width:g}, nested={cfg.nested}): {'; '.join(details)}. Use the card exported "
            "with these weights, or re-export the model")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelLoadError(f"{path}: {len(bad)} tensors contain NaN/Inf (e.g. {bad[0]}): the "
                             "training diverged; export a checkpoint from before it did")
    model = NestedUNet(cfg)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    model.eval()
    return model, card


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass
class RoiDetection:
    """What the detector found in one RoI (objects carry sample-frame mm and boxes)."""

    roi: int
    origin_px: tuple[int, int]  # RoI top-left in the sample pixel frame (row, col)
    pixel_size_mm: float
    shape: tuple[int, int]  # RAW H, W
    output: np.ndarray  # network output y at map resolution (H/2, W/2)
    probability: np.ndarray  # p = max(y, 0)
    scratches: list[Detection]
    contaminants: list[Detection]
    timings_s: dict[str, float] = field(default_factory=dict)

    def detected_objects(self) -> tuple[list[DetectedObject], list[DetectedObject]]:
        """(scratches, contaminants) as recording rows, for per-RoI events and displays."""
        return ([to_detected_object(d) for d in self.scratches],
                [to_detected_object(d) for d in self.contaminants])


def _boxes_touch(a: Sequence[int], b: Sequence[int], tol: int) -> bool:
    return (a[0] - tol < b[2] and b[0] - tol < a[2] and a[1] - tol < b[3] and b[1] - tol < a[3])


def merge_detections(dets: Sequence[Detection],
                     roi_boxes: Mapping[int, tuple[int, int, int, int]], tol_px: int = 16
                     ) -> list[Detection]:
    """Objects of all RoIs in the sample frame; one object seen by two overlapping RoIs is kept
    once. Two detections from *different* RoIs are the same object when their sample-frame boxes
    (grown by tol_px) intersect, and each reaches into the region both RoIs see.

    dets: detections with sample-frame fields set (`Detection.with_origin`);
    roi_boxes: RoI index -> (row0, col0, row1, col1) of the RoI in the sample pixel frame.
    """
    n = len(dets)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # only objects reaching into another RoI can be seen twice: compare those pairwise
    cand = [i for i, d in enumerate(dets) if d.roi in roi_boxes and any(
        k != d.roi and _boxes_touch(d.sample_box_px, b, tol_px) for k, b in roi_boxes.items())]
    for a, i in enumerate(cand):
        di = dets[i]
        for j in cand[a + 1:]:
            dj = dets[j]
            if di.roi == dj.roi:
                continue
            if not _boxes_touch(di.sample_box_px, dj.sample_box_px, tol_px):
                continue
            shared = _intersection(roi_boxes[di.roi], roi_boxes[dj.roi])
            if shared is not None and _boxes_touch(di.sample_box_px, shared, tol_px) and \
                    _boxes_touch(dj.sample_box_px, shared, tol_px):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    merged = []
    for members in groups.values():
        group = [dets[i] for i in members]
        merged.append(group[0] if len(group) == 1 else _merge_group(group))
    merged.sort(key=lambda d: (-d.score, d.y_mm, d.x_mm))
    return merged


def _roi_box(r: RoiDetection) -> tuple[int, int, int, int]:
    r0, c0 = r.origin_px
    return (r0, c0, r0 + r.shape[0], c0 + r.shape[1])


def _intersection(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int, int] | None:
    r0, c0, r1, c1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (r0, c0, r1, c1) if r0 < r1 and c0 < c1 else None


def to_detected_object(d: Detection) -> DetectedObject:
    """As a `recordings.DetectedObject` (the row of /results/scratches or /contaminants)."""
    return DetectedObject(
        roi=int(d.roi), box_px=tuple(int(v) for v in d.box_px), x_mm=float(d.x_mm),
        y_mm=float(d.y_mm), length_mm=float(d.length_mm), width_px=float(d.width_px),
        score=float(d.score), type=str(d.extra.get("type", "")),
        type_score=float(d.extra.get("type_score", math.nan)))


def _merge_group(dets: list[Detection]) -> Detection:
    """One object from its views in several RoIs: union box, best score, longest extent."""
    best = max(dets, key=lambda d: (d.area_px, d.score))
    boxes = np.array([d.sample_box_px for d in dets])
    ub = (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()),
          int(boxes[:, 3].max()))
    diag = math.hypot(ub[2] - ub[0], ub[3] - ub[1])
    lengths = [d.length_px for d in dets]
    length_px = max(max(lengths), min(sum(lengths), diag))
    px_mm = best.pixel_size_mm
    out = replace(best, score=max(d.score for d in dets), sample_box_px=ub, length_px=length_px,
                  length_mm=length_px * px_mm, width_px=max(d.width_px for d in dets),
                  x_mm=(ub[1] + ub[3]) / 2 * px_mm, y_mm=(ub[0] + ub[2]) / 2 * px_mm,
                  extra={**best.extra, "rois": sorted({d.roi for d in dets})})
    return out


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------

def _with_default_typer(options: dict[str, Any]) -> dict[str, Any]:
    """Options plus the bundled defect typer (weights/typer.*) unless typer= was given."""
    if "typer" in options or not DEFAULT_TYPER.exists():
        return options
    from inference.classifiers.station import DefectTyper

    return {**options, "typer": DefectTyper.from_file(DEFAULT_TYPER)}


class Detector:
    """Runs the network over RoIs and turns its map into scratches and contaminants.

    channels_last (NHWC) is the default: ~1.5x faster here on CPU (oneDNN) and the layout the
    tensor cores want on CUDA; amp_dtype=torch.bfloat16 for autocast on CUDA.
    """

    def __init__(self, model: NestedUNet, card: ModelCard | None = None, *,
                 device: str | torch.device = "cpu", amp_dtype: torch.dtype | None = None,
                 channels_last: bool = True, compile: bool = False,
                 postprocess_params: PostprocessParams | None = None,
                 tiling: TilingParams | None = None, materialize: bool = True,
                 typer: Any = None, engine: str = "torch", threads: int | None = None):
        self.card = card or ModelCard(name="unsaved", architecture=model.config.to_dict())
        self.device = torch.device(device)
        if materialize and model.is_nested:
            model = copy.deepcopy(model).materialize()  # the caller's model stays nested
        model = model.to(self.device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._net: Callable[[torch.Tensor], Any] = (torch.compile(model) if compile else model)
        self.compiled = compile
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.postprocess_params = postprocess_params or PostprocessParams.from_dict(
            self.card.postprocess)
        self.tiling = tiling or TilingParams(**self.card.tiling)
        self.engine = "torch fp32" if self.device.type == "cpu" else f"torch {self.device.type}"
        if engine != "torch" and self.device.type == "cpu" and not compile:
            self._use_engine(engine, threads)
        elif threads:
            torch.set_num_threads(threads)
        self.scaling = RawScaling(**self.card.scaling)
        self.sha256 = self.card.weights_sha256
        # calibration hook: (S, H, W) uint16 -> uint16 RAW (dark/flat corrected), or None.
        # Set by the caller (calibration.attach_to_detector); inference never imports it.
        self.raw_correction: Callable[[np.ndarray], np.ndarray] | None = None
        # defect typer (inference.classifiers.station.DefectTyper) or None: when set,
        # detect_roi types every object from the uncorrected RAW stack (as it was trained).
        self.typer = typer

    def _use_engine(self, engine: str, threads: int | None) -> None:
        """Run the network with another engine (inference.engines); "auto" measures them."""
        from inference.engines import build_engine, choose_engine

        sha = self.card.weights_sha256
        if engine == "auto":  # ranked on one tile of at most the card's size: quick to time,
            side = min(self.tiling.tile, PAPER_TILE_PX)  # and the ranking carries over
            states = self.model.config.in_channels // SPACE_TO_DEPTH_Q ** 2
            net, choice = choose_engine(self.model, sha, (1, states, side, side), threads)
        else:
            net = build_engine(engine, self.model, sha, threads)
        self._net = net
        self.channels_last = net.channels_last
        self.compiled = net.fixed_batch  # a fixed input shape per frame size
        self.engine = f"{net.name} {net.precision}"

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_MODEL, **options: Any) -> Detector:
        """Load NAME.safetensors + NAME.json (see `load_model`); options go to __init__.
        The bundled defect typer is attached when present, unless typer= is given."""
        model, card = load_model(path)
        return cls(model, card, **_with_default_typer(options))

    @classmethod
    def from_settings(cls, settings: Any, model_path: str | Path | None = None,
                      **options: Any) -> Detector:
        """From the station config's [detector] section (duck-typed: inference does not import
        rig). Settings override the model card's thresholds and tiling. The bundled defect typer
        (weights/typer.safetensors + .json) is attached when present, unless typer= is given."""
        path = Path(model_path or getattr(settings, "model", "") or DEFAULT_MODEL)
        model, card = load_model(path)
        def g(name: str, default: Any) -> Any:  # an unset (None) setting keeps the card's value
            value = getattr(settings, name, None)
            return default if value is None else value

        pp = PostprocessParams.from_dict(card.postprocess)
        clusterer = g("clusterer", None)
        pp = replace(
            pp, t_low=g("t_low", pp.t_low), t_high=g("t_high", pp.t_high),
            min_high_px=int(g("min_high_px", pp.min_high_px)),
            eps=float(g("dbscan_eps", pp.eps)), min_samples=int(g("dbscan_min_samples",
                                                                  pp.min_samples)),
            cluster_downsample=int(g("cluster_downscale", pp.cluster_downsample)),
            contaminant_threshold=g("contaminant_threshold", pp.contaminant_threshold),
            method={"dbscan": "dbscan", "hysteresis": "fast", "fast": "fast"}.get(
                clusterer, pp.method) if clusterer else pp.method)
        tp = TilingParams(**card.tiling)
        tp = replace(tp, tile=int(g("tile_px", tp.tile)),
                     overlap=int(g("tile_overlap_px", tp.overlap)),
                     batch_size=int(g("batch_size", tp.batch_size)))
        # 0: all cores; acquisition mostly waits on devices (bench/bench_scan_cycle.py --threads)
        options.setdefault("threads", int(g("threads", 0)) or (os.cpu_count() or 1))
        options.setdefault("engine", g("engine", "torch"))
        options = _with_default_typer(options)
        device = options.pop("device", g("device", "cpu"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(model, card, device=device, postprocess_params=pp, tiling=tp, **options)

    @property
    def name(self) -> str:
        """The model and how it runs: recorded in /results, so a re-inference can match it."""
        return f"{self.card.summary()} · {self.engine}"

    def predict_map(self, stack: np.ndarray, black_level: float | None = None,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Network output y at map resolution (H/2, W/2), float32.

        `raw_correction`, when set, maps the (6, H, W) uint16 stack to a corrected one first.
        """
        if self.raw_correction is not None:
            stack = self.raw_correction(np.asarray(stack))
        scaling = (self.scaling if black_level is None
                   else replace(self.scaling, black_level=float(black_level)))
        return predict_tiled(self._net, stack, self.tiling, scaling, self.device,
                             self.amp_dtype, self.channels_last, progress,
                             fixed_batch=self.compiled)

    def detect_roi(self, stack: np.ndarray, roi: int = -1, origin_px: tuple[int, int] = (0, 0),
                   pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM,
                   black_level: float | None = None,
                   edge_mask: np.ndarray | None = None) -> RoiDetection:
        """One RoI stack (6, H, W) -> probability map and objects with sample-frame mm.

        roi: the RoI's index (carried into every object); origin_px: the RoI's top-left
        (row, col) in the sample pixel frame; black_level: RAW DN, default the model card's;
        edge_mask: map-resolution True outside the glass / on its outline (rig.layout.
        glass_edge_mask): contaminants there are the edge and are not listed.
        """
        if not isinstance(roi, int | np.integer):
            raise TypeError("detect_roi(stack, roi, origin_px, pixel_size_mm, black_level): "
                            f"roi must be the RoI index, got {roi!r}; pass origin_px by keyword")
        t0 = time.perf_counter()
        stack = np.asarray(stack)
        y = self.predict_map(stack, black_level)
        t1 = time.perf_counter()
        shape = (int(stack.shape[-2]), int(stack.shape[-1]))
        p, scratches, contaminants = postprocess(
            y, self.postprocess_params, self.model.config.output_activation, shape, edge_mask)
        org = (int(origin_px[0]), int(origin_px[1]))
        scratches = [d.with_origin(org, pixel_size_mm, roi) for d in scratches]
        contaminants = [d.with_origin(org, pixel_size_mm, roi) for d in contaminants]
        t2 = time.perf_counter()
        timings = {"network_s": t1 - t0, "postprocess_s": t2 - t1}
        if self.typer is not None and (scratches or contaminants):
            self.typer.type_detections(stack, scratches + contaminants)
            timings["typing_s"] = time.perf_counter() - t2
        return RoiDetection(roi, org, float(pixel_size_mm), shape, y, p, scratches,
                            contaminants, timings)

    def sample_results(self, rois: Iterable[RoiDetection],
                       timings_s: Mapping[str, float] | None = None) -> DetectionResults:
        """The one place a sample's results are built, for `scan`, `infer` and the GUI alike:
        the RoIs merged in the sample frame (an object two RoIs see is kept once), objects as
        recording rows, the verdict, the probability maps and this detector's identity."""
        rois = sorted(rois, key=lambda r: r.roi)
        boxes = {r.roi: _roi_box(r) for r in rois}
        scratches = [to_detected_object(d) for d in
                     merge_detections([d for r in rois for d in r.scratches], boxes)]
        contaminants = [to_detected_object(d) for d in
                        merge_detections([d for r in rois for d in r.contaminants], boxes)]
        return DetectionResults(
            detector=self.name, model_sha256=self.sha256 or "", verdict=verdict_of(scratches),
            scratches=scratches, contaminants=contaminants,
            probability_maps={r.roi: r.probability for r in rois},
            timings_s={k: float(v) for k, v in (timings_s or {}).items()},
            probability_scale=self.probability_scale)

    @property
    def probability_scale(self) -> int:
        """RAW pixels per probability-map pixel."""
        return self.postprocess_params.map_scale
