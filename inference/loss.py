"""Losses (seed paper 004, section 5.4).

"Auto-encoder L2": the network reconstructs the target T = +1 on scratch pixels and
T = -max_i I_i elsewhere (per-pixel maximum over the 6 states of the normalised RAW). Every
bright non-scratch object (dust, stain, fibre) must be reproduced with an inverted sign, which
keeps the gradient alive on the ~99.95 % of pixels that are not scratch and pushes dust and
scratches apart. False positives (y > T) are weighted by alpha = 0.7, false negatives by 0.3:

    L = alpha * mean(max(0, y - T)^2) + (1 - alpha) * mean(max(0, T - y)^2),

summed over the 3 output scales. (The seed text prints the two cases of T the other way round;
the paper's prose gives this reading.)

Binary cross-entropy on sigmoid outputs is the paper's model 3 alternative.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PAPER_ALPHA = 0.7


def _resize_to(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Max-pool a (N, 1, H, W) map to `size` (an integer factor): thin scratches survive."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    f = t.shape[-1] // size[-1]
    if f * size[-1] != t.shape[-1] or f * size[-2] != t.shape[-2]:
        raise ValueError(f"cannot pool {tuple(t.shape[-2:])} to {tuple(size)} by an integer")
    return F.max_pool2d(t, f)


def _as_map(t: torch.Tensor) -> torch.Tensor:
    t = t.to(torch.float32)
    return t.unsqueeze(1) if t.ndim == 3 else t


def autoencoder_target(max_intensity: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """T = +1 where scratch, else -max_i I_i; both inputs (N, 1, H, W) or (N, H, W)."""
    scratch, max_intensity = _as_map(scratch), _as_map(max_intensity)
    return torch.where(scratch > 0.5, torch.ones_like(max_intensity), -max_intensity)


def asymmetric_l2(y: torch.Tensor, target: torch.Tensor, alpha: float = PAPER_ALPHA
                  ) -> torch.Tensor:
    """alpha * mean(relu(y - T)^2) + (1 - alpha) * mean(relu(T - y)^2) (paper eq. 3)."""
    fp = F.relu(y - target).square().mean()
    fn = F.relu(target - y).square().mean()
    return alpha * fp + (1.0 - alpha) * fn


def autoencoder_l2_loss(outputs: Sequence[torch.Tensor], max_intensity: torch.Tensor,
                        scratch: torch.Tensor, alpha: float = PAPER_ALPHA) -> torch.Tensor:
    """Sum over scales of `asymmetric_l2` (paper eq. 4).

    outputs: tanh maps finest first, (N, 1, h_s, w_s). max_intensity and scratch are given at the
    finest output's resolution and max-pooled to each coarser scale, then T is formed per scale
    (a pooled scratch pixel stays +1, so coarse scales keep the scratch).
    """
    mx, sc = _as_map(max_intensity), _as_map(scratch)
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for y in outputs:
        size = tuple(y.shape[-2:])
        t = autoencoder_target(_resize_to(mx, size), _resize_to(sc, size))
        total = total + asymmetric_l2(y.to(torch.float32), t, alpha)
    return total


def bce_loss(logits: Sequence[torch.Tensor], scratch: torch.Tensor,
             pos_weight: float | None = None) -> torch.Tensor:
    """Binary cross-entropy on pre-activation outputs (`model(x, logits=True)`), summed over
    scales; for a model built with output_activation="sigmoid" (paper model 3)."""
    sc = _as_map(scratch)
    pw = None if pos_weight is None else torch.tensor(pos_weight, device=sc.device)
    total = logits[0].new_zeros((), dtype=torch.float32)
    for z in logits:
        t = _resize_to(sc, tuple(z.shape[-2:]))
        total = total + F.binary_cross_entropy_with_logits(z.to(torch.float32), t, pos_weight=pw)
    return total


def plain_l2_loss(outputs: Sequence[torch.Tensor], scratch: torch.Tensor) -> torch.Tensor:
    """Conventional L2 to the scratch mask (the paper's baseline that finds the trivial
    all-background solution); kept for the comparison of Fig. 10."""
    sc = _as_map(scratch)
    return sum((y.to(torch.float32) - _resize_to(sc, tuple(y.shape[-2:]))).square().mean()
               for y in outputs)
