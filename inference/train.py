"""Training of the scratch detector (seed paper 004, sections 5.4-5.6).

Config-driven (`TrainConfig`, from a TOML file and/or command-line options): model variant
(width, nested or not), loss (the auto-encoder L2 of the paper's model 4, or binary
cross-entropy, model 3), Adam with the paper's lr 1e-4, betas (0.5, 0.9), eps 1e-8, batch,
steps, patch size and scratch patches per batch. Data: the streaming simulator
(`inference.data.SimPatchSource`) or recordings with truth (`RecordingPatchSource`).

Resumable: a checkpoint (``RUN/checkpoint.safetensors`` with the weights, Adam's moments and
step counts and the torch RNG state; ``RUN/checkpoint.json`` with the step, the config, the
loss history and the validation log) is written every `checkpoint_every` steps and at the end.
Nothing is pickled, so loading a checkpoint cannot execute code. Batch b is a pure function of
(data settings, b), so a resumed run continues with exactly the batches and the weights an
uninterrupted run would have (tests/test_training.py checks it bit for bit on CPU).

The final weights go through `inference.detector.save_model`: NAME.safetensors + NAME.json
(model card with the architecture, the data generator settings and seeds, the training
command, and the training figures).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from errors import StationError
from inference.data import (
    Batch,
    PatchConfig,
    RecordingPatchSource,
    SimPatchSource,
    SimSourceConfig,
    batch_loader,
)
from inference.loss import PAPER_ALPHA, autoencoder_l2_loss, bce_loss
from inference.model import NestedUNet, UNetConfig

PAPER_LR = 1e-4
PAPER_BETAS = (0.5, 0.9)
PAPER_EPS = 1e-8
CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"
LOSSES = ("ae", "bce")


class TrainError(StationError):
    """A configuration or checkpoint that cannot be used; the message says what to do."""


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in the checkpoint and the model card)."""

    # model
    width: float = 0.125
    nested: bool = True
    loss: str = "ae"
    """"ae": auto-encoder L2 on tanh outputs (paper model 4); "bce": cross-entropy on sigmoid
    outputs (paper model 3)."""
    alpha: float = PAPER_ALPHA
    bce_pos_weight: float | None = None
    # optimiser (paper 5.6)
    lr: float = PAPER_LR
    beta1: float = PAPER_BETAS[0]
    beta2: float = PAPER_BETAS[1]
    eps: float = PAPER_EPS
    lr_schedule: str = "constant"
    """"constant" (paper) or "cosine" (from lr down to lr * lr_final_fraction)."""
    lr_final_fraction: float = 0.05
    warmup_steps: int = 0
    # data
    data: str = "sim"
    """"sim" (streaming simulator) or a folder / comma-separated list of recordings."""
    steps: int = 1000
    batch_size: int = 16
    patch_px: int = 256
    scratch_per_batch: int = 1
    gaussian_sigma: float = 0.001
    salt_pepper_fraction: float = 2e-5
    augment: bool = True
    drop_empty: bool = True
    """Redraw background-only patches (paper); false keeps them (see PatchConfig)."""
    sim: dict[str, Any] = field(default_factory=dict)
    """Overrides of `inference.data.SimSourceConfig` (series_seed, exclude_series, mix, ...)."""
    val_series_seed: int = 2
    """Validation patches come from this simulator series (disjoint from training and test)."""
    val_batches: int = 4
    val_scratch_per_batch: int = 4
    # run
    seed: int = 0
    """Weight initialisation (and the recordings source's patch draw)."""
    val_every: int = 100
    checkpoint_every: int = 100
    log_every: int = 25
    threads: int = 1
    """torch threads. 1 is the default: on this 2-core machine shared with other work, 2
    threads measured 2.5-5x *slower* per step than 1 (spin-waiting under contention)."""
    workers: int = 0
    """DataLoader processes rendering batches ahead of the training step (0: in-process)."""
    device: str = "auto"
    amp: str = "none"
    """"bf16": bfloat16 autocast (CUDA)."""
    run_dir: str = "runs/detector"
    out: str = ""
    """Final model NAME.safetensors (default: RUN/model.safetensors)."""
    name: str = ""
    init_from: str = ""
    """Start from the weights of this exported model (NAME.safetensors + card; same
    architecture) with a fresh optimiser: a second training stage. Its card's training data is
    kept in the new card (`training_data.init_from`)."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise TrainError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise TrainError(f"lr_schedule must be constant or cosine, not {self.lr_schedule!r}")
        if self.amp not in ("none", "bf16"):
            raise TrainError(f"amp must be none or bf16, not {self.amp!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise TrainError("steps and batch_size must be >= 1")
        self.patch_config()  # validates patch_px and scratch_per_batch

    # -- derived settings --------------------------------------------------------------------
    def unet_config(self) -> UNetConfig:
        return UNetConfig(width=self.width, nested=self.nested,
                          output_activation="tanh" if self.loss == "ae" else "sigmoid")

    def patch_config(self, scratch_per_batch: int | None = None) -> PatchConfig:
        try:
            return PatchConfig(
                patch_px=self.patch_px, batch_size=self.batch_size,
                scratch_per_batch=(self.scratch_per_batch if scratch_per_batch is None
                                   else scratch_per_batch),
                gaussian_sigma=self.gaussian_sigma,
                salt_pepper_fraction=self.salt_pepper_fraction, augment=self.augment,
                drop_empty=self.drop_empty)
        except ValueError as exc:
            raise TrainError(str(exc)) from None

    def sim_config(self, series_seed: int | None = None) -> SimSourceConfig:
        try:
            cfg = SimSourceConfig.from_dict(self.sim)
        except TypeError as exc:
            raise TrainError(f"bad [sim] settings: {exc}") from None
        return cfg if series_seed is None else replace(cfg, series_seed=series_seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainError(f"unknown training settings {unknown} (known: {sorted(known)})")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        try:
            d = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TrainError(f"{path}: cannot read training config: {exc}") from None
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)

    @property
    def out_path(self) -> Path:
        return Path(self.out) if self.out else self.run_path / "model.safetensors"

    def lr_at(self, step: int) -> float:
        """Learning rate of (0-based) step `step`."""
        lr = self.lr
        if self.warmup_steps and step < self.warmup_steps:
            return lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
            lo = lr * self.lr_final_fraction
            return lo + 0.5 * (lr - lo) * (1.0 + math.cos(math.pi * min(1.0, t)))
        return lr


# Settings that may change between a run and its resumption (they do not change the result).
RESUMABLE_CHANGES = {"val_every", "checkpoint_every", "log_every", "threads", "workers", "device",
                     "out", "name", "run_dir"}


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_source(cfg: TrainConfig, validation: bool = False) -> Any:
    """The batch source: the streaming simulator or recordings with truth."""
    patch = cfg.patch_config(min(cfg.val_scratch_per_batch, cfg.batch_size) if validation
                             else None)
    if cfg.data == "sim":
        sim = cfg.sim_config(cfg.val_series_seed if validation else None)
        return SimPatchSource(sim, patch)
    paths: list[Path] = []
    for part in cfg.data.split(","):
        p = Path(part.strip())
        paths += sorted(p.glob("*.h5")) if p.is_dir() else [p]
    if not paths:
        raise TrainError(f"no recordings found in {cfg.data!r}")
    try:
        return RecordingPatchSource(paths, patch, seed=cfg.seed + (7919 if validation else 0))
    except ValueError as exc:
        raise TrainError(f"{cfg.data}: {exc}") from None


def compute_loss(model: NestedUNet, batch: Batch, cfg: TrainConfig) -> torch.Tensor:
    if cfg.loss == "ae":
        return autoencoder_l2_loss(model(batch.x), batch.max_intensity, batch.scratch, cfg.alpha)
    return bce_loss(model(batch.x, logits=True), batch.scratch, cfg.bce_pos_weight)


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(*(t.to(device, non_blocking=True) for t in batch))


@torch.no_grad()
def validate(model: NestedUNet, batches: list[Batch], cfg: TrainConfig, device: torch.device,
             t_high: float = 0.75) -> dict[str, float]:
    """Validation loss and patch-level rates of the finest output's scratch probability:
    share of scratch patches whose max p on their (3 x 3 grown) scratch pixels reaches
    T_high, and share of scratch-free patches with any p >= T_high (pixel-level, before the
    clustering of the detector, so a pessimistic false-alarm figure)."""
    was = model.training
    model.eval()
    losses, hit, n_s, alarm, n_c = [], 0, 0, 0, 0
    for b in batches:
        b = _to(b, device)
        losses.append(float(compute_loss(model, b, cfg)))
        y = model(b.x)[0].float()
        p = y.clamp(min=0.0) if cfg.loss == "ae" else y
        grown = torch.nn.functional.max_pool2d(b.scratch, 3, 1, 1) > 0.5
        for i in range(len(p)):
            if bool(b.is_scratch[i]):
                n_s += 1
                hit += bool((p[i][grown[i]] >= t_high).any())
            else:
                n_c += 1
                alarm += bool((p[i] >= t_high).any())
    model.train(was)
    return {"val_loss": float(np.mean(losses)), "val_scratch_patch_hit": hit / max(n_s, 1),
            "val_clean_patch_alarm": alarm / max(n_c, 1)}


# --------------------------------------------------------------------------------------------
# Checkpoints (safetensors + JSON, nothing pickled)
# --------------------------------------------------------------------------------------------

def save_checkpoint(run: Path, model: NestedUNet, opt: torch.optim.Optimizer, step: int,
                    cfg: TrainConfig, history: dict[str, Any]) -> Path:
    """Atomically write RUN/checkpoint.safetensors + RUN/checkpoint.json."""
    from safetensors.torch import save_file

    run.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    for i, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"opt.{i}.{k}"] = t.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = run / (CHECKPOINT + ".tmp")
    save_file(tensors, str(tmp))
    meta = {"step": step, "config": cfg.to_dict(), "param_groups": sd["param_groups"],
            "history": history, "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp_meta = run / (CHECKPOINT_META + ".tmp")
    tmp_meta.write_text(json.dumps(meta) + "\n")
    os.replace(tmp, run / CHECKPOINT)
    os.replace(tmp_meta, run / CHECKPOINT_META)
    return run / CHECKPOINT


def load_checkpoint(run: Path, model: NestedUNet, opt: torch.optim.Optimizer, cfg: TrainConfig
                    ) -> tuple[int, dict[str, Any]]:
    """Restore weights, optimiser and RNG from RUN; returns (step, history)."""
    from safetensors.torch import load_file

    meta_path = run / CHECKPOINT_META
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(run / CHECKPOINT))
    except (OSError, ValueError) as exc:
        raise TrainError(f"{run}: unreadable checkpoint ({exc}); delete the folder or pass "
                         "--no-resume to start over") from None
    old = meta["config"]
    new = cfg.to_dict()
    diff = sorted(k for k in set(old) | set(new)
                  if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
    if diff:
        raise TrainError(f"{run}: the checkpoint was trained with different settings "
                         f"({', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in diff)}"
                         "); use another --run-dir or pass --no-resume to start over")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), meta["history"]


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    model: NestedUNet
    step: int
    finished: bool
    history: dict[str, Any]
    model_path: Path | None
    seconds: float


def _reporter(cfg: TrainConfig, progress: bool, start: int
              ) -> tuple[Callable[[int, float, str], None], Callable[[], None]]:
    """A rich progress bar (TTY) or a log line every `log_every` steps."""
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                       TimeRemainingColumn(), transient=False)
        task = bar.add_task("train", total=cfg.steps, completed=start, info="")
        bar.start()

        def update(step: int, loss: float, extra: str) -> None:
            bar.update(task, completed=step, info=f"loss {loss:.5f}{extra}")

        return update, bar.stop

    t0 = time.perf_counter()

    def log(step: int, loss: float, extra: str) -> None:
        if extra or step % cfg.log_every == 0 or step == cfg.steps:
            rate = (step - start) / max(time.perf_counter() - t0, 1e-9)
            print(f"step {step}/{cfg.steps}  loss {loss:.5f}{extra}  "
                  f"{rate:.2f} steps/s", file=sys.stderr, flush=True)

    return log, lambda: None


def train(cfg: TrainConfig, *, resume: bool = True, progress: bool | None = None,
          stop_after: int | None = None, save: bool = True, command: str | None = None,
          ) -> TrainResult:
    """Train (or resume) according to `cfg`. `stop_after`: at most this many steps in this
    call (then checkpoint and return; call again to continue)."""
    torch.set_num_threads(max(1, int(cfg.threads)))
    device = resolve_device(cfg.device)
    run = cfg.run_path
    torch.manual_seed(cfg.seed)
    model = NestedUNet(cfg.unet_config()).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                           eps=cfg.eps)
    step, history = 0, {"loss": [], "val": [], "seconds": 0.0}
    if resume and (run / CHECKPOINT_META).exists():
        step, history = load_checkpoint(run, model, opt, cfg)
    elif cfg.init_from:
        init_weights(model, cfg)
    model.train()
    source = make_source(cfg)
    val = [make_source(cfg, validation=True).batch(i) for i in range(cfg.val_batches)] \
        if cfg.val_every and cfg.val_batches else []
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    progress = sys.stderr.isatty() if progress is None else progress
    report, close = _reporter(cfg, progress, step)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.amp == "bf16"
                else torch.autocast(device.type, enabled=False))
    t0 = time.perf_counter()
    seconds0 = float(history.get("seconds", 0.0))
    loader = batch_loader(source, step, end, cfg.workers) if end > step else iter(())
    try:
        for batch in loader:
            for g in opt.param_groups:
                g["lr"] = cfg.lr_at(step)
            batch = _to(batch, device)
            with autocast:
                loss = compute_loss(model, batch, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            history["loss"].append(round(float(loss.detach()), 7))
            extra = ""
            if val and cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                v = validate(model, val, cfg, device)
                history["val"].append({"step": step, **{k: round(x, 6) for k, x in v.items()}})
                extra = (f"  val {v['val_loss']:.5f} hit {v['val_scratch_patch_hit']:.2f} "
                         f"alarm {v['val_clean_patch_alarm']:.2f}")
            recent = history["loss"][-cfg.log_every:]
            report(step, float(np.mean(recent)), extra)
            if save and (step % cfg.checkpoint_every == 0 or step == end):
                history["seconds"] = seconds0 + time.perf_counter() - t0
                save_checkpoint(run, model, opt, step, cfg, history)
    finally:
        close()
    history["seconds"] = seconds0 + time.perf_counter() - t0
    finished = step >= cfg.steps
    model_path = None
    if finished and save:
        model_path = export_model(model, cfg, history, source, command)
    return TrainResult(model.eval(), step, finished, history, model_path,
                       float(history["seconds"]))


def init_weights(model: NestedUNet, cfg: TrainConfig) -> dict[str, Any]:
    """Load `cfg.init_from` into `model` (architectures must match); returns its card."""
    from inference.detector import ModelLoadError, load_model

    try:
        src, card = load_model(cfg.init_from)
    except ModelLoadError as exc:
        raise TrainError(f"--init-from: {exc}") from None
    if src.config != model.config:
        raise TrainError(f"--init-from {cfg.init_from}: its architecture ({card.summary()}) "
                         f"differs from this run's (width {cfg.width:g}, nested={cfg.nested}, "
                         f"loss {cfg.loss})")
    model.load_state_dict(src.state_dict())
    return {"path": str(cfg.init_from), "weights_sha256": card.weights_sha256,
            "name": card.name, "training_data": card.training_data,
            "metrics": card.metrics.get("training")}


def export_model(model: NestedUNet, cfg: TrainConfig, history: dict[str, Any], source: Any,
                 command: str | None = None) -> Path:
    """Write the final NAME.safetensors + model card (inference.detector.save_model)."""
    from inference.detector import save_model
    from inference.postprocess import PostprocessParams

    losses = history["loss"]
    tail = max(1, min(100, len(losses) // 10))
    c = cfg.unet_config()
    sched = (f"cosine to x{cfg.lr_final_fraction:g}" if cfg.lr_schedule == "cosine"
             else "constant")
    if cfg.warmup_steps:
        sched += f", {cfg.warmup_steps} warm-up steps"
    training = {
        **source.describe(),
        "patch": cfg.patch_config().to_dict(),
        "validation": {"series_seed": cfg.val_series_seed, "batches": cfg.val_batches,
                       "scratch_per_batch": cfg.val_scratch_per_batch},
        "config": cfg.to_dict(),
        "command": command or "",
        "optimizer": f"Adam lr {cfg.lr:g} ({sched}), betas ({cfg.beta1:g}, {cfg.beta2:g}), "
                     f"eps {cfg.eps:g}",
        "loss": (f"auto-encoder L2, alpha {cfg.alpha:g}, 3 scales" if cfg.loss == "ae"
                 else "binary cross-entropy on sigmoid outputs, 3 scales"),
        "steps": cfg.steps, "patches_seen": cfg.steps * cfg.batch_size,
        "train_seconds": round(float(history.get("seconds", 0.0)), 1),
        "threads": cfg.threads, "device": str(resolve_device(cfg.device)),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
    }
    if cfg.init_from:
        training["init_from"] = init_weights(NestedUNet(cfg.unet_config()), cfg)
    metrics = {"training": {
        "first_loss": round(float(np.mean(losses[:tail])), 6) if losses else None,
        "final_loss": round(float(np.mean(losses[-tail:])), 6) if losses else None,
        "loss_window_steps": tail,
        "validation": history["val"][-1] if history["val"] else None}}
    name = cfg.name or f"nestedunet-w{c.width:g}-{'nested' if c.nested else 'unnested'}-{cfg.loss}"
    path, _ = save_model(model, cfg.out_path, name=name, postprocess=PostprocessParams(),
                         training_data=training, metrics=metrics,
                         notes="Trained on simulated data only (world)." if cfg.data == "sim"
                         else "")
    return path


__all__ = ["TrainConfig", "TrainError", "TrainResult", "load_checkpoint", "save_checkpoint",
           "train", "validate", "export_model", "PAPER_LR", "PAPER_BETAS", "PAPER_EPS"]
