"""`simulate`: write simulated recordings (virtual samples through the dark-field optics)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from cli import MAX_THREADS, whole_number


def _sensor(text: str) -> tuple[int, int]:
    from world.simulate import parse_sensor

    try:
        return parse_sensor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number within 0..1, got {text!r}")
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="write simulated recordings with ground truth",
        description="Render virtual cover-glass samples through the simulated dark-field bench "
                    "and write one recording per sample (all RoIs, 6 states each, with truth: "
                    "scratch mask and defect list). Same seed, same data.")
    p.add_argument("--out", type=Path, required=True, help="output folder for the .h5 files")
    p.add_argument("--samples", type=whole_number(1, 10**6), required=True,
                   help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="series seed (default 0)")
    p.add_argument("--sensor", type=_sensor, default=(3504, 3120), metavar="WxH",
                   help="frame size in px (default 3504x3120); smaller keeps the pixel size, so "
                        "each RoI sees less of the sample (fast test data)")
    p.add_argument("--scratch-fraction", type=_fraction, default=None, metavar="P",
                   help="share of samples with at least one scratch (default: station config, 0.3)")
    p.add_argument("--config", default=None, metavar="TOML",
                   help="station config for sample size, RoI grid and exposure (default: sim profile)")
    p.add_argument("--threads", type=whole_number(1, MAX_THREADS), default=1,
                   help="render threads (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace existing recordings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rig.config import load_config
    from world.optics import OpticsConfig
    from world.sample import DefectMix
    from world.simulate import simulate_recordings

    station = load_config(args.config)
    fraction = station.sim.scratch_fraction if args.scratch_fraction is None \
        else args.scratch_fraction
    mix = replace(DefectMix(), scratch_fraction=fraction)
    optics = OpticsConfig(black_level_dn=float(station.camera.black_level_dn), threads=args.threads)
    paths = simulate_recordings(args.out, args.samples, args.seed, args.sensor, mix=mix,
                                optics=optics, station=station, overwrite=args.overwrite,
                                progress=not args.no_progress)
    print(f"wrote {len(paths)} recording(s) to {args.out}")
    return 0
