"""Every inference engine side by side on one full-size simulated RoI (3504 x 3120).

For each thread count: seconds per `Detector.detect_roi` (network + post-processing + typing)
per engine, with the card's 1024 px tiles and in one whole-frame pass (`[detector] tile_px =
3520`), the ratio to one plain fp32 channels-last PyTorch forward of the whole padded frame
measured in the same run (before and after the engines; the lower reading is the
reference), and each one's agreement with the PyTorch detector on the card's tiles: max
|p - p_torch| on truth scratch pixels, whether the verdict and every object box are
identical ("exact"), and otherwise whether the verdict and the scratches are the same within
2 px per box edge ("close"; a whole-frame pass sees context that tiles do not, so pixels near
tile seams differ; `main.py evaluate --tile-px` compares them on held-out data). Prints the
CPU's instruction set beside the figures.

    .venv/bin/python bench/bench_detector_engines.py [--threads 1 2] [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from bench_default_model import full_roi

from inference import engines as E
from inference.detector import DEFAULT_MODEL, Detector
from inference.preprocess import RawScaling
from inference.tiling import network_input

WHOLE_FRAME_TILE_PX = 3520  # >= 3504: one tile, padded to 3136 x 3520


def best_of(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def agreement(res, ref) -> str:
    """"exact": same verdict and boxes; "close": same verdict, scratches within 2 px; "NO"."""
    def boxes(objs):
        return [o.box_px for o in objs]
    if res.verdict == ref.verdict and boxes(res.scratches) == boxes(ref.scratches) \
            and boxes(res.contaminants) == boxes(ref.contaminants):
        return "exact"
    near = len(res.scratches) == len(ref.scratches) and all(
        max(abs(a - b) for a, b in zip(x, y, strict=True)) <= 2
        for x, y in zip(boxes(res.scratches), boxes(ref.scratches), strict=True))
    return "close" if res.verdict == ref.verdict and near else "NO"


def plain_forward_s(det: Detector, stack: np.ndarray, repeat: int) -> float:
    """One fp32 channels-last forward of the whole frame, padded to the network's multiple."""
    h, w = stack.shape[1:]
    ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
    padded = np.pad(stack, ((0, 0), (0, ph - h), (0, pw - w)), mode="reflect")
    x = network_input(padded, RawScaling())[None].contiguous(memory_format=torch.channels_last)
    model = det.model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        return best_of(lambda: model(x)[0], repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    stack, mask, origin = full_roi()
    scratch = F.max_pool2d(torch.from_numpy(mask[None].astype(np.float32)), 2)[0].numpy() > 0
    candidates = [("torch", "fp32"), *E._candidates()[1:]]
    rows = []
    print(f"CPU: {E.instruction_set()}; engines installed: {', '.join(E.available_engines())}; "
          f"RoI {stack.shape[2]} x {stack.shape[1]}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        ref = Detector.from_file(DEFAULT_MODEL, engine="torch", threads=threads)
        plain = plain_forward_s(ref, stack, args.repeat)
        block = []
        ref_roi = ref.detect_roi(stack, 0, origin)
        ref_res = ref.sample_results([ref_roi])
        print(f"\n{threads} thread(s): plain fp32 whole-frame PyTorch forward {plain:.2f} s")
        print(f"  {'engine, tiling':<22} {'s/RoI':>7} {'x plain':>8} {'max|dp| scratch':>16} "
              f"{'objects':>7} {'contaminants ref/this':>22}")
        for tile in (ref.tiling.tile, WHOLE_FRAME_TILE_PX):
            for name, precision in candidates:
                if name == "torch" and tile == ref.tiling.tile:
                    det = ref
                else:
                    det = Detector.from_file(DEFAULT_MODEL, engine="torch", threads=threads)
                    if name != "torch":
                        det._net = E.build_engine(name, det.model, det.card.weights_sha256,
                                                  threads, precision)
                        det.channels_last = det._net.channels_last
                        det.compiled = det._net.fixed_batch
                    det.tiling = replace(det.tiling, tile=tile)
                seconds = best_of(lambda d=det: d.detect_roi(stack, 0, origin), args.repeat)
                roi = det.detect_roi(stack, 0, origin)
                res = det.sample_results([roi])
                dp = float(np.abs(roi.probability - ref_roi.probability)[scratch].max())
                same = agreement(res, ref_res)
                label = f"{name} {precision} " + ("tiles" if tile != WHOLE_FRAME_TILE_PX
                                                  else "whole")
                print(f"  {label:<22} {seconds:7.2f} {seconds / plain:8.2f} {dp:16.2e} "
                      f"{same:>7} {len(ref_res.contaminants):>4}/{len(res.contaminants):<4}")
                block.append({"threads": threads, "engine": label, "tile_px": tile,
                              "s_per_roi": seconds, "max_dp_scratch": dp, "same_objects": same})
        # the reference again, after the engines: the lower of the two readings is used, so a
        # burst of load from elsewhere during one of them does not skew every ratio
        again = plain_forward_s(ref, stack, args.repeat)
        plain = min(plain, again)
        print(f"  plain forward again {again:.2f} s; ratios against {plain:.2f} s:")
        for row in block:
            print(f"    {row['engine']:<22} {row['s_per_roi'] / plain:5.2f}x plain")
            rows.append({**row, "s_per_roi": round(row["s_per_roi"], 3),
                         "plain_forward_s": round(plain, 3),
                         "ratio": round(row["s_per_roi"] / plain, 3)})
    if args.json:
        print(json.dumps({"cpu": E.instruction_set(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
