"""Effect of calibration on detection under strong illumination non-uniformity (issue 9).

A simulated bench with strong shading (facet-pair gradient 0.5, curvature 0.35, vignetting
radius 45 mm, facet balance sd 12 %; every radius scaled to the sensor's field so a small test
sensor is as non-uniform as a full one) is calibrated through the real procedure (emulated
devices, `CalibrationSession`: dark, LED balance, flat). Then the same virtual samples are
rendered twice through the same optics and noise seeds:

* uncalibrated: nominal LED levels, raw frames straight to the detector;
* calibrated: balanced LED levels, frames through the detector's `raw_correction` hook
  (dark subtraction, flat field, hot-pixel repair, back to RAW DN).

Both runs use the same detector (default: the bundled model). Reported per case: FP / FN rates
at sample level and image (RoI) level as in the paper's Table 1, object-level recall of truth
scratches, and false scratch objects per RoI.

    .venv/bin/python bench/bench_calibration_effect.py [--model FILE] [--samples 20]
           [--sensor 1024x1024] [--seed 0] [--json OUT] [--threads 1]

Exit status 2 with a one-line reason when there is no model to evaluate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FULL_WIDTH_PX = 3504
STRONG = {"illumination_gradient": 0.5, "illumination_curvature": 0.35,
          "facet_balance_sd": 0.12}
STRONG_VIGNETTING_MM = 45.0
STRONG_ILLUMINATION_RADIUS_MM = 20.0
MIN_SCRATCH_PX = 20
"""An RoI counts as scratched when its truth mask has at least this many pixels."""
MATCH_MARGIN_PX = 8


def strong_optics(sensor_w: int):
    from world.optics import OpticsConfig

    f = sensor_w / FULL_WIDTH_PX
    return OpticsConfig(illumination_radius_mm=STRONG_ILLUMINATION_RADIUS_MM * f,
                        vignetting_radius_mm=STRONG_VIGNETTING_MM * f, **STRONG)


@dataclass
class Tally:
    rois: int = 0
    roi_pos: int = 0
    roi_fn: int = 0
    roi_fp: int = 0
    samples: int = 0
    sample_pos: int = 0
    sample_fn: int = 0
    sample_fp: int = 0
    truth_scratches: int = 0
    found_scratches: int = 0
    false_objects: int = 0
    seconds: float = 0.0
    per_sample: list[dict] = field(default_factory=list)

    def report(self) -> dict:
        def rate(a: int, b: int) -> float:
            return round(a / b, 4) if b else float("nan")

        return {
            "sample_fp_rate": rate(self.sample_fp, self.samples - self.sample_pos),
            "sample_fn_rate": rate(self.sample_fn, self.sample_pos),
            "image_fp_rate": rate(self.roi_fp, self.rois - self.roi_pos),
            "image_fn_rate": rate(self.roi_fn, self.roi_pos),
            "object_recall": rate(self.found_scratches, self.truth_scratches),
            "false_scratch_objects_per_roi": rate(self.false_objects, self.rois),
            "samples": self.samples, "scratched_samples": self.sample_pos, "rois": self.rois,
            "scratched_rois": self.roi_pos, "truth_scratches": self.truth_scratches,
            "detect_s": round(self.seconds, 1),
        }


def _touch(a, b, m: int) -> bool:
    return a[0] - m < b[2] and b[0] - m < a[2] and a[1] - m < b[3] and b[1] - m < a[3]


def score_roi(tally: Tally, det, truth) -> tuple[bool, bool]:
    """Add one RoI's result; returns (truly scratched, detected scratched)."""
    mask = truth.scratch_mask
    positive = int(mask.sum()) >= MIN_SCRATCH_PX
    predicted = bool(det.scratches)
    tally.rois += 1
    tally.roi_pos += positive
    tally.roi_fn += positive and not predicted
    tally.roi_fp += predicted and not positive
    boxes = [d["geometry"]["roi_box_px"] for d in truth.defects if d["kind"] == "scratch"]
    tally.truth_scratches += len(boxes)
    tally.found_scratches += sum(any(_touch(b, s.box_px, MATCH_MARGIN_PX) for s in det.scratches)
                                 for b in boxes)
    tally.false_objects += sum(not any(_touch(b, s.box_px, MATCH_MARGIN_PX) for b in boxes)
                               for s in det.scratches)
    return positive, predicted


