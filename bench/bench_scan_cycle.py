"""Cycle time of one full sample on the simulated bench against the device-time lower bound.

    .venv/bin/python bench/bench_scan_cycle.py [--profile sim fast] [--no-infer] [--model F]
        [--samples 1] [--gantt docs/scan-timeline.png] [--roi 4]

The bench runs in real time (moves with acceleration, exposure, readout), at full sensor size.
The lower bound is what the devices alone need: every move's trapezoid time plus settle, and
exposure + readout for each frame. Everything above it is overhead: serial round trips, waiting
on the simulator's renderer, recording or detection that did not overlap with acquisition.

Per profile it prints wall, bound and overhead, then the timeline of one RoI (move, settle,
6 x (trigger, exposure, readout), write, detect) from the bench's own clocks: the stage
emulator's motion log, the ring light's trigger pulses, the frames' arrival and the recorder's
and detector's events. `--gantt F` draws those timelines (one row per profile) as a PNG.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from inference.engines import instruction_set
from inspection import InspectionRun, RoiDetected, RoiRecorded
from rig.config import StationConfig, load_config
from rig.grbl_protocol import trapezoid_time
from rig.layout import roi_layout
from rig.rig import build_rig
from rig.scan import FrameCaptured, RoiCaptured, RoiStarted


def device_lower_bound(cfg: StationConfig, start_xy: tuple[float, float]) -> dict[str, float]:
    st, cam = cfg.stage, cfg.camera
    moves, pos = 0.0, start_xy
    for roi in roi_layout(cfg):
        # GRBL limits each axis separately; the vector move is bounded by the longer axis.
        dist = math.hypot(roi.stage_xy_mm[0] - pos[0], roi.stage_xy_mm[1] - pos[1])
        moves += trapezoid_time(dist, st.max_speed_mm_s, st.acceleration_mm_s2) + st.settle_s
        pos = roi.stage_xy_mm
    n_rois = len(roi_layout(cfg))
    frames = n_rois * cfg.scan.states * (cam.exposure_us * 1e-6 + cam.readout_s)
    total = moves + frames
    # the scan starts each next move once the last frame is exposed, so the devices need the
    # readout of every RoI's last frame but one less: the pipelined lower bound
    pipelined = total - (n_rois - 1) * cam.readout_s
    return {"moves_s": moves, "frames_s": frames, "total_s": total, "pipelined_s": pipelined}


@dataclass
class Timeline:
    """Time stamps of one scan (time.monotonic), collected from the bench and the events."""

    started: dict[int, float] = field(default_factory=dict)
    frames: dict[int, list[float]] = field(default_factory=dict)  # arrival of each frame
    captured: dict[int, float] = field(default_factory=dict)
    written: dict[int, tuple[float, float]] = field(default_factory=dict)
    detected: dict[int, tuple[float, float]] = field(default_factory=dict)
    triggers: list[float] = field(default_factory=list)
    motions: list[tuple[float, float]] = field(default_factory=list)

    def on_event(self, ev: object) -> None:
        now = time.monotonic()
        if isinstance(ev, RoiStarted):
            self.started[ev.roi.index] = now
            self.frames[ev.roi.index] = []
        elif isinstance(ev, FrameCaptured):
            self.frames[ev.roi.index].append(now)
        elif isinstance(ev, RoiCaptured):
            self.captured[ev.roi.index] = now
        elif isinstance(ev, RoiRecorded):
            self.written[ev.roi.index] = (now - ev.write_s, now)
        elif isinstance(ev, RoiDetected):
            self.detected[ev.roi.index] = (now - ev.detect_s, now)

    def bars(self, roi: int, cfg: StationConfig) -> list[tuple[str, float, float]]:
        """(lane, start, end) of one RoI, relative to its RoiStarted, plus the next move."""
        t0 = self.started[roi]
        t_end = self.captured[roi]
        out: list[tuple[str, float, float]] = []
        shots = [t for t in self.triggers if t0 <= t <= t_end]
        first_shot = shots[0] if shots else t_end
        for a, b in self.motions:  # the move into this RoI, and the next one if it overlaps
            if b > t0 and a < t_end:
                out.append(("move", a - t0, b - t0))
                if b <= first_shot:  # settled before its first exposure
                    out.append(("settle", b - t0, b - t0 + cfg.stage.settle_s))
        exposure = cfg.camera.exposure_us * 1e-6
        for t, arrived in zip(shots, self.frames[roi], strict=False):
            out.append(("exposure", t - t0, t + exposure - t0))
            out.append(("readout", t + exposure - t0, arrived - t0))
        if roi in self.written:
            out.append(("write", *(x - t0 for x in self.written[roi])))
        if roi in self.detected:
            out.append(("detect", *(x - t0 for x in self.detected[roi])))
        return out


LANES = ("move", "settle", "exposure", "readout", "write", "detect")


def print_timeline(name: str, bars: list[tuple[str, float, float]]) -> None:
    print(f"  timeline of one RoI ({name}), seconds from its start:")
    for lane in LANES:
        spans = [(a, b) for k, a, b in bars if k == lane]
        if spans:
            text = "  ".join(f"{a:6.3f}-{b:6.3f}" for a, b in spans)
            print(f"    {lane:<9} {text}")


def draw_gantt(rows: list[tuple[str, list[tuple[str, float, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"move": "#4c72b0", "settle": "#8172b2", "exposure": "#dd8452",
               "readout": "#ccb974", "write": "#55a868", "detect": "#c44e52"}
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 2.2 * len(rows) + 0.6), squeeze=False)
    for ax, (title, bars) in zip(axes[:, 0], rows, strict=True):
        for k, lane in enumerate(LANES):
            spans = [(a, max(b - a, 1e-3)) for kind, a, b in bars if kind == lane]
            ax.broken_barh(spans, (len(LANES) - 1 - k - 0.4, 0.8), color=colours[lane])
        ax.set_yticks(range(len(LANES)), list(reversed(LANES)))
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlim(left=min(0.0, *(a for _, a, _ in bars)) - 0.02)
    axes[-1, 0].set_xlabel("seconds from the RoI's start (RoiStarted)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_once(cfg: StationConfig, detector, out: Path, seed: int
             ) -> tuple[dict[str, float], Timeline]:
    timeline = Timeline()
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(seed)
        bench = rig.samples.state
        bench.add_trigger_hook(lambda _k: timeline.triggers.append(time.monotonic()))
        start = rig.stage.position()
        bound = device_lower_bound(cfg, start)
        run = InspectionRun(cfg, rig, detector, out, f"BENCH-{seed}")
        run.subscribe(timeline.on_event)
        t0 = time.monotonic()
        result = run.run()
        wall = time.monotonic() - t0
        timeline.motions = [(a, b) for a, b in bench.motion_log if b is not None]
    t = result.timings_s
    overhead = (wall - bound["total_s"]) / wall
    print(f"sample BENCH-{seed}: verdict {result.verdict}, wall {wall:.2f} s")
    print(f"  device lower bound {bound['total_s']:.2f} s (moves+settle {bound['moves_s']:.2f} s, "
          f"frames {bound['frames_s']:.2f} s)")
    piped = bound["pipelined_s"]
    print(f"  pipelined bound {piped:.2f} s (the last readout of each RoI overlaps the next "
          f"move): overhead {wall - piped:.2f} s = {100 * (wall - piped) / wall:.1f} % of wall")
    print(f"  against the sequential bound: {100 * overhead:.1f} % of wall; "
          f"wall / bound = {wall / bound['total_s']:.3f}")
    print("  stage totals: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
    if detector is not None:
        acquisition_end = t.get("move", 0) + t.get("acquire", 0)
        print(f"  detection {t.get('detect', 0):.2f} s in total; the sample finished "
              f"{wall - acquisition_end:.2f} s after the last frame")
    hits = getattr(rig.camera, "ahead_hits", None)
    if hits is not None:
        print(f"  frames rendered ahead by the simulator: {hits}/{cfg.scan.states * 10}")
    return {"wall_s": wall, **bound}, timeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", nargs="+", default=["sim"],
                        help="bundled profiles or station TOML files (default: sim)")
    parser.add_argument("--no-infer", action="store_true",
                        help="no detection: stands for a detector faster than acquisition")
    parser.add_argument("--model", help="detector weights (default: bundled)")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--roi", type=int, default=4, help="RoI whose timeline is shown")
    parser.add_argument("--threads", type=int, default=None,
                        help="detector threads (default: the profile's [detector] threads)")
    parser.add_argument("--gantt", type=Path, default=None, metavar="PNG",
                        help="draw the timelines as a Gantt chart")
    args = parser.parse_args()
    print(f"CPU: {instruction_set()}")
    rows = []
    for profile in args.profile:
        cfg = load_config(profile)
        if args.threads is not None:
            cfg = cfg.model_copy(update={"detector": cfg.detector.model_copy(
                update={"threads": args.threads})})
        detector = None
        if not args.no_infer:
            from inference.detector import Detector

            detector = Detector.from_settings(cfg.detector, model_path=args.model)
            print(f"detector: {detector.name}")
        print(f"\nprofile {profile} ({cfg.station.name}): {cfg.stage.max_speed_mm_s:g} mm/s, "
              f"{cfg.stage.acceleration_mm_s2:g} mm/s^2, settle {cfg.stage.settle_s * 1e3:g} ms, "
              f"exposure {cfg.camera.exposure_us / 1e3:g} ms, readout "
              f"{cfg.camera.readout_s * 1e3:g} ms")
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.samples):
                figures, timeline = run_once(cfg, detector, Path(tmp), seed=1000 + i)
        bars = timeline.bars(args.roi, cfg)
        print_timeline(f"RoI {args.roi:02d}", bars)
        rows.append((f"{profile}: RoI {args.roi:02d} · wall {figures['wall_s']:.2f} s per sample, "
                     f"device bound {figures['total_s']:.2f} s"
                     + ("" if detector is None else " · with detection"), bars))
    if args.gantt:
        draw_gantt(rows, args.gantt)
        print(f"\nGantt chart: {args.gantt}")


if __name__ == "__main__":
    main()
