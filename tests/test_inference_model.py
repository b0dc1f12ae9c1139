"""NestedUNet: paper parameter counts, nesting, materialize equivalence, init, shapes."""

from __future__ import annotations

import math

import pytest
import torch

from inference.model import (
    PAPER_PARAMS_NESTED,
    PAPER_PARAMS_UNNESTED,
    NestedUNet,
    PoolConv2d,
    UNetConfig,
    count_parameters,
    parameter_report,
)


def test_paper_numbers_are_the_defaults() -> None:
    c = UNetConfig()
    assert c.encoder_features == (96, 128, 196, 256, 512, 768)
    assert c.encoder_convs == (2, 2, 3, 3, 4, 5)
    assert c.decoder_features == (192, 96, 48, 24, 8)
    assert c.decoder_convs == 2 and c.output_scales == 3 and c.in_channels == 24
    assert c.nested and c.own_weight_convs == 2 and c.output_activation == "tanh"


def test_parameter_counts_vs_paper() -> None:
    nested = count_parameters(UNetConfig(nested=True))
    flat = count_parameters(UNetConfig(nested=False))
    assert nested.parts["encoder pool (shared)"] == 768 * 768 * 9
    assert flat.parts["encoder pool (shared)"] == 0
    # what nesting saves matches the paper's 44.4 M - 13.9 M = 30.5 M to within rounding
    saving = flat.total - nested.total
    assert abs(saving - (PAPER_PARAMS_UNNESTED - PAPER_PARAMS_NESTED)) < 0.1e6
    # the remaining gap (~4.6 M, see parameter_report) is the same for both models
    gap_n, gap_f = PAPER_PARAMS_NESTED - nested.total, PAPER_PARAMS_UNNESTED - flat.total
    assert abs(gap_n - gap_f) < 0.1e6 and 4.0e6 < gap_n < 5.0e6
    report = parameter_report((1.0, 0.25))
    assert "13.90 M" in report and "44.40 M" in report and "width 0.25" in report


def test_nesting_shares_one_pool() -> None:
    m = NestedUNet(UNetConfig(width=0.125))
    pool_convs = [mod for mod in m.modules() if isinstance(mod, PoolConv2d)]
    assert len(pool_convs) == sum(UNetConfig().encoder_convs) - 2
    first_two = [m.encoder.levels[0].convs[0], m.encoder.levels[0].convs[1]]
    assert all(isinstance(c, torch.nn.Conv2d) for c in first_two)
    assert "encoder.pool" in m.state_dict()
    assert not any(k.endswith(".pool") and k != "encoder.pool" for k in m.state_dict())
    # gradient of every sliced conv lands in the one pool
    x = torch.rand(1, 24, 64, 64)
    sum(o.sum() for o in m(x)).backward()
    assert m.encoder.pool.grad is not None and m.encoder.pool.grad.abs().sum() > 0


def test_unnested_has_no_pool() -> None:
    m = NestedUNet(UNetConfig(width=0.125, nested=False))
    assert m.encoder.pool is None and not m.is_nested
    assert not any(isinstance(mod, PoolConv2d) for mod in m.modules())


def test_materialize_gives_identical_outputs() -> None:
    torch.manual_seed(0)
    m = NestedUNet(UNetConfig(width=0.125)).eval()
    x = torch.rand(2, 24, 64, 96)
    with torch.no_grad():
        before = [o.clone() for o in m(x)]
        m.materialize()
        after = m(x)
    assert not m.is_nested and m.encoder.pool is None
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # the materialised state dict loads into a plain nested=False model
    flat = NestedUNet(UNetConfig(width=0.125, nested=False)).eval()
    flat.load_state_dict(m.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(flat(x)[0], before[0], rtol=0, atol=1e-6)


def test_output_scales_and_range() -> None:
    m = NestedUNet(UNetConfig(width=0.125)).eval()
    with torch.no_grad():
        outs = m(torch.rand(1, 24, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 1, 64, 64), (1, 1, 32, 32), (1, 1, 16, 16)]
    assert all(o.abs().max() <= 1 for o in outs)
    with pytest.raises(ValueError, match="multiple of 32"):
        m(torch.rand(1, 24, 48, 64))


def test_xavier_uniform_init() -> None:
    m = NestedUNet(UNetConfig(width=0.25))
    w = m.encoder.levels[0].convs[1].weight  # 24 -> 24 at width 0.25, 3x3
    fan = w.shape[1] * 9 + w.shape[0] * 9
    bound = math.sqrt(6.0 / fan)
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert torch.all(m.encoder.levels[0].convs[1].bias == 0)


def test_width_multiplier() -> None:
    c = UNetConfig(width=0.25)
    assert c.enc == (24, 32, 49, 64, 128, 192) and c.dec == (48, 24, 12, 6, 4)
    assert count_parameters(c).total < count_parameters(UNetConfig(width=0.5)).total
