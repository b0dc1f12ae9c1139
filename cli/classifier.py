"""``classifier`` command: train / evaluate second-stage crop classifiers on a labelled folder.

The folder has the NEU-DET layout (``images/<class>_<n>.jpg``, optional VOC ``annotations/``).

    python main.py classifier train --method 002 --data ../shared/datasets/neu-det \
        --per-class 20 --seed 0 --out out/cls002.safetensors
    python main.py classifier evaluate --model out/cls002.safetensors \
        --data ../shared/datasets/neu-det --json

``train`` draws ``--per-class`` random images per class (``--seed``) and records their names in
the model card; ``evaluate`` then tests on every image of the folder that was not used for
training (seed 002's "test on the rest"), unless ``--include-train``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cli import MAX_THREADS, whole_number
from errors import ConfigError
from inference.cards import MAX_CLASSIFIER_INPUT_PX
from inference.classifiers.backbones import BACKBONES
from inference.classifiers.data import DEFAULT_NEU, load_neu, split_per_class


def _train(args: argparse.Namespace) -> int:
    import torch

    from inference.classifiers.base import make_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict[str, object] = {"seed": args.seed}
    for key in ("epochs", "backbone", "input_size"):
        val = getattr(args, key)
        if val is not None:
            overrides[key] = val
    try:
        clf = make_classifier(args.method, **overrides)
    except ValueError as exc:  # an option the method cannot take (e.g. PSIC-Net's size rule)
        raise ConfigError(f"classifier {args.method}: {exc}") from None
    data_dir = Path(args.data).resolve()
    t0 = time.perf_counter()
    data = load_neu(data_dir, clf.config.input_size)
    tr, _ = split_per_class(data.labels, args.per_class, args.seed)
    train = data.subset(tr)
    clf.fit(train.images, train.labels, train.masks, data=str(data_dir),
            per_class=args.per_class, split_seed=args.seed, train_names=train.names)
    out = clf.save(args.out)
    summary = {"model": str(out), "card": str(out.with_suffix(".json")),
               "method": clf.method, "classes": clf.classes, "n_train": len(train.labels),
               "train_seconds": round(clf.info["train_seconds"], 2),
               "total_seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(summary, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from inference.classifiers.base import load_classifier
    from inference.classifiers.metrics import classification_report

    if args.threads:
        torch.set_num_threads(args.threads)
    clf = load_classifier(args.model)
    data_dir = Path(args.data).resolve()
    data = load_neu(data_dir, clf.config.input_size, with_masks=False)
    excluded = 0
    if not args.include_train and clf.info.get("data") == str(data_dir):
        used = set(clf.info.get("train_names", []))
        keep = [i for i, n in enumerate(data.names) if n not in used]
        excluded = len(data.names) - len(keep)
        data = data.subset(keep)
    unknown = sorted(set(data.labels) - set(clf.classes))
    if unknown:
        print(f"warning: classes not known to the model: {unknown}", file=sys.stderr)
    t0 = time.perf_counter()
    pred = clf.predict(data.images)
    seconds = time.perf_counter() - t0
    rep = classification_report(data.labels, pred, clf.classes)
    rep.update({"model": str(args.model), "method": clf.method, "data": str(data_dir),
                "excluded_training_images": excluded, "predict_seconds": round(seconds, 3)})
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{clf.method}: accuracy {rep['accuracy']:.4f} on {rep['n']} images "
          f"({excluded} training images excluded)")
    print(f"{'class':<18}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for c, r in rep["per_class"].items():
        print(f"{c:<18}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}"
              f"{r['support']:>9d}")
    return 0


def _train_station(args: argparse.Namespace) -> int:
    import torch

    from inference.classifiers.station import train_typer

    torch.set_num_threads(args.threads)
    overrides: dict[str, object] = {}
    for key in ("epochs", "backbone"):
        val = getattr(args, key)
        if val is not None:
            overrides[key] = val
    t0 = time.perf_counter()
    clf, data = train_typer(args.samples, args.seed, args.method,
                            log=lambda m: print(m, file=sys.stderr), **overrides)
    out = clf.save(args.out)
    print(json.dumps({"model": str(out), "card": str(out.with_suffix(".json")),
                      "method": clf.method, "classes": clf.classes,
                      "n_train": len(data.labels), "class_counts": data.counts(),
                      "sample_seeds": clf.info["sample_seeds"],
                      "train_seconds": round(clf.info["train_seconds"], 2),
                      "total_seconds": round(time.perf_counter() - t0, 2)}, indent=2))
    return 0


def _evaluate_station(args: argparse.Namespace) -> int:
    import torch

    from inference.classifiers.station import DefectTyper, evaluate_typer, format_report

    torch.set_num_threads(args.threads)
    typer = DefectTyper.from_file(args.model)
    try:
        rep = evaluate_typer(typer, args.samples, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rep["model"] = str(args.model)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``classifier train`` and ``classifier evaluate``."""
    p = subparsers.add_parser("classifier", help="second-stage defect-type classifiers",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="classifier_command", required=True)

    t = sub.add_parser("train", help="train a classifier on K images per class")
    t.add_argument("--method", required=True,
                   help="000 | 001 | 002 | 003 | ce (aliases: graph, siamese, scl-arc, psic, "
                        "baseline)")
    t.add_argument("--data", default=str(DEFAULT_NEU),
                   help="folder with images/<class>_<n>.jpg (default: %(default)s)")
    t.add_argument("--per-class", type=whole_number(0, 10**6), default=0,
                   help="training images per class, the rest is left for testing (0 = all)")
    t.add_argument("--seed", type=int, default=0, help="split and training seed")
    t.add_argument("--out", required=True, help="output .safetensors (card next to it, .json)")
    t.add_argument("--epochs", type=whole_number(0, 10**5), default=None, help="override the method's epochs")
    t.add_argument("--backbone", default=None, choices=BACKBONES,
                   help="feature extractor of methods 000, 001, 002 and ce")
    t.add_argument("--input-size", type=whole_number(8, MAX_CLASSIFIER_INPUT_PX), default=None,
                   help="crop side in pixels")
    t.add_argument("--threads", type=whole_number(1, MAX_THREADS), default=None,
                   help="torch CPU threads")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="accuracy and per-class table on a labelled folder")
    e.add_argument("--model", required=True, help=".safetensors written by train")
    e.add_argument("--data", default=str(DEFAULT_NEU), help="folder with images/<class>_<n>.jpg")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.add_argument("--include-train", action="store_true",
                   help="also test on the images the model was trained on")
    e.add_argument("--threads", type=whole_number(1, MAX_THREADS), default=None,
                   help="torch CPU threads")
    e.set_defaults(func=_evaluate)

    from inference.classifiers.station import (
        DEFAULT_EPOCHS,
        DEFAULT_EVAL_SAMPLES,
        DEFAULT_TRAIN_SAMPLES,
        DEFAULT_TYPER,
        EVAL_SEED,
        TRAIN_SEED,
    )

    ts = sub.add_parser("train-station",
                        help="train the station's defect typer on simulated 6-state crops")
    ts.add_argument("--out", default=str(DEFAULT_TYPER),
                    help="output .safetensors, card next to it (default: %(default)s)")
    ts.add_argument("--samples", type=whole_number(1, 10**5), default=DEFAULT_TRAIN_SAMPLES,
                    help="simulated samples (10 RoIs each; default %(default)s)")
    ts.add_argument("--seed", type=int, default=TRAIN_SEED,
                    help="first sample seed (default %(default)s; keep clear of 1000-1999)")
    ts.add_argument("--method", default="ce", help="classifier method (default %(default)s)")
    ts.add_argument("--epochs", type=whole_number(0, 10**5), default=None,
                    help=f"training epochs (default {DEFAULT_EPOCHS})")
    ts.add_argument("--backbone", default=None, choices=BACKBONES,
                    help="backbone (default resnet-tiny)")
    ts.add_argument("--threads", type=whole_number(1, MAX_THREADS), default=1,
                    help="torch CPU threads")
    ts.set_defaults(func=_train_station)

    es = sub.add_parser("evaluate-station",
                        help="typing accuracy and confusion matrix on held-out simulated crops")
    es.add_argument("--model", default=str(DEFAULT_TYPER), help="typer .safetensors")
    es.add_argument("--samples", type=whole_number(1, 10**5), default=DEFAULT_EVAL_SAMPLES,
                    help="held-out simulated samples (default %(default)s)")
    es.add_argument("--seed", type=int, default=EVAL_SEED,
                    help="first held-out sample seed (default %(default)s)")
    es.add_argument("--json", action="store_true", help="print the report as JSON")
    es.add_argument("--threads", type=whole_number(1, MAX_THREADS), default=1,
                    help="torch CPU threads")
    es.set_defaults(func=_evaluate_station)
