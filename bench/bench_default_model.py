"""Time per full 3504 x 3120 RoI of a trained model (default: the bundled one) on this CPU.

Renders one full-size simulated RoI (a scratched virtual sample through world's optics, the
RoI that contains its first scratch), then runs `Detector.detect_roi` on it `--repeat` times
for each thread count: network (tiled, 20 tiles of 1024 x 1024), post-processing, total.

    .venv/bin/python bench/bench_default_model.py [--model F] [--threads 1 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from inference.detector import DEFAULT_MODEL, Detector


def full_roi(seed: int = 3) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    from world.optics import DarkFieldRenderer
    from world.sample import DefectMix, make_sample

    sample = make_sample(seed, DefectMix(scratch_fraction=1.0))
    sc = sample.of_kind("scratch")[0]
    x, y = sc.centre_mm()
    pix = 0.0114
    origin = (max(0, int(y / pix) - 1560) // 2 * 2, max(0, int(x / pix) - 1752) // 2 * 2)
    ren = DarkFieldRenderer(sample, (3504, 3120), pix)
    stack = ren.render_stack(origin)
    mask = ren.truth(origin).scratch_mask
    ren.close()
    return stack, mask, origin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    stack, mask, origin = full_roi()
    out = {"model": args.model, "roi_shape": list(stack.shape), "cpu_count": os.cpu_count(),
           "load_average_1min": os.getloadavg()[0], "runs": []}
    for n in args.threads:
        torch.set_num_threads(n)
        det = Detector.from_file(args.model)
        det.detect_roi(stack[:, :1024, :1024])  # warm-up (oneDNN primitives)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = det.detect_roi(stack, roi=0, origin_px=origin)
            times.append((time.perf_counter() - t0, r.timings_s["network_s"],
                          r.timings_s["postprocess_s"]))
        found = any(mask[d.box_px[0]:d.box_px[2], d.box_px[1]:d.box_px[3]].any()
                    for d in r.scratches)
        out["runs"].append({
            "threads": n, "total_s": round(statistics.median(t[0] for t in times), 2),
            "network_s": round(statistics.median(t[1] for t in times), 2),
            "postprocess_s": round(statistics.median(t[2] for t in times), 3),
            "scratches": len(r.scratches), "truth_scratch_found": found})
    out["load_average_1min_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.model}: full RoI {stack.shape[2]} x {stack.shape[1]}, "
          f"load average {out['load_average_1min']:.1f} -> {out['load_average_1min_after']:.1f}"
          f" on {out['cpu_count']} cores")
    for r in out["runs"]:
        print(f"  threads {r['threads']}: {r['total_s']:.2f} s per RoI (network "
              f"{r['network_s']:.2f} s, post-processing {r['postprocess_s']:.3f} s); "
              f"{r['scratches']} scratch(es), truth scratch found: {r['truth_scratch_found']}")


if __name__ == "__main__":
    main()
