"""Seed 001: Siamese network trained with cross-entropy + contrastive loss (SMSDD).

Wang et al., "Improved Loss Function for Defect Detection of Mobile Phone Screen". Two weight-
sharing branches (VGG16 without its FC layers) see a pair (a, b); a fully connected layer on
each branch's pooled feature gives class scores for the cross-entropy loss L1 (Eq. 3), the pair
of features gives the contrastive loss L2 (Eq. 4, Hadsell et al.), total L = L1 + beta L2 with
the paper's best beta = 0.01 (SMSDD-C, Table 2). Inference uses one branch and its FC layer.

Ambiguities of the paper and how they are resolved here:

- *Classes*: the paper is binary (defective / not); Eq. (3) generalises to the softmax
  cross-entropy over the C defect types (the paper's own stated future work).
- *Feature for the contrastive loss*: "the outputs of the Siamese Network" = the globally
  average-pooled backbone feature that also feeds the FC layer. The paper gives no margin m and
  its features have no fixed scale, so the features are L2-normalised before the distance and
  m = 1.0 (distance between unit vectors is in [0, 2]; m = 1 means pairs of different classes are
  pushed beyond 60 degrees apart).
- *Pair label*: Y = 1 same class, 0 different (Eq. 2 says -1, Eq. 4 needs 0).
- *Pair sampling*: not described; each step draws a batch of anchors and, for each, a partner
  of the same class with probability 0.5, otherwise of a random other class (balanced pairs).
  L1 is averaged over both members of every pair.
- *Optimiser*: only "learning rate 0.01 in all epochs" is given; SGD with momentum 0.9, constant
  lr 0.01, batch 32 pairs, no weight decay; the epoch count is ours (``epochs``). Augmentation is
  not mentioned; we use the dihedral group (flips / 90-degree rotations) as for the other methods.
- *Input*: the paper resizes screens to 230 x 110 RGB; crops here are square ``input_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import augment
from .backbones import build_backbone
from .base import CropClassifier, TrainConfig, batches, register_method
from .losses import contrastive_pair_loss

PAPER_BETA = 0.01  # SMSDD-C, best in Table 2
PAPER_LR = 0.01
CONTRASTIVE_MARGIN = 1.0  # not in the paper, see module docstring
POSITIVE_PAIR_FRACTION = 0.5


@dataclass
class SiameseConfig(TrainConfig):
    backbone: str = "vgg-tiny"  # the paper's VGG16, shrunk for the CPU; "vgg16" for full size
    beta: float = PAPER_BETA
    margin: float = CONTRASTIVE_MARGIN
    positive_fraction: float = POSITIVE_PAIR_FRACTION
    lr: float = PAPER_LR
    momentum: float = 0.9
    epochs: int = 100


class _Net(nn.Module):
    def __init__(self, backbone: str, in_ch: int, n_classes: int) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, in_ch)
        self.fc = nn.Linear(self.backbone.out_channels, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@register_method("siamese", "smsdd")
class SiameseClassifier(CropClassifier):
    method = "001"
    title = "Siamese network, cross-entropy + contrastive loss (seed 001, SMSDD)"
    config_cls = SiameseConfig
    config: SiameseConfig

    def _build(self, n_classes: int, in_channels: int) -> None:
        self.net = _Net(self.config.backbone, in_channels, n_classes)

    def _partners(self, y: np.ndarray, idx: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
        others = {c: np.flatnonzero(y != c) for c in by_class}
        same = rng.random(len(idx)) < self.config.positive_fraction
        part = np.empty_like(idx)
        for k, (i, s) in enumerate(zip(idx, same, strict=True)):
            pool = by_class[y[i]] if s else others[y[i]]
            part[k] = rng.choice(pool)
        return part, same

    def _train(self, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None) -> None:
        cfg = self.config
        net = self.net
        assert isinstance(net, _Net)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        yn = y.numpy()
        for _ in range(cfg.epochs):
            for idx in batches(len(x), cfg.batch_size, rng):
                part, same = self._partners(yn, idx, rng)
                xb = torch.cat([x[idx], x[part]])
                if cfg.augment:
                    xb, _ = augment(xb, gen=gen, crop=False)
                f = net.features(xb)
                logits = net.fc(f)
                l1 = F.cross_entropy(logits, torch.cat([y[idx], y[part]]))
                fn = F.normalize(f, dim=1)
                n = len(idx)
                l2 = contrastive_pair_loss(fn[:n], fn[n:], torch.from_numpy(same), cfg.margin)
                loss = l1 + cfg.beta * l2
                opt.zero_grad()
                loss.backward()
                opt.step()

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        return torch.softmax(self.net(x), dim=1)
