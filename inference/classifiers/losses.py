"""Loss functions of the seed papers, written once and shared by the methods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def supcon_label_level(feats: torch.Tensor, targets: torch.Tensor, tau: float) -> torch.Tensor:
    """Seed 000 Eq. (2): supervised contrastive loss over *label-level* features.

    ``feats`` (B, C, d) are the category-pooled features X^{ij}, ``targets`` (B, C) in {0, 1}.
    Anchors are the active features A_I; for anchor X^{ij} the positives are the other active
    features of the same category j, the denominator runs over all other active features
    A_D(i, j). dist() is cosine similarity. Anchors without a positive in the batch are skipped
    (Eq. 2 divides by |A_P|, undefined for 0); returns 0 when no anchor has a positive.
    """
    b, c, _ = feats.shape
    act = targets.bool()
    z = F.normalize(feats[act], dim=1)  # (M, d)
    cat = torch.arange(c, device=feats.device).expand(b, c)[act]  # (M,)
    if len(z) < 2:
        return feats.sum() * 0
    sim = z @ z.t() / tau
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (cat[:, None] == cat[None, :]) & ~eye
    npos = pos.sum(1)
    keep = npos > 0
    if not keep.any():
        return feats.sum() * 0
    per_anchor = -(log_prob.masked_fill(~pos, 0).sum(1)[keep]) / npos[keep]
    return per_anchor.mean()


def nt_xent_three_views(z0: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                        tau: float) -> torch.Tensor:
    """Seed 002 Eqs. (1)-(2): contrastive loss between an image and its two augmented views.

    l(a, b) = -log exp(sim(a, b)/tau) / sum_{k != a} exp(sim(a, k)/tau), the sum running over all
    3N embeddings of the batch (originals and both views; Eq. 1 writes 2N because SimCLR has two
    views, the paper adds the original as a third). Eq. (2) averages l(x_n, x_i), l(x_n, x_j),
    l(x_i, x_j); each pair term is taken symmetrically, (l(a, b) + l(b, a)) / 2, as in SimCLR's
    implementation, since Eq. (1) alone is not symmetric and the paper does not say which
    direction it uses.
    """
    n = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1, z2]), dim=1)
    sim = z @ z.t() / tau
    sim = sim.masked_fill(torch.eye(3 * n, dtype=torch.bool, device=z.device), float("-inf"))
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    ar = torch.arange(n, device=z.device)
    total = z.new_zeros(())
    for a, b in ((0, 1), (0, 2), (1, 2)):
        total = total + 0.5 * (-logp[a * n + ar, b * n + ar] - logp[b * n + ar, a * n + ar]).mean()
    return total / 3


def arcface_logits(emb: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor | None,
                   s: float, m: float) -> torch.Tensor:
    """Seed 002 Eq. (4) (ArcFace): s * cos(theta_y + m) for the true class, s * cos(theta_j) else.

    The usual ArcFace guard is applied where theta_y + m would pass pi (cos is not monotonic
    there): the target logit becomes cos(theta) - m * sin(m) instead, as in the reference code.
    With ``labels=None`` plain scaled cosines are returned (inference).
    """
    cos = F.normalize(emb, dim=1) @ F.normalize(weight, dim=1).t()
    if labels is None:
        return s * cos
    cos = cos.clamp(-1 + 1e-7, 1 - 1e-7)
    sin = torch.sqrt(1 - cos * cos)
    phi = cos * math.cos(m) - sin * math.sin(m)
    phi = torch.where(cos > math.cos(math.pi - m), phi, cos - math.sin(math.pi - m) * m)
    onehot = F.one_hot(labels, cos.shape[1]).bool()
    return s * torch.where(onehot, phi, cos)


def contrastive_pair_loss(f1: torch.Tensor, f2: torch.Tensor, same: torch.Tensor,
                          margin: float) -> torch.Tensor:
    """Seed 001 Eq. (4) (Hadsell et al.): (1/2N) sum Y D^2 + (1 - Y) max(m - D, 0)^2.

    ``same`` is the pair label Y in {1 (same class), 0 (different)}: Eq. (2) of the paper writes
    -1 for "different" but Eq. (4) only makes sense with 0, so 0 is used.
    """
    d = torch.linalg.vector_norm(f1 - f2, dim=1)
    y = same.float()
    return 0.5 * (y * d.pow(2) + (1 - y) * torch.clamp(margin - d, min=0).pow(2)).mean()


def weighted_bce_pixels(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Seed 003 Eq. (2): class-balanced pixel cross-entropy, alpha = |X-| / |X| per image.

    Positive (defect) pixels are weighted by alpha, negative ones by 1 - alpha = |X+| / |X|.
    The paper sums over pixels; we divide by |X| (a constant factor) so the loss does not scale
    with the crop size. An image with no defect pixels gets alpha = 1, i.e. its negatives get
    weight 0 under the literal formula; we floor both weights at 0.05 so defect-free crops
    still teach "no defect" (the paper's images all have at least some background pixels and
    the case is not discussed for all-background images).
    """
    b = target.shape[0]
    t = target.reshape(b, -1)
    lg = logits.reshape(b, -1)
    pos_frac = t.mean(1, keepdim=True)
    alpha = (1 - pos_frac).clamp(min=0.05)
    w = torch.where(t > 0.5, alpha, pos_frac.clamp(min=0.05))
    return F.binary_cross_entropy_with_logits(lg, t, weight=w, reduction="mean")
