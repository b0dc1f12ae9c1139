"""Sustained write rate and compression ratio of recordings on rendered dark-field stacks.

    .venv/bin/python bench/bench_recording_write.py [--rois 4] [--compare]

Writes full-size (6 x 3120 x 3504) stacks rendered by the simulated bench through the real
RecordingWriter (compression, checksum, flushes) and prints MB/s of raw stack data and the
compression ratio. Target: >= 260 MB/s on 2 cores (twice a camera delivering one 6-state stack
of 12-bit 3504 x 3120 frames per second). `--compare` also measures candidate filters.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from recordings import RecordingWriter
from rig.geometry import roi_grid
from world.optics import DarkFieldRenderer
from world.sample import make_sample

TARGET_MB_S = 260.0


def rendered_stacks(n: int) -> list[np.ndarray]:
    sample = make_sample(seed=7)
    renderer = DarkFieldRenderer(sample)
    origins = roi_grid(72.0, 150.0, 3504, 3120)
    return [renderer.render_stack((r0, c0)) for _, _, r0, c0 in origins[:n]]


def bench_writer(stacks: list[np.ndarray], folder: Path) -> tuple[float, float]:
    path = folder / "bench.h5"
    times = []
    with RecordingWriter.create(path, sample_id="bench", rig_config={}, n_rois=len(stacks),
                                overwrite=True) as w:
        for i, stack in enumerate(stacks):
            t0 = time.perf_counter()
            w.write_roi(i, stack, stage_xy_mm=(0, 0), origin_px=(0, 0), pixel_size_mm=0.0114,
                        exposure_us=20000, timestamps_s=np.zeros(6), frame_ids=np.arange(6))
            times.append(time.perf_counter() - t0)
    raw_mb = stacks[0].nbytes / 1e6
    rate = raw_mb / statistics.median(times)
    ratio = sum(s.nbytes for s in stacks) / path.stat().st_size
    return rate, ratio


def compare_filters(stack: np.ndarray, folder: Path) -> None:
    candidates = {
        "gzip-1 + shuffle": dict(compression="gzip", compression_opts=1, shuffle=True),
        "lzf + shuffle": dict(compression="lzf", shuffle=True),
        "bitshuffle-lz4 (chosen)": dict(hdf5plugin.Bitshuffle(cname="lz4")),
        "blosc-lz4 bitshuffle": dict(hdf5plugin.Blosc(cname="lz4", clevel=5,
                                                      shuffle=hdf5plugin.Blosc.BITSHUFFLE)),
        "blosc2-zstd1 bitshuffle": dict(hdf5plugin.Blosc2(cname="zstd", clevel=1,
                                                          filters=hdf5plugin.Blosc2.BITSHUFFLE)),
    }
    print(f"\n{'filter (chunks 1x512x1024)':<28} {'MB/s':>8} {'ratio':>6}")
    for name, kw in candidates.items():
        path = folder / "cmp.h5"
        t0 = time.perf_counter()
        with h5py.File(path, "w") as f:
            f.create_dataset("raw", data=stack, chunks=(1, 512, 1024), **kw)
        dt = time.perf_counter() - t0
        print(f"{name:<28} {stack.nbytes / 1e6 / dt:8.0f} {stack.nbytes / path.stat().st_size:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=4)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    print(f"rendering {args.rois} full-size RoI stacks...", flush=True)
    stacks = rendered_stacks(args.rois)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        rate, ratio = bench_writer(stacks, Path(tmp))
        mb = stacks[0].nbytes / 1e6
        print(f"RecordingWriter: {rate:.0f} MB/s sustained (median over {len(stacks)} RoIs of "
              f"{mb:.0f} MB raw, incl. SHA-256 and flushes), compression ratio {ratio:.2f}x; "
              f"target >= {TARGET_MB_S:.0f} MB/s: {'met' if rate >= TARGET_MB_S else 'MISSED'}")
        if args.compare:
            compare_filters(stacks[0], Path(tmp))


if __name__ == "__main__":
    main()
