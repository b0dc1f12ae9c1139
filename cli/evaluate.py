"""Command `evaluate`: the paper's Table 1 on recordings with truth (docs/evaluation.md).

Registered by main.py through `register`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from errors import EXIT_ERROR, EXIT_OK, ModelError


def register(subparsers: argparse._SubParsersAction) -> None:
    from inference.detector import DEFAULT_MODEL

    p = subparsers.add_parser(
        "evaluate", help="Table 1 (FP/FN at sample and image level) on recordings with truth",
        description="Run the detector on every RoI of recordings with ground truth and report "
                    "the paper's Table 1 (FP and FN rates at sample and image level), "
                    "object-level recall / precision / AP, per-kind false-alarm rates and the "
                    "operating point's thresholds. Deterministic: same model, data and "
                    "--threads, same figures. See docs/evaluation.md.")
    p.add_argument("--data", required=True, nargs="+", type=Path, metavar="DIR",
                   help="folder(s) of .h5 recordings with truth, or files")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="weights .safetensors with its .json card (default: the bundled model)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--pr-png", type=Path, default=None, metavar="F",
                   help="write the precision-recall curve over T_high (and the Table 1 rates "
                        "over T_high) as a PNG")
    p.add_argument("--t-low", type=float, default=None, help="override the card's T_low")
    p.add_argument("--t-high", type=float, default=None,
                   help="override the card's T_high (the operating point)")
    p.add_argument("--min-high-px", type=int, default=None, metavar="K",
                   help="override the card's min_high_px: a cluster is a scratch when K of its "
                        "map pixels reach T_high (paper: 1)")
    p.add_argument("--box-tolerance", type=int, default=None, metavar="PX",
                   help="grow detection boxes by PX RAW px for overlap tests (default 8)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N recordings (sorted by name)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes (each runs --threads torch threads); results do not depend "
                        "on it")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (default 1; the card's figures used 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--engine", default="torch",
                   help="inference engine: torch (default), onnxruntime, openvino or auto")
    p.add_argument("--tile-px", type=int, default=None, metavar="PX",
                   help="tile side in RAW px, a multiple of 64 (default: the model card's); "
                        "3520 runs a full 3504 x 3120 RoI in one pass")
    p.add_argument("--records", type=Path, default=None, metavar="F",
                   help="also save the per-RoI records (JSON) to re-score without the network")
    p.add_argument("--from-records", type=Path, default=None, metavar="F",
                   help="re-score saved records instead of running the network (T_high and "
                        "the matching may change, T_low and min_high_px not: they change the "
                        "clusters)")
    p.add_argument("--write-card", default=None, metavar="KEY",
                   help="store the report (without the curve) in the model card's "
                        "metrics[KEY], and the operating point in its post-processing")
    p.add_argument("--data-note", default="",
                   help="with --write-card: how the data was made (stored with the metrics)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from inference.detector import ModelLoadError, load_model
    from inference.evaluate import (
        EvalParams,
        RoiRecord,
        card_metrics,
        find_recordings,
        format_report,
        plot_pr,
        run_detector,
        summarize,
        write_card_metrics,
    )
    from recordings import RecordingError

    params = EvalParams() if args.box_tolerance is None else EvalParams(
        box_tolerance_px=args.box_tolerance)
    try:
        _, card = load_model(args.model)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    pp = dict(card.postprocess)
    pp.setdefault("min_high_px", 1)  # cards written before it existed
    over = {k: v for k, v in (("t_low", args.t_low), ("t_high", args.t_high),
                              ("min_high_px", args.min_high_px)) if v is not None}
    pp.update(over)
    if pp["t_low"] > pp["t_high"]:
        print("error: T_low must not exceed T_high", file=sys.stderr)
        return EXIT_ERROR
    thresholds = {k: pp[k] for k in ("t_low", "t_high", "min_high_px", "eps", "min_samples",
                                     "cluster_downsample", "method")}
    paths = find_recordings(args.data)
    if args.limit:
        paths = paths[:args.limit]
    try:
        if args.from_records:
            saved = json.loads(args.from_records.read_text())
            for key, arg in (("t_low", args.t_low), ("min_high_px", args.min_high_px)):
                made = saved.get(key, 1)  # records written before min_high_px existed: 1
                if arg is None:
                    pp[key] = thresholds[key] = made
                elif pp[key] != made:
                    print(f"error: the records were made at {key} {made}; another {key} "
                          "changes the clusters: run the network again", file=sys.stderr)
                    return EXIT_ERROR
            if pp["t_high"] < pp["t_low"]:
                print("error: T_low must not exceed T_high", file=sys.stderr)
                return EXIT_ERROR
            records = [RoiRecord.from_dict(r) for r in saved["records"]]
        else:
            if not paths:
                print(f"error: no .h5 recordings in {', '.join(map(str, args.data))}",
                      file=sys.stderr)
                return EXIT_ERROR

            def progress(k: int, n: int, name: str) -> None:
                print(f"  {k}/{n} {name}", file=sys.stderr, flush=True)

            records = run_detector(paths, args.model, device=args.device, threads=args.threads,
                                   workers=args.workers, overrides=over, params=params,
                                   engine=args.engine, tile_px=args.tile_px,
                                   progress=progress)
            if args.records:
                args.records.write_text(json.dumps(
                    {"model": str(args.model), "weights_sha256": card.weights_sha256,
                     "t_low": pp["t_low"], "min_high_px": pp["min_high_px"],
                     "records": [dataclasses.asdict(r) for r in records]}) + "\n")
    except (RecordingError, ModelError, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    data = ", ".join(str(d) for d in args.data)
    rep = summarize(records, thresholds, params, data=data, model=card.summary())
    rep["weights_sha256"] = card.weights_sha256
    if args.pr_png:
        plot_pr(rep, args.pr_png)
    if args.write_card:
        write_card_metrics(args.model, args.write_card, card_metrics(rep, args.data_note),
                           postprocess=over or None)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(format_report(rep))
        if args.pr_png:
            print(f"precision-recall curve: {args.pr_png}")
    return EXIT_OK
