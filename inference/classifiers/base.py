"""Common interface of the second-stage crop classifiers (docs/classifiers.md).

A *crop* is a float array around one detected object: ``(h, w)`` for a grayscale image (NEU) or
``(c, h, w)`` for ``c`` channels (the station's 6 illumination states). Crops may differ in size;
each is padded to a square with its own per-channel median (so a dark-field background stays dark
and the object's aspect ratio is kept) and resized to ``config.input_size``. Channels are
standardised with the mean / std of the training crops, which are stored in the model card.

Persistence never uses pickle: ``save(path)`` writes ``path`` (safetensors: network weights and
any database tensors, with the card JSON also copied into the safetensors metadata) and
``path.with_suffix('.json')`` (the human-readable card: method, classes, config, normalisation,
training provenance). :func:`load_classifier` rebuilds the right class from the card.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from errors import ConfigError
from inference.cards import ClassifierCard, ModelLoadError, parse_card, read_card_text

CARD_FORMAT = "darkfield-crop-classifier"
CARD_VERSION = 1

Crops = np.ndarray | Sequence[np.ndarray]


@dataclass
class TrainConfig:
    """Settings shared by every method; subclasses add the paper's hyperparameters."""

    input_size: int = 64  # CPU-sized; the papers use 200-1024 px
    backbone: str = "resnet-tiny"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.0
    seed: int = 0
    augment: bool = True
    predict_batch_size: int = 256


def _as_chw(crop: np.ndarray) -> np.ndarray:
    a = np.asarray(crop, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"a crop must be (h, w) or (c, h, w), got shape {a.shape}")
    return a


def _square_resize(a: np.ndarray, size: int, mask: bool = False) -> np.ndarray:
    """Pad (c, h, w) to a square with the per-channel median, then resize to (c, size, size)."""
    c, h, w = a.shape
    if h != w:
        s = max(h, w)
        fill = np.zeros(c, np.float32) if mask else np.median(a.reshape(c, -1), axis=1)
        out = np.broadcast_to(fill[:, None, None], (c, s, s)).astype(np.float32)
        r0, c0 = (s - h) // 2, (s - w) // 2
        out[:, r0:r0 + h, c0:c0 + w] = a
        a = out
    if a.shape[1] == size:
        return a
    t = torch.from_numpy(np.ascontiguousarray(a))[None]
    if mask:
        t = F.interpolate(t, size=(size, size), mode="area") if a.shape[1] > size else \
            F.interpolate(t, size=(size, size), mode="nearest")
        return (t[0] >= 0.5).float().numpy()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=a.shape[1] > size)
    return t[0].numpy()


def prepare_crops(crops: Crops, size: int) -> np.ndarray:
    """Stack crops into (N, C, size, size) float32 (no normalisation)."""
    if isinstance(crops, np.ndarray) and crops.ndim in (3, 4):
        arr = crops.astype(np.float32, copy=False)
        if arr.ndim == 3:
            arr = arr[:, None]
        if arr.shape[2] == size and arr.shape[3] == size:
            return np.ascontiguousarray(arr)
        return np.stack([_square_resize(a, size) for a in arr])
    items = [_as_chw(c) for c in crops]
    if not items:
        raise ValueError("no crops given")
    chans = {a.shape[0] for a in items}
    if len(chans) != 1:
        raise ValueError(f"crops have different channel counts: {sorted(chans)}")
    return np.stack([_square_resize(a, size) for a in items])


def prepare_masks(masks: Crops, size: int) -> np.ndarray:
    """Stack binary masks into (N, size, size) float32 with the same geometry as the crops."""
    if isinstance(masks, np.ndarray) and masks.ndim == 3 and masks.shape[1:] == (size, size):
        return (masks > 0).astype(np.float32)
    out = [_square_resize((np.asarray(m) > 0).astype(np.float32)[None], size, mask=True)[0]
           for m in masks]
    return np.stack(out)


def batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled index batches; a last batch of one is merged (BatchNorm needs >= 2 samples)."""
    idx = rng.permutation(n)
    parts = [idx[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(parts) > 1 and len(parts[-1]) < 2:
        last = parts.pop()
        parts[-1] = np.concatenate([parts[-1], last])
    yield from parts


def n_batches(n: int, batch_size: int) -> int:
    """Number of batches :func:`batches` yields for ``n`` samples."""
    k = -(-n // batch_size)
    return k - 1 if k > 1 and n - (k - 1) * batch_size < 2 else k


class CropClassifier:
    """Base class: ``fit(crops, labels)``, ``predict_proba(crops)``, ``save``, ``load``.

    Subclasses set ``method`` / ``config_cls`` and implement ``_build`` (create ``self.net`` for
    ``n_classes`` and ``in_channels``), ``_train`` (optimise on normalised tensors) and
    ``_scores`` (normalised tensors -> (N, C) probabilities). ``masks`` are used only by
    methods that need them (003) and ignored by the others.
    """

    method: ClassVar[str] = ""
    title: ClassVar[str] = ""
    config_cls: ClassVar[type[TrainConfig]] = TrainConfig

    def __init__(self, config: TrainConfig | None = None, **overrides: Any) -> None:
        cfg = config if config is not None else self.config_cls()
        if overrides:
            cfg = dataclasses.replace(cfg, **overrides)
        self.config = cfg
        self.classes: list[str] = []
        self.in_channels = 0
        self.mean = np.zeros(0, np.float32)
        self.std = np.ones(0, np.float32)
        self.net: nn.Module | None = None
        self.info: dict[str, Any] = {}

    # ---- public API -------------------------------------------------------------------------
    def fit(self, crops: Crops, labels: Sequence[str], masks: Crops | None = None,
            **info: Any) -> CropClassifier:
        """Train from scratch. ``info`` (e.g. data provenance) is stored in the card."""
        cfg = self.config
        x = prepare_crops(crops, cfg.input_size)
        if len(labels) != len(x):
            raise ValueError(f"{len(x)} crops but {len(labels)} labels")
        names = [str(lab) for lab in labels]
        self.classes = sorted(set(names))
        if len(self.classes) < 2:
            raise ValueError("need at least two classes")
        y = np.array([self.classes.index(lab) for lab in names], dtype=np.int64)
        self.in_channels = x.shape[1]
        self.mean = x.mean(axis=(0, 2, 3)).astype(np.float32)
        self.std = (x.std(axis=(0, 2, 3)) + 1e-6).astype(np.float32)
        m = None if masks is None else torch.from_numpy(prepare_masks(masks, cfg.input_size))
        torch.manual_seed(cfg.seed)
        self._build(len(self.classes), self.in_channels)
        t0, c0 = time.perf_counter(), time.process_time()
        assert self.net is not None
        self.net.train()
        self._train(self._normalise(x), torch.from_numpy(y), m)
        self.net.eval()
        self.info = {**info, "n_train": int(len(x)), "train_seconds": time.perf_counter() - t0,
                     "train_cpu_seconds": time.process_time() - c0,
                     "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
        return self

    def predict_proba(self, crops: Crops) -> np.ndarray:
        """(N, n_classes) probabilities, columns in the order of ``self.classes``."""
        if self.net is None:
            raise RuntimeError("classifier is not trained")
        x = prepare_crops(crops, self.config.input_size)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"model expects {self.in_channels} channels, got {x.shape[1]}")
        xt = self._normalise(x)
        self.net.eval()
        out = []
        bs = self.config.predict_batch_size
        with torch.no_grad():
            for i in range(0, len(xt), bs):
                out.append(self._scores(xt[i:i + bs]))
        return torch.cat(out).numpy().astype(np.float64)

    def predict(self, crops: Crops) -> list[str]:
        p = self.predict_proba(crops)
        return [self.classes[i] for i in p.argmax(axis=1)]

    def card(self) -> dict[str, Any]:
        return {
            "format": CARD_FORMAT, "version": CARD_VERSION, "method": self.method,
            "title": self.title, "classes": list(self.classes),
            "in_channels": self.in_channels, "config": dataclasses.asdict(self.config),
            "normalisation": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "extra": self._extra_card(), "training": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` weights and ``<path>.json`` card; returns the weights path."""
        if self.net is None:
            raise RuntimeError("classifier is not trained")
        p = _weights_path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        card = self.card()
        tensors = {f"net.{k}": v.detach().contiguous().clone()
                   for k, v in self.net.state_dict().items()}
        tensors.update({f"extra.{k}": v.contiguous() for k, v in self._extra_tensors().items()})
        save_file(tensors, str(p), metadata={"card": json.dumps(card)})
        p.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> CropClassifier:
        return load_classifier(path)

    # ---- helpers for subclasses ---------------------------------------------------------------
    def _normalise(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x)
        return (t - torch.from_numpy(self.mean)[:, None, None]) / torch.from_numpy(
            self.std)[:, None, None]

    def _build(self, n_classes: int, in_channels: int) -> None:
        raise NotImplementedError

    def _train(self, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None) -> None:
        raise NotImplementedError

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _extra_card(self) -> dict[str, Any]:
        return {}

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _restore_extra(self, card: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        return None


METHODS: dict[str, type[CropClassifier]] = {}
ALIASES: dict[str, str] = {}


def register_method(*aliases: str):
    """Class decorator adding a method to :data:`METHODS` under its code and aliases."""

    def deco(cls: type[CropClassifier]) -> type[CropClassifier]:
        METHODS[cls.method] = cls
        for a in aliases:
            ALIASES[a] = cls.method
        return cls

    return deco


def resolve_method(name: str) -> type[CropClassifier]:
    key = ALIASES.get(name, name)
    if key not in METHODS:
        known = sorted(METHODS) + sorted(ALIASES)
        raise ConfigError(f"unknown classifier method {name!r}; choose one of {known}")
    return METHODS[key]


def make_classifier(method: str, **overrides: Any) -> CropClassifier:
    """Create an untrained classifier of ``method`` ("000".."003", "ce" or an alias)."""
    return resolve_method(method)(**overrides)


def _weights_path(path: str | Path) -> Path:
    p = Path(path)
    return p if p.suffix == ".safetensors" else p.with_name(p.name + ".safetensors")


def read_card(path: str | Path) -> dict[str, Any]:
    """The classifier's card (the .json beside the weights, else the copy in their metadata),
    checked against `inference.cards.ClassifierCard`; ModelLoadError names what is wrong."""
    from safetensors import SafetensorError, safe_open

    p = _weights_path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: no such classifier file; pass the .safetensors written by "
                             "`main.py classifier train`")
    card_path = p.with_suffix(".json")
    if card_path.exists():
        source, text = card_path, read_card_text(card_path)
    else:
        try:
            with safe_open(str(p), "pt") as f:
                source, text = p, (f.metadata() or {}).get("card", "")
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"{p}: not a readable safetensors file ({exc}); copy it again "
                                 "from the training output") from None
    return parse_card(text, source, ClassifierCard, what="crop-classifier card",
                      fmt=CARD_FORMAT, version_key="version", newest=CARD_VERSION)


