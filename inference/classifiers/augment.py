"""Batch augmentations on (B, C, H, W) tensors, with an optional (B, H, W) mask kept aligned.

Defect crops have no preferred orientation, so the dihedral group (rotations by multiples of 90
degrees plus flips, as seed 002 lists: random rotation from {0, pi/2, pi, 3pi/2}, horizontal
and vertical flips) is always safe. Random resized crops give seed 002's "adjacent, local and
global views". Intensity jitter stands in for seed 000's colour jitter on grayscale / multi-state
data (same factor on all channels, so the ratios between illumination states survive).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RRC_SCALE = (0.5, 1.0)
"""Area fraction of random resized crops. SimCLR uses (0.08, 1); defects can be small and off
centre, so we never keep less than half of the crop (seed 002 gives no range)."""
RRC_RATIO = (3 / 4, 4 / 3)


def dihedral(x: torch.Tensor, mask: torch.Tensor | None = None,
             gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample random element of D4 (rot90 k in 0..3, optional flip)."""
    b = x.shape[0]
    code = torch.randint(0, 8, (b,), generator=gen)
    xo = torch.empty_like(x)
    mo = None if mask is None else torch.empty_like(mask)
    for c in range(8):
        sel = (code == c).nonzero().flatten()
        if len(sel) == 0:
            continue
        k, flip = c % 4, c >= 4
        xs = torch.rot90(x[sel], k, (2, 3))
        xo[sel] = torch.flip(xs, (3,)) if flip else xs
        if mask is not None and mo is not None:
            ms = torch.rot90(mask[sel], k, (1, 2))
            mo[sel] = torch.flip(ms, (2,)) if flip else ms
    return xo, mo


def random_resized_crop(x: torch.Tensor, mask: torch.Tensor | None = None,
                        gen: torch.Generator | None = None,
                        scale: tuple[float, float] = RRC_SCALE,
                        ratio: tuple[float, float] = RRC_RATIO,
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample random crop (area fraction in ``scale``) resized back to the input size."""
    b = x.shape[0]
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=gen)
    logr = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    r = torch.exp(logr)
    sw = torch.sqrt(area * r).clamp(max=1.0)  # fraction of the width kept
    sh = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - sw)
    cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - sh)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sw, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    xo = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mo = None
    if mask is not None:
        mo = F.grid_sample(mask[:, None], grid, mode="nearest", align_corners=False)[:, 0]
    return xo, mo


def intensity_jitter(x: torch.Tensor, gen: torch.Generator | None = None,
                     brightness: float = 0.2, contrast: float = 0.2) -> torch.Tensor:
    """x * c + b per sample, on standardised data (c in 1 +- contrast, b in +- brightness)."""
    b = x.shape[0]
    c = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * contrast
    o = (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * brightness
    return x * c + o


def augment(x: torch.Tensor, mask: torch.Tensor | None = None,
            gen: torch.Generator | None = None, crop: bool = True, jitter: bool = False,
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dihedral transform, then optionally a random resized crop and intensity jitter."""
    x, mask = dihedral(x, mask, gen)
    if crop:
        x, mask = random_resized_crop(x, mask, gen)
    if jitter:
        x = intensity_jitter(x, gen)
    return x, mask
