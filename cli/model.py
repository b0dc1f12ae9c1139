"""Command of the inference package: `model-info` (registered by main.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from errors import EXIT_ERROR, EXIT_OK


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
    return EXIT_OK
