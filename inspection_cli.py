"""`scan`: headless batch inspection for the process engineer and the line controller."""

from __future__ import annotations

import argparse
import csv
import json
import logging
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scan", help="inspect samples: scan, record, detect, verdict",
        description="Inspect one or more samples and write one recording per sample plus a batch "
                    "report (JSON and CSV). Exit status: 0 all samples PASS, 1 at least one "
                    "FAIL, 2 an error (device fault, incomplete sample, bad input).")
    p.add_argument("--config", help="station TOML file (default: bundled sim profile)")
    p.add_argument("--sim", action="store_true",
                   help="use the simulated bench (emulated devices) whatever the config says")
    p.add_argument("--samples", type=int, default=1, help="number of samples (default 1)")
    p.add_argument("--out", type=Path, help="output folder (default: paths.recordings)")
    p.add_argument("--sample-id", help="sample id (with --samples N: prefix of -001, -002...)")
    p.add_argument("--seed", type=int, help="simulated bench: seed of the first virtual sample")
    p.add_argument("--model", help="detector weights (.safetensors); default: the configured one")
    p.add_argument("--no-infer", action="store_true", help="record only, no detection")
    p.add_argument("--resume", type=Path, metavar="FILE",
                   help="finish an interrupted recording (captures only its missing RoIs); on the "
                        "simulated bench pass the --seed of that sample")
    p.add_argument("--no-prompt", action="store_true",
                   help="real rig: do not wait for the operator to load each sample")
    p.add_argument("--json", action="store_true", help="print the batch report as JSON")
    p.set_defaults(func=run_scan)


def _sample_ids(args: argparse.Namespace) -> list[str]:
    if args.sample_id and args.samples == 1:
        return [args.sample_id]
    prefix = args.sample_id or datetime.now().strftime("S%Y%m%d-%H%M%S")
    return [f"{prefix}-{i + 1:03d}" for i in range(args.samples)]


def run_scan(args: argparse.Namespace) -> int:
    from calibration.apply import apply_to_rig, attach_to_detector, station_calibration
    from inspection import InspectionRun, SampleResult
    from rig.bench import build_rig
    from rig.config import ConfigError, load_config

    cfg = load_config(args.config)
    if args.sim:
        cfg = cfg.simulated()
    if args.seed is not None:
        cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"seed": args.seed})})
    if args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: must be at least 1")
    out = args.out or cfg.paths.recordings
    out.mkdir(parents=True, exist_ok=True)
    detector = None if args.no_infer else _load_detector(cfg, args.model)
    ids = [None] if args.resume else _sample_ids(args)

    results: list[SampleResult] = []
    cal = station_calibration(cfg)
    with build_rig(cfg) as rig:
        if cal is not None:
            apply_to_rig(rig, cal)
            if detector is not None:
                attach_to_detector(detector, cal, cfg.camera.exposure_us)
            log.info("using calibration %s", cal.calibration_id)
        for n, sample_id in enumerate(ids):
            if cfg.is_simulated:  # resuming: --seed must name the interrupted sample's seed
                rig.load_virtual_sample(cfg.sim.seed + n)
            elif args.resume is None and not args.no_prompt and not _prompt_load(sample_id):
                break
            run = InspectionRun(cfg, rig, detector, out, sample_id or "", resume=args.resume)
            result = _run_with_progress(run, quiet=args.json)
            results.append(result)
            if not args.json:
                print(result.summary_line(), flush=True)
            if not result.complete and len(ids) > 1:
                log.error("stopping the batch: %s is %s", result.sample_id, result.verdict)
                break

    report = _write_report(out, results)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"report: {report['files']['json']}  {report['files']['csv']}")
    if any(not r.complete for r in results) or len(results) < len(ids):
        return EXIT_ERROR
    return EXIT_FAIL if any(r.verdict == "FAIL" for r in results) else EXIT_PASS


def _load_detector(cfg, model: str | None):
    from inference.detector import Detector

    return Detector.from_settings(cfg.detector, model_path=model)


def _prompt_load(sample_id: str) -> bool:
    answer = input(f"Load sample {sample_id} and press Enter (q + Enter to stop): ")
    return answer.strip().lower() != "q"


def _run_with_progress(run, quiet: bool):
    """Drive one inspection with a rich progress bar (RoIs and frames) on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rig.scan import FrameCaptured, RoiStarted

    console = Console(stderr=True, quiet=quiet)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        rois = progress.add_task(f"{run.sample_id or 'resume'} RoIs", total=None)
        frames = progress.add_task("frames", total=None)

        def on_event(event) -> None:
            if isinstance(event, RoiStarted):
                progress.update(rois, total=event.total, completed=event.position)
                progress.update(frames, total=event.total * 6)
            elif isinstance(event, FrameCaptured):
                progress.advance(frames)

        run.subscribe(on_event)
        result = run.run()
        progress.update(rois, completed=progress.tasks[rois].total or 0)
    return result


def _write_report(out: Path, results) -> dict:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path, csv_path = out / f"report-{stamp}.json", out / f"report-{stamp}.csv"
    samples = [r.to_json() for r in results]
    report = {
        "created": datetime.now().isoformat(timespec="seconds"),
        "samples": samples,
        "summary": {v: sum(r.verdict == v for r in results)
                    for v in ("PASS", "FAIL", "NOT-INSPECTED", "INCOMPLETE", "ABORTED")},
        "files": {"json": str(json_path), "csv": str(csv_path)},
    }
    json_path.write_text(json.dumps(report, indent=2))
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample_id", "verdict", "scratches", "contaminants", "total_s", "recording",
                    "error"])
        for r in results:
            w.writerow([r.sample_id, r.verdict, len(r.scratches), len(r.contaminants),
                        f"{r.timings_s.get('total', 0):.2f}", r.recording, r.error])
    return report

