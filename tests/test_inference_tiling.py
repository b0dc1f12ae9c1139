"""Tiled inference: layout, seamless stitching, any frame size, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.model import NestedUNet, UNetConfig
from inference.preprocess import prepare_input
from inference.tiling import TilingParams, plan_tiles, predict_tiled, tile_starts


def _shallow_net() -> torch.nn.Module:
    """Receptive field 7 map px: far below the 32 px kept margin, so tiling must be exact."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(24, 8, 3, padding=1), torch.nn.ELU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ELU(),
        torch.nn.Conv2d(8, 1, 3, padding=1), torch.nn.Tanh()).eval()


def test_full_roi_layout() -> None:
    lay = plan_tiles(3120, 3504)
    assert lay.tile_hw == (1024, 1024) and lay.padded == (3120, 3504)
    assert lay.rows == [0, 698, 1398, 2096] and lay.cols == [0, 620, 1240, 1860, 2480]
    for starts in (lay.rows, lay.cols):
        assert all(s % 2 == 0 for s in starts)  # Bayer phase kept
        assert all(b - a <= 1024 - 256 for a, b in zip(starts, starts[1:], strict=False))
    assert lay.n_tiles == 20


@pytest.mark.parametrize("length", [1024, 1026, 1790, 1792, 2000, 5000])
def test_tile_starts_cover_with_min_overlap(length: int) -> None:
    s = tile_starts(length, 1024, 256)
    assert s[0] == 0 and s[-1] + 1024 == length or length <= 1024
    assert all(b - a <= 768 for a, b in zip(s, s[1:], strict=False))


@pytest.mark.parametrize("stitch", ["crop", "blend"])
@pytest.mark.parametrize("hw", [(700, 900), (333, 555), (1030, 640), (640, 256)])
def test_tiled_equals_whole_frame(stitch: str, hw: tuple[int, int]) -> None:
    h, w = hw
    net = _shallow_net()
    stack = np.random.default_rng(h + w).integers(64, 4096, (6, h, w)).astype(np.uint16)
    params = TilingParams(tile=256, overlap=64, batch_size=3, stitch=stitch)
    y = predict_tiled(net, stack, params)
    assert y.shape == (-(-h // 2), -(-w // 2))
    whole = np.pad(stack, ((0, 0), (0, h % 2), (0, w % 2)), mode="reflect")
    with torch.no_grad():
        ref = net(prepare_input(whole))[0, 0].numpy()
    np.testing.assert_allclose(y, ref[: y.shape[0], : y.shape[1]], atol=1e-5)


def test_small_frame_uses_small_tile_and_unet_runs() -> None:
    model = NestedUNet(UNetConfig(width=0.125)).eval()
    stack = np.full((6, 130, 70), 64, np.uint16)
    assert plan_tiles(130, 70).tile_hw == (192, 128)
    y = predict_tiled(model, stack)
    assert y.shape == (65, 35) and np.isfinite(y).all()


def test_batch_size_does_not_change_result() -> None:
    model = NestedUNet(UNetConfig(width=0.125)).eval()
    stack = np.random.default_rng(0).integers(64, 600, (6, 384, 448)).astype(np.uint16)
    a = predict_tiled(model, stack, TilingParams(tile=256, overlap=64, batch_size=1))
    b = predict_tiled(model, stack, TilingParams(tile=256, overlap=64, batch_size=8))
    np.testing.assert_allclose(a, b, atol=1e-5)
    c = predict_tiled(model, stack, TilingParams(tile=256, overlap=64, batch_size=4),
                      fixed_batch=True, channels_last=True)  # 9 tiles: last batch padded
    np.testing.assert_allclose(a, c, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_channels_last_matches_cpu() -> None:
    torch.manual_seed(0)
    model = NestedUNet(UNetConfig(width=0.25)).eval().materialize()
    stack = np.random.default_rng(0).integers(64, 2000, (6, 1100, 1300)).astype(np.uint16)
    ref = predict_tiled(model, stack)
    gpu = model.to("cuda").to(memory_format=torch.channels_last)
    y = predict_tiled(gpu, stack, device="cuda", amp_dtype=torch.bfloat16, channels_last=True)
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() < 0.05


def test_unet_seam_is_small() -> None:
    """With the real network (receptive field > tile) crop-stitching stays close to a
    whole-frame pass: the kept pixels have >= overlap / 2 of context on every side."""
    torch.manual_seed(1)
    model = NestedUNet(UNetConfig(width=0.125)).eval()
    stack = np.random.default_rng(1).integers(64, 400, (6, 512, 512)).astype(np.uint16)
    y = predict_tiled(model, stack, TilingParams(tile=384, overlap=128))
    with torch.no_grad():
        ref = model(prepare_input(stack))[0][0, 0].numpy()
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max() + 0.005


def test_bad_params_rejected() -> None:
    with pytest.raises(ValueError):
        TilingParams(tile=1000)
    with pytest.raises(ValueError):
        TilingParams(overlap=1024)
