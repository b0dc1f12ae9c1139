"""`scan`: headless batch inspection for the process engineer and the line controller."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from errors import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from rig.config import ConfigError

log = logging.getLogger(__name__)



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

    p = subparsers.add_parser(
        "infer", help="run the scratch detector on recordings and store the results",
        description="Detect scratches in each recording, write /results into it (unless "
                    "--no-write) and print one verdict line per sample. Each recording is "
                    "inspected with the [detector] settings and the calibration (dark/flat "
                    "correction) it was recorded with, so `infer` agrees with `scan`; options "
                    "given here override them.",
        epilog="exit status: 0 every sample PASS, 1 some sample FAIL, 2 an error (a model or "
               "recording that cannot be read, or an incomplete recording without scratches, "
               "whose PASS would not cover the whole sample).")
    p.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING")
    p.add_argument("--model", type=Path, default=None,
                   help="weights .safetensors with its .json model card beside it "
                        "(default: the recording's [detector] model, else the bundled one)")
    p.add_argument("--calibrations", type=Path, default=None, metavar="DIR",
                   help="folder of the calibrations recordings name (default: the recorded "
                        "station's [paths] calibrations)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON report on stdout (verdict lines go to stderr)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    p.add_argument("--contiguous", action="store_true",
                   help="NCHW memory format (default: channels_last, faster on CPU and CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per batch")
    p.add_argument("--method", choices=["fast", "dbscan"], default=None,
                   help="clustering implementation (default: the model card's)")
    p.add_argument("--t-low", type=float, default=None, help="override T_low")
    p.add_argument("--t-high", type=float, default=None, help="override T_high")
    p.add_argument("--min-high-px", type=int, default=None, metavar="K",
                   help="override min_high_px (map pixels of a cluster that must reach T_high)")
    p.add_argument("--black-level", type=float, default=None,
                   help="RAW black level in DN (default: the model card's, 64)")
    p.add_argument("--no-write", action="store_true", help="do not write /results")
    p.set_defaults(func=run_infer)


def _sample_ids(args: argparse.Namespace) -> list[str]:
    if args.sample_id and args.samples == 1:
        return [args.sample_id]
    prefix = args.sample_id or datetime.now().strftime("S%Y%m%d-%H%M%S")
    return [f"{prefix}-{i + 1:03d}" for i in range(args.samples)]


def run_scan(args: argparse.Namespace) -> int:
    from inspection import InspectionRun, SampleResult
    from recordings import check_sample_id
    from station import build_detector, load_station_config, open_rig, station_calibration

    cfg = load_station_config(args.config, sim=args.sim, seed=args.seed)
    if args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: must be at least 1")
    out = args.out or cfg.paths.recordings
    out.mkdir(parents=True, exist_ok=True)
    cal = station_calibration(cfg)
    detector = None if args.no_infer else build_detector(cfg, cal, args.model)
    ids = [None] if args.resume else _sample_ids(args)
    for sample_id in ids:  # every id names a file: refuse a bad one before any device moves
        if sample_id is not None:
            check_sample_id(sample_id)

    results: list[SampleResult] = []
    with open_rig(cfg, cal) as rig:
        for sample_id in ids:
            if args.resume is None and not rig.simulated and not args.no_prompt \
                    and not _prompt_load(sample_id):
                break
            rig.samples.load_sample(sample_id or "")  # resuming: --seed names the sample's seed
            run = InspectionRun(cfg, rig, detector, out, sample_id or "", resume=args.resume)
            result = _run_with_progress(run, quiet=args.json)
            results.append(result)
            if not args.json:
                print(result.summary_line(), flush=True)
            if result.verdict in ("INCOMPLETE", "ABORTED"):
                config = f" --config {args.config}" if args.config else ""
                print(f"  {result.sample_id}: what was captured is kept; finish it with: "
                      f"main.py scan{config}{' --sim' if args.sim else ''} --resume "
                      f"{result.recording}", file=sys.stderr, flush=True)
            if not result.complete and len(ids) > 1:
                log.error("stopping the batch: %s is %s", result.sample_id, result.verdict)
                break

    report = _write_report(out, results)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if report["files"]:
            print(f"report: {report['files']['json']}  {report['files']['csv']}")
    if any(not r.complete for r in results) or len(results) < len(ids):
        return EXIT_ERROR
    return EXIT_FAIL if any(r.verdict == "FAIL" for r in results) else EXIT_OK


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
    """The batch report as JSON + CSV in `out`; when `out` cannot take it (disk full), on
    stderr instead, so a line controller still gets every sample's outcome."""
    samples = [r.to_json() for r in results]
    report: dict[str, Any] = {
        "created": datetime.now().isoformat(timespec="seconds"),
        "samples": samples,
        "summary": {v: sum(r.verdict == v for r in results)
                    for v in ("PASS", "FAIL", "NOT-INSPECTED", "INCOMPLETE", "ABORTED")},
        "files": {},
    }
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        for n in range(1, 1000):  # two batches ending in the same second keep both reports
            name = f"report-{stamp}" + (f"-{n}" if n > 1 else "")
            json_path, csv_path = out / f"{name}.json", out / f"{name}.csv"
            try:
                json_path.open("x").close()  # claimed exclusively
                break
            except FileExistsError:
                continue
        report["files"] = {"json": str(json_path), "csv": str(csv_path)}
        json_path.write_text(json.dumps(report, indent=2))
        with csv_path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["sample_id", "verdict", "scratches", "contaminants", "total_s",
                        "recording", "error"])
            for r in results:
                w.writerow([r.sample_id, r.verdict, len(r.scratches), len(r.contaminants),
                            f"{r.timings_s.get('total', 0):.2f}", r.recording, r.error])
    except OSError as exc:
        report["files"] = {}
        print(f"error: the batch report could not be written to {out} ({exc.strerror}); "
              "here it is:\n" + json.dumps(report, indent=2), file=sys.stderr)
    return report