def load_classifier(path: str | Path) -> CropClassifier:
    """Rebuild a trained classifier from ``save`` output (weights + card); no pickle involved.
    Any problem of the pair is a ModelLoadError naming the file and the fix."""
    from safetensors import SafetensorError

    p = _weights_path(path)
    card = read_card(p)
    try:
        cls = resolve_method(card["method"])
    except ConfigError as exc:
        raise ModelLoadError(f"{p}: {exc}") from None
    known = {f.name for f in dataclasses.fields(cls.config_cls)}
    unknown = sorted(set(card["config"]) - known)
    if unknown:
        raise ModelLoadError(f"{p}: config keys {unknown} are not settings of method "
                             f"{cls.method}; use the card written with these weights")
    try:
        obj = cls(cls.config_cls(**card["config"]))
        obj.classes = list(card["classes"])
        obj.in_channels = int(card["in_channels"])
        obj.mean = np.asarray(card["normalisation"]["mean"], np.float32)
        obj.std = np.asarray(card["normalisation"]["std"], np.float32)
        obj.info = card.get("training", {})
        tensors = load_file(str(p))
        extra = card.get("extra", {})
        obj._build(int(extra.get("n_train_classes") or len(obj.classes)), obj.in_channels)
        assert obj.net is not None
        obj.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        obj._restore_extra(extra, {k[6:]: v for k, v in tensors.items()
                                   if k.startswith("extra.")})
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{p}: not a readable safetensors file ({exc}); copy it again "
                             "from the training output") from None
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"{p}: weights and card do not fit together "
                             f"({str(exc).splitlines()[0]:.300}); copy both files of one "
                             "training run together") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelLoadError(f"{p}: {len(bad)} tensors contain NaN/Inf (e.g. {bad[0]}); "
                             "retrain or restore the file")
    obj.net.eval()
    return obj
