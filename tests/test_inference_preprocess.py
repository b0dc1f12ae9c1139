"""Input pipeline: scaling, space-to-depth layout, truth pooling, Bayer-preserving augmentation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from inference.preprocess import (
    RawScaling,
    bayer_transform,
    colour_codes,
    max_over_states,
    normalize_raw,
    pattern_of,
    pool_truth,
    prepare_input,
    space_to_depth,
)

DIHEDRAL = list(itertools.product([False, True], [False, True], range(4)))


def _mosaic(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A GRBG RAW whose value tells its colour: G ~ 1000, R ~ 2000, B ~ 3000 (+ texture < 100)."""
    base = np.choose(colour_codes(h, w), [2000, 1000, 3000]).astype(np.uint16)
    return base + np.random.default_rng(seed).integers(0, 100, (h, w)).astype(np.uint16)


def _colour_of_values(raw: np.ndarray) -> np.ndarray:
    return np.choose(raw // 1000 - 1, [1, 0, 2])  # 1000s -> G(1), 2000s -> R(0), 3000s -> B(2)


def test_normalize_black_level_and_clip() -> None:
    raw = np.array([[0, 64, 64 + 4031 // 2, 4095]], np.uint16)
    x = normalize_raw(raw)
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), [[0.0, 0.0, 2015 / 4031, 1.0]], atol=1e-6)
    assert RawScaling().gain == pytest.approx(1 / 4031)


def test_space_to_depth_layout_grbg() -> None:
    raw = np.stack([_mosaic(8, 12, k) + 0 * k for k in range(6)])
    x = space_to_depth(normalize_raw(raw).unsqueeze(0))
    assert x.shape == (1, 24, 4, 6)
    # channel 4k + 2i + j = state k at Bayer offset (i, j): G, R, B, G
    raw_t = normalize_raw(raw)
    for k in range(6):
        for i in (0, 1):
            for j in (0, 1):
                torch.testing.assert_close(x[0, 4 * k + 2 * i + j], raw_t[k, i::2, j::2])
    assert prepare_input(raw).shape == (1, 24, 4, 6)


def test_truth_pooled_keeps_one_pixel_scratch() -> None:
    m = np.zeros((8, 8), np.uint8)
    m[3, :] = 1  # a 1-px line on an odd row
    p = pool_truth(m)
    assert p.shape == (4, 4) and p[1].tolist() == [1, 1, 1, 1] and p.sum() == 4
    mx = max_over_states(torch.rand(2, 6, 8, 8))
    assert mx.shape == (2, 1, 4, 4)


@pytest.mark.parametrize("hflip,vflip,k", DIHEDRAL)
def test_augmented_raw_keeps_grbg_phase(hflip: bool, vflip: bool, k: int) -> None:
    h, w = 10, 14
    raw = np.stack([_mosaic(h, w, s) for s in range(6)])
    mask = np.zeros((h, w), np.uint8)
    mask[4, 6] = 1
    out, m2 = bayer_transform(raw, mask, hflip=hflip, vflip=vflip, k_rot90=k)
    assert out.shape[-2:] == ((h, w) if k % 2 == 0 else (w, h))
    # every pixel still has the colour GRBG prescribes at its position
    np.testing.assert_array_equal(_colour_of_values(out[0]), colour_codes(*out.shape[-2:]))
    assert pattern_of(_colour_of_values(out[3])) == "GRBG"
    # geometry: the mask moved with the RAW (same transform + shift), one pixel marked
    assert m2.sum() == 1


def test_plain_flips_would_break_phase() -> None:
    """Why the re-alignment exists: plain flips/rotations of GRBG give the other 3 patterns."""
    codes = colour_codes(10, 14)
    seen = set()
    for hflip, vflip, k in DIHEDRAL:
        a = codes[:, ::-1] if hflip else codes
        a = a[::-1] if vflip else a
        seen.add(pattern_of(np.rot90(a, k)))
    assert seen == {"GRBG", "RGGB", "GBRG", "BGGR"}


def test_texture_follows_transform() -> None:
    """Apart from the re-alignment shift of at most one pixel, content moves like np.rot90."""
    raw = _mosaic(12, 12, 3)[None]
    out, = bayer_transform(raw, k_rot90=1)
    ref = np.rot90(raw[0], 1)
    ok = [np.array_equal(out[0][:-1, :-1], ref[dy:dy + 11, dx:dx + 11])
          for dy in (0, 1) for dx in (0, 1)]
    assert any(ok)


def test_odd_size_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        bayer_transform(np.zeros((6, 9, 10), np.uint16))
