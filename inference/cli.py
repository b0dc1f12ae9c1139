"""Commands of the inference package: `model-info` and `infer` (registered by main.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    from inference.detector import DEFAULT_MODEL

    p = subparsers.add_parser(
        "model-info", help="parameter counts of the detector network (and a model's card)",
        description="Print parameter counts of the full nested and unnested NestedUNet beside "
                    "the paper's 13.9 M / 44.4 M, the CPU width variants, and, with --model, "
                    "the model card of a weights file.")
    p.add_argument("--model", type=Path, default=None,
                   help=f"also describe this .safetensors model (e.g. {DEFAULT_MODEL.name})")
    p.add_argument("--widths", type=float, nargs="*", default=[1.0, 0.5, 0.25, 0.125],
                   help="width multipliers to list (default: 1 0.5 0.25 0.125)")
    p.set_defaults(func=cmd_model_info)

    p = subparsers.add_parser(
        "infer", help="run the scratch detector on recordings and store the results",
        description="Detect scratches in each recording, write /results into it (unless "
                    "--no-write) and print one verdict line per sample.",
        epilog="exit status: 0 every sample PASS, 1 some sample FAIL, 2 an error (a model or "
               "recording that cannot be read, or an incomplete recording without scratches, "
               "whose PASS would not cover the whole sample).")
    p.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="weights .safetensors with its .json model card beside it "
                        "(default: the bundled model)")
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
    p.set_defaults(func=cmd_infer)


def cmd_model_info(args: argparse.Namespace) -> int:
    from inference.detector import ModelLoadError, load_model
    from inference.model import count_parameters, parameter_report

    print(parameter_report(tuple(args.widths)))
    if args.model is not None:
        try:
            model, card = load_model(args.model)
        except ModelLoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        n = count_parameters(model.config).total
        m = count_parameters(dataclasses.replace(model.config, nested=False)).total
        print(f"\nModel {args.model}:\n  {card.summary()}")
        print(f"  parameters: {n / 1e6:.3f} M as trained, {m / 1e6:.3f} M materialised")
        print(f"  weights sha256: {card.weights_sha256}")
        print(f"  post-processing: {json.dumps(card.postprocess)}")
        print(f"  tiling: {json.dumps(card.tiling)}")
        print(f"  training data: {json.dumps(card.training_data)}")
        print(f"  metrics: {json.dumps(card.metrics)}")
        if card.notes:
            print(f"  notes: {card.notes}")
    return EXIT_PASS


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_infer(args: argparse.Namespace) -> int:
    import torch

    import recordings
    from inference.detector import Detector, ModelLoadError

    try:
        det = Detector.from_file(
            args.model, device=_device(args.device),
            amp_dtype=torch.bfloat16 if args.bf16 else None,
            channels_last=not args.contiguous, compile=args.compile)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    over: dict[str, Any] = {k: v for k, v in (("method", args.method), ("t_low", args.t_low),
                                              ("t_high", args.t_high),
                                              ("min_high_px", args.min_high_px)) if v is not None}
    if over:
        try:
            det.postprocess_params = dataclasses.replace(det.postprocess_params, **over)
        except ValueError as exc:
            print(f"error: post-processing options: {exc}", file=sys.stderr)
            return EXIT_ERROR
    if args.batch_size:
        det.tiling = dataclasses.replace(det.tiling, batch_size=args.batch_size)
    out = sys.stderr if args.json else sys.stdout
    reports, status = [], EXIT_PASS
    for path in args.recordings:
        t0 = time.perf_counter()
        try:
            with recordings.open_recording(path) as rec:
                sample_id, complete, planned = rec.sample_id, rec.status == "complete", rec.n_rois
                ids = rec.roi_ids()
                if not ids:
                    raise recordings.RecordingError(f"{path}: no finished RoI to inspect")
                rois = []
                for n, i in enumerate(ids, start=1):
                    roi = rec.roi(i)
                    rois.append(det.detect_roi(roi.raw[()], i, roi.origin_px,
                                               roi.pixel_size_mm, args.black_level))
                    _progress(f"  {path.name}: RoI {i:02d} ({n}/{len(ids)}) "
                              f"{len(rois[-1].scratches)} scratch(es) "
                              f"{rois[-1].timings_s['network_s']:.1f} s")
            sample = det.merge(rois)
            sample.timings_s["total_s"] = time.perf_counter() - t0
            if not args.no_write:
                recordings.add_results(path, det.to_results(sample))
        except recordings.RecordingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_ERROR
            reports.append({"recording": str(path), "error": str(exc)})
            continue
        note = "" if complete and len(ids) >= planned else \
            f"  INCOMPLETE ({len(ids)}/{planned} RoIs inspected)"
        print(f"{sample_id}: {sample.verdict}  scratches={len(sample.scratches)} "
              f"contaminants={len(sample.contaminants)}  rois={len(ids)}  "
              f"{sample.timings_s['total_s']:.1f} s  {path}{note}", file=out, flush=True)
        if sample.verdict == "FAIL":
            status = max(status, EXIT_FAIL)
        elif note:
            status = EXIT_ERROR
        reports.append({"recording": str(path), "sample_id": sample_id, "complete": not note,
                        "detector": det.name, "model_sha256": det.sha256,
                        "written": not args.no_write, **sample.summary()})
    if args.json:
        print(json.dumps(reports, indent=2))
    return status
