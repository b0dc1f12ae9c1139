"""`calibrate`: measure dark frames, LED balance, flat fields and registration; list and show.

    main.py calibrate dark|flat|registration|leds|all [--sim] [--config F] [--out DIR]
    main.py calibrate show [ID|FILE] | list

Each run writes a new calibration file (the parts not measured are carried over from the
latest one of the station) and prints what changed. Exit status: 0 saved, 1 a check failed
(nothing saved unless --force), 2 an error.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from calibration.checks import checks, notes
from calibration.store import calibration_dir
from errors import EXIT_ERROR, EXIT_FAIL, EXIT_OK

log = logging.getLogger(__name__)

MEASURE_STEPS = ("dark", "flat", "registration", "leds", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate", help="dark frames, flat fields, stage/camera registration, LED balance",
        description="Calibrate the station and write a new versioned calibration file "
                    "(docs/calibration.md). `all` runs dark, leds, flat, registration in that "
                    "order; a single step keeps the other parts of the latest calibration. "
                    "`show` prints a calibration, `list` the calibrations in --out. Exit status: "
                    "0 saved, 1 a check failed (not saved without --force), 2 an error.")
    p.add_argument("step", choices=(*MEASURE_STEPS, "show", "list"),
                   help="what to measure (or show / list)")
    p.add_argument("calibration", nargs="?", default=None, metavar="ID|FILE",
                   help="show: the calibration to print (default: the latest)")
    p.add_argument("--config", help="station TOML file (default: bundled sim profile)")
    p.add_argument("--sim", action="store_true",
                   help="use the simulated bench (emulated devices) whatever the config says")
    p.add_argument("--out", type=Path, default=None,
                   help="calibration folder (default: paths.calibrations, else ./calibrations)")
    p.add_argument("--from", dest="parent", default=None, metavar="ID|FILE",
                   help="carry parts over from this calibration (default: the latest)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames averaged per dark / flat state (default 16 / 8)")
    p.add_argument("--exposures", type=float, nargs="+", default=None, metavar="US",
                   help="dark: exposure times in us (default: the camera's exposure)")
    p.add_argument("--grid", type=int, default=None,
                   help="registration: stage positions per axis (default 5)")
    p.add_argument("--span", type=float, default=None,
                   help="registration: largest offset as a fraction of the field (default 0.3)")
    p.add_argument("--target", type=float, nargs=2, default=None, metavar=("X", "Y"),
                   help="real station: stage position (mm) of the reference plates' centre")
    p.add_argument("--yes", action="store_true",
                   help="real station: do not wait for the operator to place the plates")
    p.add_argument("--force", action="store_true", help="save even if a check fails")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _resolve(ref: str | None, directory: Path, station: str) -> Any:
    """A calibration by file path or id; None (the latest of the station) when ref is None."""
    from calibration.store import find_calibration, latest_calibration, load_calibration

    if ref is None:
        return latest_calibration(directory, station)
    if ref.endswith(".h5") or Path(ref).is_file():
        return load_calibration(ref)
    return find_calibration(directory, ref)


def run(args: argparse.Namespace) -> int:
    from calibration.store import CalibrationError

    try:
        if args.step == "list":
            return _list(args)
        if args.step == "show":
            return _show(args)
        return _measure(args)
    except CalibrationError as exc:
        print(f"error: {exc}")
        return EXIT_ERROR


def _config(args: argparse.Namespace) -> Any:
    from rig.config import load_config

    cfg = load_config(args.config)
    return cfg.simulated() if args.sim else cfg


def _list(args: argparse.Namespace) -> int:
    from calibration.store import list_calibrations

    cfg = _config(args)
    directory = calibration_dir(cfg, args.out)
    found = list_calibrations(directory)
    if not found:
        print(f"no calibrations in {directory}")
        return EXIT_OK
    for created, cid, path in found:
        print(f"{created}  {cid}  {path}")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from calibration.store import CalibrationError

    cfg = _config(args)
    directory = calibration_dir(cfg, args.out)
    cal = _resolve(args.calibration, directory, cfg.station.name)
    if cal is None:
        raise CalibrationError(f"no calibration of station {cfg.station.name!r} in {directory}; "
                               "run `main.py calibrate all` first")
    parent = None
    if cal.parent_id:
        try:
            parent = _resolve(cal.parent_id, directory, cal.station)
        except CalibrationError:
            parent = None
    _print_summary(cal, parent, args.json)
    return EXIT_OK


def _measure(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from calibration.apply import apply_to_rig
    from calibration.procedures import CalibrationOptions, CalibrationSession, order_steps
    from calibration.store import save_calibration
    from rig.rig import build_rig

    cfg = _config(args)
    directory = calibration_dir(cfg, args.out)
    parent = _resolve(args.parent, directory, cfg.station.name)
    steps = order_steps([args.step])
    options = CalibrationOptions()
    if args.frames:
        options = replace(options, dark_frames=args.frames, flat_frames=args.frames)
    if args.exposures:
        options = replace(options, exposures_us=tuple(args.exposures))
    if args.grid:
        options = replace(options, registration_grid=args.grid)
    if args.span:
        options = replace(options, registration_span=args.span)
    if args.target:
        options = replace(options, target_xy_mm=tuple(args.target))

    with build_rig(cfg) as rig:
        if rig.simulated:
            inject_sim_imperfections(rig)
        if parent is not None and tuple(parent.sensor_shape) == (cfg.camera.height,
                                                                  cfg.camera.width):
            apply_to_rig(rig, parent)  # a flat alone must use the balanced LED levels
        prompt = None if args.yes else _prompt
        cal = _run_with_progress(CalibrationSession(rig, cfg, options, prompt=prompt), steps,
                                 parent, quiet=args.no_progress or args.json)
    problems = checks(cal, cal.updated)
    for problem in problems:
        print(f"check failed: {problem}")
    for note in notes(cal):
        log.warning("calibration %s: %s", cal.calibration_id, note)
    if problems and not args.force:
        print("not saved (use --force to save anyway)")
        _print_summary(cal, parent, args.json)
        return EXIT_FAIL
    path = save_calibration(cal, directory)
    _print_summary(cal, parent, args.json)
    if not args.json:
        print(f"saved {path}")
    return EXIT_FAIL if problems else EXIT_OK


def inject_sim_imperfections(rig: Any) -> None:
    """Simulated bench without `[sim] stage_rotation_deg` / `pixel_size_error` in the config:
    give it the default imperfections, so a simulated calibration has something to find (the
    bench is private to this command, so no scan sees them)."""
    cam = rig.camera
    if getattr(cam, "imperfections", "absent") is None and hasattr(cam, "set_imperfections"):
        from world.imperfections import BenchImperfections

        imp = BenchImperfections()
        cam.set_imperfections(imp)
        log.info("simulated bench: stage rotation %.3f deg, pixel size error %+.2f %% (defaults)",
                 imp.stage_rotation_deg, 100 * imp.pixel_size_error)


def _prompt(message: str) -> bool:
    answer = input(f"{message} Press Enter (q + Enter to cancel): ")
    return answer.strip().lower() != "q"


def _run_with_progress(session: Any, steps: tuple[str, ...], parent: Any, quiet: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True, quiet=quiet)
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(step: str, done: int, total: int, message: str) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total or None, note="")
            progress.update(tasks[step], completed=done, total=total or None,
                            note=message if message and message != "done" else "")

        session.progress = on_progress
        return session.run(steps, parent)


def _print_summary(cal: Any, parent: Any, as_json: bool) -> None:
    from calibration.summary import summarize

    rows = summarize(cal, parent)
    if as_json:
        print(json.dumps({
            "calibration_id": cal.calibration_id, "station": cal.station, "created": cal.created,
            "parent_id": cal.parent_id, "updated": list(cal.updated), "parts": list(cal.parts),
            "rows": [r.__dict__ for r in rows]}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"calibration {cal.calibration_id} (parent {cal.parent_id or '-'})")
    for col in ("part", "quantity", "previous", "now", "change"):
        table.add_column(col)
    for r in rows:
        style = None if r.measured else "dim"
        table.add_row(r.part, r.quantity, r.previous, r.now, r.change, style=style)
    Console().print(table)
