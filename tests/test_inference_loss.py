"""Auto-encoder L2 loss (alpha = 0.7, 3 scales) and the BCE alternative."""

from __future__ import annotations

import pytest
import torch

from inference.loss import (
    PAPER_ALPHA,
    asymmetric_l2,
    autoencoder_l2_loss,
    autoencoder_target,
    bce_loss,
)


def _maps() -> tuple[torch.Tensor, torch.Tensor]:
    mx = torch.zeros(1, 1, 8, 8)
    mx[0, 0, 1, 1] = 0.9  # a dust grain
    mx[0, 0, 5, 2:6] = 0.4  # a scratch (also bright)
    sc = torch.zeros(1, 1, 8, 8)
    sc[0, 0, 5, 2:6] = 1
    return mx, sc


def test_target_plus_one_on_scratch_minus_max_elsewhere() -> None:
    mx, sc = _maps()
    t = autoencoder_target(mx, sc)
    assert torch.all(t[0, 0, 5, 2:6] == 1)
    assert t[0, 0, 1, 1] == pytest.approx(-0.9)
    assert torch.all(t[0, 0, 7] == 0)


def test_alpha_weights_false_positives_more() -> None:
    t = torch.zeros(10)
    assert PAPER_ALPHA == 0.7
    over = asymmetric_l2(t + 0.5, t)  # predicted too high: false positive side
    under = asymmetric_l2(t - 0.5, t)
    assert over == pytest.approx(0.7 * 0.25) and under == pytest.approx(0.3 * 0.25)


def test_perfect_reconstruction_has_zero_loss_at_every_scale() -> None:
    mx, sc = _maps()
    outs = []
    for f in (1, 2, 4):
        m = torch.nn.functional.max_pool2d(mx, f)
        s = torch.nn.functional.max_pool2d(sc, f)
        outs.append(autoencoder_target(m, s))
    assert autoencoder_l2_loss(outs, mx, sc).item() == pytest.approx(0.0)
    # a model that outputs the trivial all-zero map is penalised (unlike plain L2 to the mask)
    zeros = [torch.zeros_like(o) for o in outs]
    assert autoencoder_l2_loss(zeros, mx, sc).item() > 0.01


def test_sum_over_three_scales() -> None:
    mx, sc = _maps()
    y = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    total = autoencoder_l2_loss(y, mx, sc)
    single = sum(autoencoder_l2_loss([o], torch.nn.functional.max_pool2d(mx, 8 // o.shape[-1]),
                                     torch.nn.functional.max_pool2d(sc, 8 // o.shape[-1]))
                 for o in y)
    assert total.item() == pytest.approx(single.item())


def test_gradient_flows() -> None:
    mx, sc = _maps()
    y = torch.zeros(1, 1, 8, 8, requires_grad=True)
    autoencoder_l2_loss([torch.tanh(y)], mx, sc).backward()
    assert y.grad[0, 0, 5, 3] < 0  # push the scratch up
    assert y.grad[0, 0, 1, 1] > 0  # push the dust down (inverted reconstruction)


def test_bce_alternative() -> None:
    _, sc = _maps()
    good = [(sc * 2 - 1) * 10]  # confident and right
    bad = [-(sc * 2 - 1) * 10]
    assert bce_loss(good, sc) < 1e-3 < bce_loss(bad, sc)
