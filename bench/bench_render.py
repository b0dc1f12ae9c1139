"""Render speed of the simulated dark-field bench (issue 3 target: median <= 0.2 s per frame).

    .venv/bin/python bench/bench_render.py [--repeats 5] [--threads 1] [--sensor 3504x3120]

Prints the median time of one full RAW frame (RoI cache warm, as within a stack) and of a whole
RoI stack (6 states, including building the RoI's defect cache), over several RoIs of a
scratched sample (the RoIs that see the most defects).
"""

from __future__ import annotations

import argparse
import statistics
import time

from rig.geometry import DEFAULT_PIXEL_SIZE_MM, roi_grid
from world.optics import DarkFieldRenderer, OpticsConfig
from world.sample import make_sample
from world.simulate import parse_sensor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="stacks per RoI (default 5)")
    ap.add_argument("--rois", type=int, default=3, help="RoIs of the sample to render (default 3)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sensor", default="3504x3120")
    ap.add_argument("--seed", type=int, default=12, help="sample seed (12: a long scratch)")
    args = ap.parse_args()
    w, h = parse_sensor(args.sensor)
    sample = make_sample(args.seed)
    grid = roi_grid(sample.width_mm, sample.length_mm, w, h, DEFAULT_PIXEL_SIZE_MM)
    ranker = DarkFieldRenderer(sample, (w, h), cache_rois=len(grid))
    n_seen = {g: len(ranker.visible_defects((g[2], g[3]))) for g in grid}
    order = sorted(grid, key=lambda g: -n_seen[g])[: args.rois]  # busiest RoIs
    frame_s, stack_s = [], []
    cfg = OpticsConfig(threads=args.threads)
    for rep in range(args.repeats):
        renderer = DarkFieldRenderer(sample, (w, h), config=cfg)  # cold RoI caches each repeat
        for _, _, r0, c0 in order:
            t0 = time.perf_counter()
            for k in range(6):
                t1 = time.perf_counter()
                renderer.render((r0, c0), k, frame_counter=rep * 6 + k)
                if k > 0:  # state 0 also builds the RoI cache; counted in the stack time
                    frame_s.append(time.perf_counter() - t1)
            stack_s.append(time.perf_counter() - t0)
        renderer.close()
    n_def = [n_seen[g] for g in order]
    print(f"sensor {w}x{h}, sample seed {args.seed} ({'scratched' if sample.has_scratch else 'clean'}), "
          f"RoIs {[(g[2], g[3]) for g in order]} with {n_def} defects, threads {args.threads}")
    print(f"full frame : median {statistics.median(frame_s):.3f} s  "
          f"(min {min(frame_s):.3f}, max {max(frame_s):.3f}, n={len(frame_s)})  target <= 0.200 s")
    print(f"RoI stack  : median {statistics.median(stack_s):.3f} s  "
          f"(min {min(stack_s):.3f}, max {max(stack_s):.3f}, n={len(stack_s)}; 6 states + RoI cache)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
