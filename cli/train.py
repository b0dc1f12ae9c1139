"""Command `train` (registered by main.py through `register`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from errors import EXIT_ERROR, EXIT_OK


def _bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the scratch detector (simulated or recorded data)",
        description="Train a NestedUNet scratch detector. Settings come from --config (TOML, "
                    "keys as the long options with underscores, plus a [sim] table) and are "
                    "overridden by options. The run folder keeps a resumable checkpoint; "
                    "running the same command again continues where it stopped. The final "
                    "weights are written as NAME.safetensors + NAME.json (model card).",
        epilog="Paper settings (seed 004, 5.6): --lr 1e-4 --betas 0.5 0.9 --eps 1e-8 "
               "--batch 16 --scratch-per-batch 1 --loss ae. See docs/training.md.")
    p.add_argument("--config", type=Path, default=None, metavar="TOML", help="settings file")
    p.add_argument("--run-dir", default=None, help="checkpoint / log folder (default runs/detector)")
    p.add_argument("--out", default=None, help="final model .safetensors (default RUN/model)")
    p.add_argument("--name", default=None, help="model name in the card")
    p.add_argument("--init-from", default=None, metavar="F",
                   help="start from this exported model's weights (second stage)")
    g = p.add_argument_group("model")
    g.add_argument("--width", type=float, default=None, help="width multiplier (default 0.125)")
    g.add_argument("--nested", type=_bool, default=None, metavar="BOOL",
                   help="nested weights (true, paper model 4) or plain (false, model 1)")
    g.add_argument("--loss", choices=["ae", "bce"], default=None,
                   help="ae: auto-encoder L2 (tanh, model 4); bce: cross-entropy (sigmoid, "
                        "model 3)")
    g.add_argument("--alpha", type=float, default=None, help="auto-encoder L2 alpha (0.7)")
    g = p.add_argument_group("optimiser")
    g.add_argument("--lr", type=float, default=None, help="learning rate (paper 1e-4)")
    g.add_argument("--betas", type=float, nargs=2, default=None, metavar=("B1", "B2"),
                   help="Adam betas (paper 0.5 0.9)")
    g.add_argument("--eps", type=float, default=None, help="Adam eps (paper 1e-8)")
    g.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None)
    g.add_argument("--lr-final-fraction", type=float, default=None)
    g.add_argument("--warmup-steps", type=int, default=None)
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None,
                   help="'sim' (streaming simulator, default) or recordings folder(s), "
                        "comma-separated")
    g.add_argument("--steps", type=int, default=None, help="optimiser steps (default 1000)")
    g.add_argument("--batch", type=int, default=None, dest="batch_size",
                   help="patches per batch (paper 16)")
    g.add_argument("--patch", type=int, default=None, dest="patch_px",
                   help="RAW patch side, multiple of 64 (default 256)")
    g.add_argument("--scratch-per-batch", type=int, default=None,
                   help="patches with a scratch per batch (paper 1)")
    g.add_argument("--gaussian-sigma", type=float, default=None)
    g.add_argument("--salt-pepper", type=float, default=None, dest="salt_pepper_fraction")
    g.add_argument("--sim-seed", type=int, default=None,
                   help="training series seed of the streaming simulator (default 1)")
    g.add_argument("--exclude-series", default=None, metavar="SEED:N[,SEED:N]",
                   help="held-out simulate series whose sample seeds training must never use "
                        "(default 1000:1000)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=None, help="weight initialisation seed")
    g.add_argument("--val-every", type=int, default=None, help="validate every K steps")
    g.add_argument("--val-batches", type=int, default=None)
    g.add_argument("--checkpoint-every", type=int, default=None)
    g.add_argument("--log-every", type=int, default=None)
    g.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    g.add_argument("--workers", type=int, default=None,
                   help="data-rendering processes (default 0: in the training process)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--amp", choices=["none", "bf16"], default=None)
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="run at most N steps now, checkpoint and stop (resume later)")
    p.add_argument("--no-resume", action="store_true",
                   help="ignore an existing checkpoint in the run folder")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a bar")
    p.set_defaults(func=cmd_train)


_DIRECT = ("run_dir", "out", "name", "width", "nested", "loss", "alpha", "lr", "eps",
           "lr_schedule", "lr_final_fraction", "warmup_steps", "data", "steps", "batch_size",
           "patch_px", "scratch_per_batch", "gaussian_sigma", "salt_pepper_fraction", "seed",
           "val_every", "val_batches", "checkpoint_every", "log_every", "threads", "workers",
           "device", "amp", "init_from")


def config_from_args(args: argparse.Namespace):
    """TrainConfig from --config plus the options given on the command line."""
    from inference.train import TrainConfig

    over = {k: getattr(args, k) for k in _DIRECT if getattr(args, k, None) is not None}
    if args.betas is not None:
        over["beta1"], over["beta2"] = args.betas
    base = TrainConfig.from_toml(args.config) if args.config else TrainConfig()
    d = base.to_dict()
    d.update(over)
    sim = dict(d.get("sim") or {})
    if args.sim_seed is not None:
        sim["series_seed"] = args.sim_seed
    if args.exclude_series is not None:
        pairs = []
        for part in args.exclude_series.split(","):
            if part.strip():
                s, n = part.split(":")
                pairs.append([int(s), int(n)])
        sim["exclude_series"] = pairs
    d["sim"] = sim
    return TrainConfig.from_dict(d)


def cmd_train(args: argparse.Namespace) -> int:
    from inference.train import TrainError, train

    try:
        cfg = config_from_args(args)
        prog = {"main.py": "python main.py"}.get(
            Path(sys.argv[0]).name if sys.argv else "", "python " + (sys.argv or [""])[0])
        cmd = " ".join([prog, *(shlex.quote(a) for a in sys.argv[1:])])
        res = train(cfg, resume=not args.no_resume,
                    progress=False if args.no_progress else None,
                    stop_after=args.stop_after, command=cmd)
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    losses = res.history["loss"]
    last = sum(losses[-50:]) / max(1, len(losses[-50:]))
    if res.finished:
        print(f"trained {res.step} steps in {res.seconds / 60:.1f} min, final loss {last:.5f}; "
              f"wrote {res.model_path} (+ .json model card)")
    else:
        print(f"stopped at step {res.step}/{cfg.steps} (loss {last:.5f}); run the same "
              f"command again to resume from {cfg.run_path}")
    return EXIT_OK
