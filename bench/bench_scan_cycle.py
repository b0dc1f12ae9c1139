"""Cycle time of one full sample on the simulated bench against the device-time lower bound.

    .venv/bin/python bench/bench_scan_cycle.py [--no-infer] [--model F] [--samples 1]

The bench runs in real time (moves with acceleration, exposure, readout), at full sensor size.
The lower bound is what the devices alone need: every move's trapezoid time plus settle, and
exposure + readout for each frame. Everything above it is software overhead (waiting on
rendering, serial round trips, recording, detection that did not overlap with acquisition).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from inspection import InspectionRun
from rig.config import StationConfig, load_config
from rig.grbl_protocol import trapezoid_time
from rig.layout import roi_layout
from rig.rig import build_rig


def device_lower_bound(cfg: StationConfig, start_xy: tuple[float, float]) -> dict[str, float]:
    st, cam = cfg.stage, cfg.camera
    moves, pos = 0.0, start_xy
    for roi in roi_layout(cfg):
        # GRBL limits each axis separately; the vector move is bounded by the longer axis.
        dist = math.hypot(roi.stage_xy_mm[0] - pos[0], roi.stage_xy_mm[1] - pos[1])
        moves += trapezoid_time(dist, st.max_speed_mm_s, st.acceleration_mm_s2) + st.settle_s
        pos = roi.stage_xy_mm
    n_frames = len(roi_layout(cfg)) * cfg.scan.states
    frames = n_frames * (cam.exposure_us * 1e-6 + cam.readout_s)
    return {"moves_s": moves, "frames_s": frames, "total_s": moves + frames}


def run_once(cfg: StationConfig, detector, out: Path, seed: int) -> None:
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(seed)
        start = rig.stage.position()
        bound = device_lower_bound(cfg, start)
        t0 = time.monotonic()
        result = InspectionRun(cfg, rig, detector, out, f"BENCH-{seed}").run()
        wall = time.monotonic() - t0
    t = result.timings_s
    overhead = (wall - bound["total_s"]) / wall
    print(f"sample BENCH-{seed}: verdict {result.verdict}, wall {wall:.2f} s")
    print(f"  device lower bound {bound['total_s']:.2f} s (moves+settle {bound['moves_s']:.2f} s, "
          f"frames {bound['frames_s']:.2f} s)")
    print(f"  software overhead {wall - bound['total_s']:.2f} s = {100 * overhead:.1f} % of wall")
    print("  stage totals: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
    acquisition_end = t.get("move", 0) + t.get("acquire", 0)
    if detector is not None:
        tail = wall - acquisition_end
        print(f"  detection {t.get('detect', 0):.2f} s in total; the sample finished {tail:.2f} s "
              f"after the last frame -> the cycle is bound by "
              f"{'detection' if t.get('detect', 0) > acquisition_end else 'acquisition'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-infer", action="store_true",
                        help="no detection: stands for a detector faster than acquisition")
    parser.add_argument("--model", help="detector weights (default: bundled)")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--readout-s", type=float,
                        help="camera readout time; the simulated camera renders a full frame in "
                             "~0.1 s here, so a readout above that keeps rendering out of the "
                             "measured overhead")
    args = parser.parse_args()
    cfg = load_config()
    if args.readout_s is not None:
        cfg = cfg.model_copy(update={"camera": cfg.camera.model_copy(
            update={"readout_s": args.readout_s})})
    detector = None
    if not args.no_infer:
        from inference.detector import Detector

        detector = Detector.from_settings(cfg.detector, model_path=args.model)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.samples):
            run_once(cfg, detector, Path(tmp), seed=1000 + i)


if __name__ == "__main__":
    main()
