"""Time per full 3504 x 3120 RoI for each NestedUNet variant (CPU), and the CUDA path.

CPU: every width variant, materialised (plain convolutions), fp32, 20 tiles of 1024 x 1024
with >= 256 px overlap per RoI. Wide variants take minutes per RoI on a small CPU, so by
default at most --max-tiles tiles are timed and the per-RoI figure is extrapolated from the
per-tile time (marked "extrapolated"); --max-tiles 0 runs whole RoIs.

CUDA (when available): the full model in fp32, bf16 autocast, bf16 + channels_last, and
bf16 + channels_last + torch.compile; tiles/s, ms per RoI and achieved TFLOP/s against the
GPU's dense bf16 peak (table below or --peak-tflops).

    .venv/bin/python bench/bench_detector.py [--widths 1 0.5 0.25 0.125] [--threads 2]
    .venv/bin/python bench/bench_detector.py --cuda-only --batch-size 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from inference.model import NestedUNet, UNetConfig, conv_flops, count_parameters
from inference.postprocess import PostprocessParams, postprocess
from inference.preprocess import RawScaling, prepare_input
from inference.tiling import TilingParams, plan_tiles, predict_tiled

RAW_H, RAW_W = 3120, 3504

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
    "H100 NVL": 835.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
    "RTX 4090": 165.0, "RTX 3090": 71.0,
}


def peak_for(name: str) -> float | None:
    for key, v in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return v
    if "H100" in name:
        return 989.0
    return None


def synthetic_roi(seed: int = 0) -> np.ndarray:
    """A full RoI stack: dark background with shot/read noise and a few bright lines."""
    rng = np.random.default_rng(seed)
    st = (64 + rng.poisson(4.0, (6, RAW_H, RAW_W))).astype(np.uint16)
    for k in range(6):
        st[k, 1000:1002, 500:2500] += np.uint16(300 * (k == 2))
        st[k, 2000:2010, 1500:1510] = 4095
    return st


def model_for(width: float) -> NestedUNet:
    torch.manual_seed(0)
    return NestedUNet(UNetConfig(width=width)).eval().materialize()


def time_cpu(width: float, stack: np.ndarray, max_tiles: int, batch: int,
             channels_last: bool) -> dict:
    model = model_for(width)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    lay = plan_tiles(RAW_H, RAW_W)
    flops_tile = conv_flops(UNetConfig(width=width, nested=False), 512, 512)
    params = TilingParams(batch_size=batch)
    with torch.inference_mode():  # warm-up (oneDNN primitives, allocator)
        model(prepare_input(stack[:, :1024, :1024]).contiguous(memory_format=fmt))
    if max_tiles and max_tiles < lay.n_tiles:
        x = prepare_input(stack[:, :1024, :1024]).expand(min(batch, max_tiles), -1, -1, -1)
        x = x.contiguous(memory_format=fmt)
        done, t = 0, time.perf_counter()
        with torch.inference_mode():
            while done < max_tiles:
                model(x)
                done += x.shape[0]
        per_tile = (time.perf_counter() - t) / done
        note = f"extrapolated from {done} tiles"
    else:
        t = time.perf_counter()
        y = predict_tiled(model, stack, params, channels_last=channels_last)
        per_tile = (time.perf_counter() - t) / lay.n_tiles
        t = time.perf_counter()
        postprocess(y, PostprocessParams())
        note = f"whole RoI measured; post-processing {time.perf_counter() - t:.2f} s"
    return {"width": width, "s_per_roi": per_tile * lay.n_tiles, "s_per_tile": per_tile,
            "gflops": flops_tile / per_tile / 1e9, "note": note}


def time_cuda(stack: np.ndarray, batch: int, repeat: int, peak: float | None,
              width: float = 1.0) -> list[dict]:
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    peak = peak or peak_for(name)
    flops_tile = conv_flops(UNetConfig(width=width, nested=False), 512, 512)
    n_tiles = plan_tiles(RAW_H, RAW_W).n_tiles
    rows = []
    for label, amp, cl, comp in [("fp32", None, False, False),
                                 ("fp32 tf32", None, False, False),
                                 ("bf16", torch.bfloat16, False, False),
                                 ("bf16 channels_last", torch.bfloat16, True, False),
                                 ("bf16 channels_last compiled", torch.bfloat16, True, True)]:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = \
            label == "fp32 tf32" or amp is not None
        model = model_for(width).to(dev)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model, mode="max-autotune-no-cudagraphs") if comp else model
        params = TilingParams(batch_size=batch)
        for _ in range(2):  # warm-up (and compilation)
            predict_tiled(net, stack, params, RawScaling(), dev, amp, cl)
        torch.cuda.synchronize()
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            predict_tiled(net, stack, params, RawScaling(), dev, amp, cl)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        dt = statistics.median(times)
        tflops = flops_tile * n_tiles / dt / 1e12
        rows.append({"variant": label, "ms_per_roi": dt * 1e3, "tiles_per_s": n_tiles / dt,
                     "tflops": tflops, "peak": peak,
                     "pct_peak": (100 * tflops / peak) if peak else None, "gpu": name})
        del net, model
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=float, nargs="*", default=[1.0, 0.5, 0.25, 0.125])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--max-tiles", type=int, default=4,
                    help="time at most this many tiles per variant on CPU (0 = whole RoI)")
    ap.add_argument("--full-roi-below", type=float, default=0.3,
                    help="widths at or below this always run a whole RoI")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--contiguous", action="store_true",
                    help="NCHW on CPU (default: channels_last, ~1.5x faster here)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--cuda-only", action="store_true")
    ap.add_argument("--cpu-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    stack = synthetic_roi()
    lay = plan_tiles(RAW_H, RAW_W)
    print(f"RoI {RAW_W} x {RAW_H}: {lay.n_tiles} tiles of 1024 x 1024 (rows {lay.rows}, "
          f"cols {lay.cols}); torch {torch.__version__}")
    if not args.cuda_only:
        print(f"\nCPU, {args.threads} threads, fp32, materialised, batch {args.batch_size}, "
              f"{'NCHW' if args.contiguous else 'channels_last'}")
        print(f"{'width':>6s} {'params':>8s} {'GFLOP/tile':>10s} {'s/tile':>8s} {'s/RoI':>8s} "
              f"{'GFLOP/s':>8s}  note")
        for w in args.widths:
            n = count_parameters(UNetConfig(width=w, nested=False)).total
            max_tiles = 0 if w <= args.full_roi_below else args.max_tiles
            r = time_cpu(w, stack, max_tiles, args.batch_size, not args.contiguous)
            gf = conv_flops(UNetConfig(width=w, nested=False), 512, 512) / 1e9
            print(f"{w:6g} {n / 1e6:7.2f}M {gf:10.1f} {r['s_per_tile']:8.2f} "
                  f"{r['s_per_roi']:8.1f} {r['gflops']:8.1f}  {r['note']}", flush=True)
    if not args.cpu_only:
        if not torch.cuda.is_available():
            print("\nCUDA: not available on this machine (CPU build of torch or no GPU)")
            return
        rows = time_cuda(stack, args.batch_size, args.repeat, args.peak_tflops)
        print(f"\nCUDA {rows[0]['gpu']}, full model (width 1), batch {args.batch_size}, "
              f"peak bf16 {rows[0]['peak'] or '?'} TFLOP/s")
        print(f"{'variant':30s} {'ms/RoI':>8s} {'tiles/s':>8s} {'TFLOP/s':>8s} {'% peak':>7s}")
        for r in rows:
            pct = f"{r['pct_peak']:6.1f}%" if r["pct_peak"] is not None else "     ?"
            print(f"{r['variant']:30s} {r['ms_per_roi']:8.1f} {r['tiles_per_s']:8.1f} "
                  f"{r['tflops']:8.1f} {pct}")


if __name__ == "__main__":
    main()
