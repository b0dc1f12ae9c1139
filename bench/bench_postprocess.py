"""Paper DBSCAN (scikit-learn) vs the image-operation formulation of the same clustering.

Maps are network-output-like (inference.synthetic.synthetic_output_map) at the map resolution
of one full 3504 x 3120 RoI (1560 x 1752):
  typical - 3 scratches with breaks, 2 faint streaks, 200 false-positive speckles, 20 dust blobs
  busy    - 12 scratches, 8 streaks, 5000 speckles, 200 blobs
  dense   - busy + a large glare band at p ~ 0.3-0.5 (~12 % of the RoI above T_low): the case
            where DBSCAN's neighbourhood lists grow as n x (points within eps)
For each map: median time of the clustering alone and of the whole post-processing, and
whether both give identical objects (box, length, width, score) and identical labels.

    .venv/bin/python bench/bench_postprocess.py [--repeat 5] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from inference.postprocess import (
    PostprocessParams,
    labels_dbscan,
    labels_fast,
    make_cells,
    postprocess,
    scratch_probability,
)
from inference.synthetic import synthetic_output_map


def make_map(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "typical":
        return synthetic_output_map(rng)[0]
    y = synthetic_output_map(rng, n_scratches=12, n_faint=8, n_speckles=5000,
                             n_contaminants=200)[0]
    if kind == "dense":
        h, w = y.shape
        rr, cc = np.mgrid[0:h, 0:w]
        band = (np.abs(rr - 0.3 * cc - 200) < 110) & (rng.random((h, w)) < 0.8)
        y = np.where(band, np.maximum(y, rng.uniform(0.3, 0.5, (h, w)).astype(np.float32)), y)
    return y


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def key(dets) -> list[tuple]:
    return [(d.box_px, round(d.length_px, 6), round(d.width_px, 6), round(d.score, 6))
            for d in dets]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    # warm imports (sklearn's first import costs ~0.3 s) so they do not count
    labels_dbscan(make_cells(np.ones((16, 16), np.float32), PostprocessParams()),
                  PostprocessParams())
    print(f"{'map':8s} {'seed':>4s} {'cells':>7s} {'objects':>7s} | {'cluster dbscan':>14s} "
          f"{'cluster fast':>12s} | {'total dbscan':>12s} {'total fast':>10s} | identical")
    all_same = True
    for kind in ("typical", "busy", "dense"):
        for seed in range(args.seeds):
            y = make_map(kind, seed)
            p = scratch_probability(y)
            pd, pf = PostprocessParams(method="dbscan"), PostprocessParams(method="fast")
            cells = make_cells(p, pd)
            tcd, ld = timed(lambda cells=cells, pd=pd: labels_dbscan(cells, pd), args.repeat)
            tcf, lf = timed(lambda cells=cells, pf=pf: labels_fast(cells, pf), args.repeat)
            ttd, od = timed(lambda y=y, pd=pd: postprocess(y, pd), max(1, args.repeat // 2))
            ttf, of = timed(lambda y=y, pf=pf: postprocess(y, pf), max(1, args.repeat // 2))
            same = bool(np.array_equal(ld, lf)) and key(od[1]) == key(of[1])
            all_same &= same
            print(f"{kind:8s} {seed:4d} {len(cells.coords):7d} {len(of[1]):3d}+{len(of[2]):<3d} | "
                  f"{tcd * 1e3:11.1f} ms {tcf * 1e3:9.1f} ms | {ttd * 1e3:9.1f} ms "
                  f"{ttf * 1e3:7.1f} ms | {same}")
    print(f"\nall identical: {all_same}")


if __name__ == "__main__":
    main()
