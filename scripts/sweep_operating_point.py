"""Choose a detector's operating point on validation recordings (never on the test set).

Runs the network once per RoI (maps cached as float16 .npz under --cache, keyed by the weights'
hash), then re-clusters the maps for every (T_low, min_high_px) and prints the paper's Table 1
rates and object recall over a T_high grid. The chosen values go into the model card with
`main.py evaluate --data TEST --t-low .. --t-high .. --min-high-px .. --write-card held_out`.

    python scripts/sweep_operating_point.py --data VALSET [VALSET2 ...] \
        [--model F] [--t-low 0.1 0.2] [--min-high-px 1 3] [--cache /tmp/maps]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from inference.detector import DEFAULT_MODEL, Detector, file_sha256
from inference.evaluate import find_recordings, metrics_at, record_roi
from inference.postprocess import find_scratches, scratch_probability


def roi_maps(det: Detector, paths: list[Path], cache: Path):
    """(sample id, RoI, its stack, its p map) for every RoI; each stack is read once, each map
    computed once (cached as CACHE/<recording stem>-<roi>.npz, float16)."""
    import recordings

    for path in paths:
        with recordings.open_recording(path) as rec:
            for i in rec.roi_ids():
                roi = rec.roi(i)
                raw = roi.raw[()]
                f = cache / f"{path.stem}-{i:02d}.npz"
                if not f.exists():
                    p = scratch_probability(det.predict_map(raw),
                                            det.model.config.output_activation)
                    np.savez(f, p=p.astype(np.float16))
                yield rec.sample_id, roi, raw, np.load(f)["p"].astype(np.float32)


def rate(t: dict) -> str:
    return f"{t['fp']:3d}/{t['negatives']:<4d} {t['fn']:3d}/{t['positives']:<4d}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--cache", default="/tmp/operating-point-maps")
    ap.add_argument("--t-low", type=float, nargs="+", default=[0.1])
    ap.add_argument("--min-high-px", type=int, nargs="+", default=[1])
    ap.add_argument("--t-high", type=float, nargs="+",
                    default=[round(0.25 + 0.05 * i, 2) for i in range(12)])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    det = Detector.from_file(args.model)
    cache = Path(args.cache) / file_sha256(Path(args.model))[:12]
    cache.mkdir(parents=True, exist_ok=True)
    paths = find_recordings(args.data)
    combos = [(t_low, k) for t_low in args.t_low for k in args.min_high_px]
    params = {c: replace(det.postprocess_params, t_low=c[0], t_high=c[0], min_high_px=c[1])
              for c in combos}
    records: dict[tuple[float, int], list] = {c: [] for c in combos}
    for sample_id, roi, raw, p in roi_maps(det, paths, cache):
        for c in combos:
            found = find_scratches(p, params[c], raw.shape[-2:])
            records[c].append(record_roi(sample_id, roi, lambda *_, f=found: [
                (d.box_px, d.score) for d in f], raw=raw))
    print(f"{len(paths)} recordings; maps in {cache}")
    print("t_low  k  t_high | sample FP  FN      | image FP  FN       | recall")
    for (t_low, k), recs in records.items():
        for t in args.t_high:
            if t < t_low:
                continue
            m = metrics_at(recs, t)
            print(f"{t_low:5.2f} {k:2d}  {t:5.2f}  | {rate(m['sample'])} | "
                  f"{rate(m['image'])} | {m['object']['recall'] or 0:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
