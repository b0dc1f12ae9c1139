"""Feature extractors written in the project (torchvision is not available).

Every backbone maps (B, C_in, H, W) to a feature map (B, out_channels, h, w); the methods pool
it themselves, because 003 (PSIC-Net) needs the map and the others need a global-average-pooled
vector. `C_in` is free: 1 for NEU grayscale, 6 for the station's illumination states.

Names accepted by :func:`build_backbone`:

- ``resnet50``: He et al. 2016, bottleneck blocks [3, 4, 6, 3], 2048-d output, 7x7/2 stem and
  max-pool (the backbone of seeds 000 and 002). ~23.5 M parameters; far too slow for the
  2-core CPU at any useful epoch count, kept for GPU use and fidelity.
- ``vgg16``: Simonyan & Zisserman, 13 conv layers in 5 blocks, 512-d output, *without* the FC
  layers (as seed 001 says). Batch-norm after each conv (the "vgg16_bn" variant), because we train
  from scratch (no ImageNet weights here) and plain VGG16 does not train from scratch reliably.
- ``resnet-tiny`` (CPU default): the same ResNet design shrunk: 3x3/2 stem, one basic block per
  stage, widths 16-32-64-128, 128-d output, ~0.7 M parameters.
- ``vgg-tiny`` (CPU default for 001): VGG layout (3x3 conv + BN + ReLU, max-pool between
  blocks), widths 16-32-64-128, 128-d output.
"""

from __future__ import annotations

import torch
from torch import nn

BACKBONES = ("resnet-tiny", "resnet50", "vgg-tiny", "vgg16")


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.down = None
        if stride != 1 or cin != planes:
            self.down = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride on 3x3 (v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + idt)


class ResNet(nn.Module):
    """ResNet trunk without the classifier head."""

    def __init__(self, in_channels: int, block: type[nn.Module], layers: list[int],
                 widths: list[int], stem: str = "imagenet") -> None:
        super().__init__()
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
                nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
            )
        else:  # "small": one 3x3/2 conv, enough for 64-128 px crops
            self.stem = _conv_bn(in_channels, widths[0], 3, 2)
        cin = widths[0]
        stages = []
        for i, (n, w) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class VGG(nn.Module):
    """VGG conv trunk (no FC layers), BN after every conv."""

    def __init__(self, in_channels: int, cfg: list[int | str]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(_conv_bn(cin, int(v)))
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                              512, 512, 512, "M", 512, 512, 512, "M"]
VGG_TINY_CFG: list[int | str] = [16, "M", 32, "M", 64, 64, "M", 128, 128, "M"]


def build_backbone(name: str, in_channels: int) -> nn.Module:
    """Return a backbone with an ``out_channels`` attribute (see module docstring)."""
    if name == "resnet50":
        return ResNet(in_channels, Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], "imagenet")
    if name == "resnet-tiny":
        return ResNet(in_channels, BasicBlock, [1, 1, 1, 1], [16, 32, 64, 128], "small")
    if name == "vgg16":
        return VGG(in_channels, VGG16_CFG)
    if name == "vgg-tiny":
        return VGG(in_channels, VGG_TINY_CFG)
    raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
