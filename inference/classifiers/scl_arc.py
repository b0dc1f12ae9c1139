"""Seed 002: self-contrastive learning + ArcFace margin, with a cosine prototype database.

Phuong, Tin & Trang, "Improving Image Representation for Surface Defect Recognition with Small
Data". Backbone E -> global average pooling -> projection MLP -> d-dim embedding z. Training
loss ``alpha * L_Con + beta * L_Arc`` (Eq. 5) with alpha = 3 beta = 0.75. Inference does not
use a softmax head: test embeddings are compared by cosine similarity with a *reference database*
of training embeddings and the class with the highest average similarity wins. New classes are
added by putting k embeddings of them into the database (:meth:`SclArcClassifier.register_class`),
no retraining.

Ambiguities of the paper and how they are resolved here:

- *Projection head*: "a linear projection head MLP"; we use SimCLR's Linear(D, D) - ReLU -
  Linear(D, d) with d = 128 (Table I "Embedding Size").
- *Which embedding the Arc loss sees*: Fig. 1 feeds the Arc Margin Penalty block from "dense
  embeddings from the MLP projection"; we use the same projection z for both losses and apply
  the Arc loss to all 3N embeddings of a step (originals and both views) with their class labels.
- *Contrastive loss with three views*: see :func:`~.losses.nt_xent_three_views` (denominator over
  all 3N embeddings, each pair term symmetrised).
- *Original image*: the un-augmented crop; the two views are independent draws of dihedral
  transform + random resized crop (:mod:`.augment`, scale 0.5-1).
- *ArcFace scale s*: not given; s = 30 (the value of the common ArcMarginProduct implementation;
  for 6 classes any s above ~6 can reach p > 0.99, 64 is ArcFace's choice for 85k identities).
- *Database feature*: the L2-normalised projection z (the space the Arc loss shapes).
- *Reference images*: "chosen randomly from the training set"; ``db_shots = None`` (default)
  uses every training image (for K <= 50 per class this is the whole small training set),
  an integer k picks k random ones per class. Probabilities are softmax(s * mean cosine), i.e.
  the same logit scale as training; the argmax is the paper's rule.
- *Pre-training*: the paper's ResNet-50 is almost certainly ImageNet-initialised (not stated);
  no pretrained weights are available here, every backbone starts from random initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import augment
from .backbones import build_backbone
from .base import CropClassifier, Crops, TrainConfig, batches, prepare_crops, register_method
from .losses import arcface_logits, nt_xent_three_views

PAPER_ALPHA = 0.75  # weight of L_Con, Eq. (5)
PAPER_BETA = 0.25  # weight of L_Arc (alpha = 3 beta = 0.75)
PAPER_TAU = 0.5  # Table I
PAPER_MARGIN = 0.5  # Table I
PAPER_EMBED_DIM = 128  # Table I
PAPER_LR = 5e-4  # Table I, Adam
PAPER_EPOCHS = 100
PAPER_BATCH = 32
ARC_SCALE = 30.0  # not in the paper, see module docstring


@dataclass
class SclArcConfig(TrainConfig):
    alpha: float = PAPER_ALPHA
    beta: float = PAPER_BETA
    tau: float = PAPER_TAU
    margin: float = PAPER_MARGIN
    scale: float = ARC_SCALE
    embed_dim: int = PAPER_EMBED_DIM
    lr: float = PAPER_LR
    epochs: int = PAPER_EPOCHS
    batch_size: int = PAPER_BATCH
    db_shots: int | None = None


class _Net(nn.Module):
    def __init__(self, backbone: str, in_ch: int, n_classes: int, d: int) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, in_ch)
        dd = self.backbone.out_channels
        self.proj = nn.Sequential(nn.Linear(dd, dd), nn.ReLU(inplace=True), nn.Linear(dd, d))
        self.arc_weight = nn.Parameter(torch.empty(n_classes, d))
        nn.init.xavier_uniform_(self.arc_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x).mean((2, 3)))


@register_method("scl-arc", "sclarc", "contrastive-arcface")
class SclArcClassifier(CropClassifier):
    method = "002"
    title = "self-contrastive learning + ArcFace margin, cosine prototype database (seed 002)"
    config_cls = SclArcConfig
    config: SclArcConfig

    def __init__(self, config: SclArcConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.db_feats = torch.zeros(0, 0)
        self.db_labels = torch.zeros(0, dtype=torch.long)
        self.n_train_classes = 0

    def _build(self, n_classes: int, in_channels: int) -> None:
        self.n_train_classes = n_classes
        self.net = _Net(self.config.backbone, in_channels, n_classes, self.config.embed_dim)

    def _train(self, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None) -> None:
        cfg = self.config
        net = self.net
        assert isinstance(net, _Net)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.epochs):
            for idx in batches(len(x), cfg.batch_size, rng):
                x0, yb = x[idx], y[idx]
                if cfg.augment:
                    x1, _ = augment(x0, gen=gen)
                    x2, _ = augment(x0, gen=gen)
                else:
                    x1, x2 = x0, x0
                z = net(torch.cat([x0, x1, x2]))
                n = len(idx)
                l_con = nt_xent_three_views(z[:n], z[n:2 * n], z[2 * n:], cfg.tau)
                logits = arcface_logits(z, net.arc_weight, yb.repeat(3), cfg.scale, cfg.margin)
                l_arc = F.cross_entropy(logits, yb.repeat(3))
                loss = cfg.alpha * l_con + cfg.beta * l_arc
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        self._set_database_tensors(x, y, cfg.db_shots, rng)

    # ---- prototype database -------------------------------------------------------------------
    def _embed_tensor(self, x: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        self.net.eval()
        bs = self.config.predict_batch_size
        with torch.no_grad():
            return torch.cat([F.normalize(self.net(x[i:i + bs]), dim=1)
                              for i in range(0, len(x), bs)])

    def _set_database_tensors(self, x: torch.Tensor, y: torch.Tensor, shots: int | None,
                              rng: np.random.Generator) -> None:
        keep = np.arange(len(y))
        if shots is not None:
            yn = y.numpy()
            keep = np.concatenate([rng.permutation(np.flatnonzero(yn == c))[:shots]
                                   for c in np.unique(yn)])
        self.db_feats = self._embed_tensor(x[keep])
        self.db_labels = y[keep].clone()

    def embed(self, crops: Crops) -> np.ndarray:
        """L2-normalised d-dim embeddings (the database feature space)."""
        x = self._normalise(prepare_crops(crops, self.config.input_size))
        return self._embed_tensor(x).numpy()

    def set_database(self, crops: Crops, labels: Sequence[str]) -> None:
        """Replace the reference database (labels may include classes unseen in training)."""
        for lab in labels:
            if lab not in self.classes:
                self.classes.append(lab)
        x = self._normalise(prepare_crops(crops, self.config.input_size))
        self.db_feats = self._embed_tensor(x)
        self.db_labels = torch.tensor([self.classes.index(lab) for lab in labels])

    def register_class(self, name: str, crops: Crops) -> None:
        """Few-shot registration: add ``name`` from k example crops (or add shots to a class)."""
        if name not in self.classes:
            self.classes.append(name)
        x = self._normalise(prepare_crops(crops, self.config.input_size))
        f = self._embed_tensor(x)
        self.db_feats = torch.cat([self.db_feats, f]) if len(self.db_feats) else f
        lab = torch.full((len(f),), self.classes.index(name), dtype=torch.long)
        self.db_labels = torch.cat([self.db_labels, lab])

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        z = F.normalize(self.net(x), dim=1)
        sim = z @ self.db_feats.t()  # (N, M)
        n_cls = len(self.classes)
        onehot = F.one_hot(self.db_labels, n_cls).float()  # (M, C)
        count = onehot.sum(0)
        mean_sim = (sim @ onehot) / count.clamp(min=1)
        mean_sim = mean_sim.masked_fill(count[None] == 0, -1.0)
        return torch.softmax(self.config.scale * mean_sim, dim=1)

    # ---- persistence ----------------------------------------------------------------------------
    def _extra_card(self) -> dict[str, Any]:
        return {"n_train_classes": self.n_train_classes,
                "database_size": int(len(self.db_labels))}

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"db_feats": self.db_feats.float(), "db_labels": self.db_labels.long()}

    def _restore_extra(self, card: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.db_feats = tensors["db_feats"]
        self.db_labels = tensors["db_labels"]