# -- infer ---------------------------------------------------------------------------------------
def run_infer(args: argparse.Namespace) -> int:
    import recordings
    from inference.detector import ModelLoadError

    out = sys.stderr if args.json else sys.stdout
    detectors: dict[tuple[str, str], Any] = {}
    reports, status = [], EXIT_OK
    for path in args.recordings:
        t0 = time.perf_counter()
        try:
            with recordings.open_recording(path) as rec:
                detector, note, recorded_cfg = _detector_for(rec, args, detectors)
                print(f"{path.name}: {note}", file=sys.stderr)
                sample_id, planned = rec.sample_id, rec.n_rois
                ids, problems, unexpected = rec.roi_ids(), [], rec.unexpected_rois()
                if unexpected:
                    problems.append(f"/rois has groups {unexpected} that are not among the "
                                    f"{planned} planned RoIs")
                if not ids:
                    raise recordings.RecordingError(f"{path}: no finished RoI to inspect")
                rois = []
                for n, i in enumerate(ids, start=1):
                    roi = rec.roi(i)
                    try:  # never a verdict on data that is not what was recorded
                        raw = roi.verified_raw()
                    except recordings.RecordingError as exc:
                        problems.append(str(exc))
                        continue
                    rois.append(detector.detect_roi(
                        raw, i, roi.origin_px, roi.pixel_size_mm, args.black_level,
                        edge_mask=_edge_mask(detector, recorded_cfg, roi, raw.shape[1:])))
                    print(f"  {path.name}: RoI {i:02d} ({n}/{len(ids)}) "
                          f"{len(rois[-1].scratches)} scratch(es) "
                          f"{rois[-1].timings_s['network_s']:.1f} s", file=sys.stderr, flush=True)
                missing = rec.missing_rois()
                if missing:
                    problems.append(f"RoIs {missing} were never recorded "
                                    f"(finish the recording with scan --resume {path})")
            results = detector.sample_results(rois, {"total_s": time.perf_counter() - t0})
            if not args.no_write and not problems:  # only a whole, verified sample is judged
                recordings.add_results(path, results)
        except recordings.RecordingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_ERROR
            reports.append({"recording": str(path), "error": str(exc)})
            continue
        except (ModelLoadError, ConfigError) as exc:  # the same for every recording: stop
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        verdict = results.verdict if not problems else "INCOMPLETE"
        note = "".join(f"\n  {p}" for p in problems)
        print(f"{sample_id}: {verdict}  scratches={len(results.scratches)} "
              f"contaminants={len(results.contaminants)}  rois={len(rois)}/{planned}  "
              f"{results.timings_s['total_s']:.1f} s  {path}{note}", file=out, flush=True)
        status = max(status, EXIT_FAIL if verdict == "FAIL" else
                     EXIT_ERROR if problems else EXIT_OK)
        reports.append({"recording": str(path), "sample_id": sample_id,
                        "complete": not problems, "problems": problems,
                        "detector": results.detector, "model_sha256": results.model_sha256,
                        "written": not args.no_write and not problems, "verdict": verdict,
                        "rois": [r.roi for r in rois], "timings_s": results.timings_s,
                        "scratches": [o.to_json() for o in results.scratches],
                        "contaminants": [o.to_json() for o in results.contaminants]})
    if args.json:
        print(json.dumps(reports, indent=2))
    return status


def _edge_mask(detector: Any, recorded: Any, roi: Any, shape: tuple[int, int]) -> Any:
    """The glass-edge mask of a recorded RoI, from the station config it was recorded with."""
    from rig.layout import glass_edge_mask

    band = recorded.detector.edge_band_mm
    return None if band <= 0 else glass_edge_mask(
        roi.origin_px, shape, roi.pixel_size_mm, recorded.sample, band,
        detector.probability_scale)


def _detector_for(rec: Any, args: argparse.Namespace,
                  cache: dict[tuple[str, str], Any]) -> tuple[Any, str, Any]:
    """The detector for one recording: its recorded settings and calibration, this command's
    overrides on top; one detector per distinct recorded station. Also the recorded station
    config (its glass geometry places the edge mask)."""
    import torch

    from station import build_detector, recorded_station

    recorded = recorded_station(rec.rig_config, str(rec.attrs.get("calibration_id", "")),
                                args.calibrations)
    detector = cache.get(recorded.key)
    if detector is None:
        engine: dict[str, Any] = {"channels_last": not args.contiguous, "compile": args.compile,
                                  "amp_dtype": torch.bfloat16 if args.bf16 else None}
        if args.device != "auto":
            engine["device"] = args.device
        detector = build_detector(recorded.cfg, recorded.calibration, args.model, **engine)
        over = {k: v for k, v in (("method", args.method), ("t_low", args.t_low),
                                  ("t_high", args.t_high), ("min_high_px", args.min_high_px))
                if v is not None}
        if over:
            try:
                detector.postprocess_params = dataclasses.replace(detector.postprocess_params,
                                                                  **over)
            except ValueError as exc:
                raise ConfigError(f"post-processing options: {exc}") from exc
        if args.batch_size:
            detector.tiling = dataclasses.replace(detector.tiling, batch_size=args.batch_size)
        cache[recorded.key] = detector
    return detector, recorded.note, recorded.cfg
