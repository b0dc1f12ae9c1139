"""Plain cross-entropy baseline: backbone + global average pooling + linear layer.

This is the "ResNet-50 (Backbone)" column of seed 002 Table III: the paper trains it with "the
same training hyper-parameters" as its own method, so the defaults mirror
:class:`~inference.classifiers.scl_arc.SclArcConfig` (Adam, lr 5e-4, batch 32, 100 epochs, the
same dihedral + random-resized-crop augmentation, one view per image per step).
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


@dataclass
class CrossEntropyConfig(TrainConfig):
    lr: float = 5e-4  # seed 002 Table I (shared with the baseline)
    epochs: int = 100
    batch_size: int = 32


class _Net(nn.Module):
    def __init__(self, backbone: str, in_ch: int, n_classes: int) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, in_ch)
        self.fc = nn.Linear(self.backbone.out_channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x).mean((2, 3)))


@register_method("baseline", "cross-entropy")
class CrossEntropyClassifier(CropClassifier):
    method = "ce"
    title = "cross-entropy baseline (backbone + linear, seed 002 Table III)"
    config_cls = CrossEntropyConfig

    def _build(self, n_classes: int, in_channels: int) -> None:
        self.net = _Net(self.config.backbone, in_channels, n_classes)

    def _train(self, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None) -> None:
        cfg = self.config
        assert self.net is not None
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.epochs):
            for idx in batches(len(x), cfg.batch_size, rng):
                xb = x[idx]
                if cfg.augment:
                    xb, _ = augment(xb, gen=gen)
                loss = F.cross_entropy(self.net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        return torch.softmax(self.net(x), dim=1)