def calibrate_bench(cfg, optics, frames: int):
    """Dark, LED balance and flat through the real procedure on the emulated devices."""
    from calibration.procedures import CalibrationOptions, CalibrationSession
    from rig.rig import build_rig

    with build_rig(cfg) as rig:
        rig.camera.set_optics(optics)
        options = CalibrationOptions(dark_frames=frames, flat_frames=frames)
        return CalibrationSession(rig, cfg, options).run(["dark", "leds", "flat"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="detector weights (default: bundled model)")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--sensor", default="1024x1024", help="RoI size WxH (default 1024x1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scratch-fraction", type=float, default=0.5)
    p.add_argument("--frames", type=int, default=8, help="frames per dark / flat state")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)

    import torch

    from calibration.apply import corrector_for
    from inference.detector import DEFAULT_MODEL, Detector, ModelLoadError
    from rig.config import load_config
    from rig.geometry import roi_grid
    from world.optics import DarkFieldRenderer
    from world.sample import DefectMix, make_sample
    from world.simulate import sample_seed

    torch.set_num_threads(args.threads)
    model = Path(args.model) if args.model else DEFAULT_MODEL
    try:
        detector = Detector.from_file(model, device="cpu")
    except ModelLoadError as exc:
        print(f"no model to evaluate: {exc}", file=sys.stderr)
        return 2
    w, h = (int(v) for v in args.sensor.lower().split("x"))
    base = load_config()
    cfg = base.model_copy(update={
        "camera": base.camera.model_copy(update={"width": w, "height": h}),
        "sim": base.sim.model_copy(update={"realtime": False})})
    optics = strong_optics(w)
    t0 = time.monotonic()
    cal = calibrate_bench(cfg, optics, args.frames)
    print(f"calibrated {cal.calibration_id} in {time.monotonic() - t0:.0f} s: LED spread "
          f"{100 * cal.leds.spread_before:.1f} % -> {100 * cal.leds.spread_after:.2f} %, "
          f"shading {100 * max(cal.flat.stats['raw_nonuniformity_p2p']):.1f} % -> "
          f"{100 * max(cal.flat.stats['residual_nonuniformity_p2p']):.2f} % (p2p, worst state)")
    balanced = np.asarray(cal.leds.levels, dtype=np.float64) / 255.0
    corrector = corrector_for(cal, cfg.camera.exposure_us)  # built once: gain maps expanded once
    pix = cfg.scan.pixel_size_mm
    s = cfg.sample
    grid = roi_grid(s.width_mm, s.length_mm, w, h, pix, columns=cfg.scan.columns,
                    rows=cfg.scan.rows)
    regions = [(c0 * pix, r0 * pix, (c0 + w) * pix, (r0 + h) * pix) for _, _, r0, c0 in grid]
    mix = DefectMix(scratch_fraction=args.scratch_fraction)
    tallies = {"uncalibrated": Tally(), "calibrated": Tally()}
    for n in range(args.samples):
        seed = sample_seed(args.seed, n)
        sample = make_sample(seed, mix, width_mm=s.width_mm, length_mm=s.length_mm,
                             corner_radius_mm=s.corner_radius_mm, regions_mm=regions)
        renderer = DarkFieldRenderer(sample, (w, h), pix, optics)
        flags = {k: [False, False] for k in tallies}
        for i, (_, _, r0, c0) in enumerate(grid):
            truth = renderer.truth((r0, c0))
            raw = renderer.render_stack((r0, c0), frame_counter=6 * i)
            lit = np.stack([renderer.render((r0, c0), levels=_pair(balanced, k),
                                            frame_counter=6 * i + k) for k in range(6)])
            for name, stack in (("uncalibrated", raw), ("calibrated", lit)):
                # what calibration.attach_to_detector does, without rebuilding per RoI
                detector.raw_correction = corrector if name == "calibrated" else None
                t = time.monotonic()
                det = detector.detect_roi(stack, i, (r0, c0), pix)
                tallies[name].seconds += time.monotonic() - t
                pos, pred = score_roi(tallies[name], det, truth)
                flags[name][0] |= pos
                flags[name][1] |= pred
        for name, (pos, pred) in flags.items():
            t = tallies[name]
            t.samples += 1
            t.sample_pos += pos
            t.sample_fn += pos and not pred
            t.sample_fp += pred and not pos
        renderer.close()
        print(f"sample {n + 1}/{args.samples} ({sample.sample_id}): "
              + "  ".join(f"{k} {'FAIL' if v[1] else 'PASS'}" for k, v in flags.items())
              + f"  truth {'scratched' if flags['calibrated'][0] else 'clean'}", flush=True)
    result = {"model": str(model), "model_sha256": detector.sha256, "sensor": [w, h],
              "optics": {**STRONG, "vignetting_radius_mm": optics.vignetting_radius_mm,
                         "illumination_radius_mm": optics.illumination_radius_mm},
              "calibration_id": cal.calibration_id,
              "results": {k: t.report() for k, t in tallies.items()}}
    print(f"{'':14} {'sample FP':>10} {'sample FN':>10} {'image FP':>9} {'image FN':>9} "
          f"{'recall':>7} {'false obj/RoI':>14}")
    for k, r in result["results"].items():
        print(f"{k:14} {r['sample_fp_rate']:>10.3f} {r['sample_fn_rate']:>10.3f} "
              f"{r['image_fp_rate']:>9.3f} {r['image_fn_rate']:>9.3f} {r['object_recall']:>7.3f} "
              f"{r['false_scratch_objects_per_roi']:>14.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _pair(levels: np.ndarray, state: int) -> np.ndarray:
    """Facet levels of state k with the balanced PWM: facets k and k + 6 only."""
    lv = np.zeros(12)
    lv[state] = levels[state]
    lv[state + 6] = levels[state + 6]
    return lv


if __name__ == "__main__":
    sys.exit(main())
