"""Input pipeline of the detector (seed paper 004, section 5.3 and 5.6).

RAW stacks (6, H, W) uint16, 12-bit Bayer GRBG -> black level removed, scaled to [0, 1] ->
space-to-depth with q = 2 (`pixel_unshuffle`) -> 24 channels at H/2 x W/2. Ground truth is
max-pooled 2 x 2 to the same grid so a 1-px scratch survives the halving.

Augmentation flips and rotates the RAW *and then re-aligns it* to GRBG (Liu et al. 2019,
"Bayer preserving augmentation"): a plain flip of a GRBG mosaic is an RGGB / GBRG / BGGR mosaic,
so the same space-to-depth channel would hold a different colour and the network would see
colour-swapped scratches that never occur on the station.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

BLACK_LEVEL_DN = 64
"""Camera black level (conventions.md)."""
WHITE_LEVEL_DN = 4095
"""12-bit clipping level."""
SPACE_TO_DEPTH_Q = 2
"""Space-to-depth factor q (paper eq. 1): one 2 x 2 Bayer cell -> 4 channels."""
BAYER_PATTERN = "GRBG"

# Colour of each position of the 2 x 2 cell (row, col) for the station's GRBG mosaic.
_CFA = {"GRBG": ("G", "R", "B", "G"), "RGGB": ("R", "G", "G", "B"),
        "GBRG": ("G", "B", "R", "G"), "BGGR": ("B", "G", "G", "R")}


@dataclass(frozen=True)
class RawScaling:
    """How RAW DN become network input in [0, 1]; stored in the model card."""

    black_level: float = BLACK_LEVEL_DN
    white_level: float = WHITE_LEVEL_DN

    @property
    def gain(self) -> float:
        return 1.0 / (self.white_level - self.black_level)


def normalize_raw(raw: np.ndarray | torch.Tensor, black_level: float = BLACK_LEVEL_DN,
                  white_level: float = WHITE_LEVEL_DN) -> torch.Tensor:
    """(..., H, W) DN -> float32 in [0, 1]: (raw - black) / (white - black), clipped.

    Clipping at 0 removes the negative read noise around the black level, which carries no
    information about defects and would otherwise make -max_i I_i (the loss target) positive.
    """
    x = torch.as_tensor(raw.astype(np.float32) if isinstance(raw, np.ndarray) else raw)
    x = x.to(torch.float32)
    return ((x - black_level) / (white_level - black_level)).clamp_(0.0, 1.0)


def space_to_depth(x: torch.Tensor, q: int = SPACE_TO_DEPTH_Q) -> torch.Tensor:
    """(N, S, H, W) -> (N, S*q*q, H/q, W/q) with `F.pixel_unshuffle`.

    Channel 4*k + 2*i + j holds state k at Bayer offset (row i, col j): for GRBG that is
    G, R, B, G of state k (paper eq. 1 with a different but fixed channel order).
    """
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.shape[-1] % q or x.shape[-2] % q:
        raise ValueError(f"space_to_depth needs H and W divisible by q={q}, got {tuple(x.shape)}")
    return F.pixel_unshuffle(x, q)


def depth_to_space(x: torch.Tensor, q: int = SPACE_TO_DEPTH_Q) -> torch.Tensor:
    """Inverse of `space_to_depth`."""
    return F.pixel_shuffle(x, q)


def pool_truth(mask: np.ndarray | torch.Tensor, q: int = SPACE_TO_DEPTH_Q) -> torch.Tensor:
    """Scratch mask (..., H, W) -> float (..., H/q, W/q) by q x q max pooling (paper 5.3)."""
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32) if isinstance(mask, np.ndarray)
                        else mask).to(torch.float32)
    shape = m.shape
    m = m.reshape(-1, 1, shape[-2], shape[-1])
    return F.max_pool2d(m, q).reshape(*shape[:-2], shape[-2] // q, shape[-1] // q)


def max_over_states(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel maximum over the 6 illumination states of a normalised RAW (N, 6, H, W),
    pooled q x q like the truth: the `max_i I_i` of the auto-encoder target (paper eq. 2)."""
    return F.max_pool2d(x.amax(dim=1, keepdim=True), SPACE_TO_DEPTH_Q)


def prepare_input(stack: np.ndarray | torch.Tensor, scaling: RawScaling = RawScaling()
                  ) -> torch.Tensor:
    """(6, H, W) or (N, 6, H, W) RAW DN -> (N, 24, H/2, W/2) network input."""
    x = normalize_raw(stack, scaling.black_level, scaling.white_level)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    return space_to_depth(x)


# --------------------------------------------------------------------------------------------
# Bayer-preserving augmentation
# --------------------------------------------------------------------------------------------

def pattern_of(codes: np.ndarray) -> str:
    """Name ("GRBG", ...) of the CFA pattern of a colour-code image (see `colour_codes`)."""
    letters = {0: "R", 1: "G", 2: "B"}
    return "".join(letters[int(codes[..., i, j].flat[0])] for i in (0, 1) for j in (0, 1))


def colour_codes(h: int, w: int, pattern: str = BAYER_PATTERN) -> np.ndarray:
    """(h, w) int8 image of colour codes (R=0, G=1, B=2) of a mosaic with `pattern`."""
    code = {"R": 0, "G": 1, "B": 2}
    cell = np.array([[code[c] for c in _CFA[pattern][:2]], [code[c] for c in _CFA[pattern][2:]]],
                    dtype=np.int8)
    return np.tile(cell, ((h + 1) // 2, (w + 1) // 2))[:h, :w]


def _dihedral(a: np.ndarray, hflip: bool, vflip: bool, k_rot90: int) -> np.ndarray:
    if hflip:
        a = a[..., :, ::-1]
    if vflip:
        a = a[..., ::-1, :]
    if k_rot90 % 4:
        a = np.rot90(a, k_rot90 % 4, axes=(-2, -1))
    return a


def _shift_reflect(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Drop the first dy rows / dx cols and reflect-pad as many at the far end.

    'reflect' padding (x[n] = x[n-2]) keeps the Bayer period of 2, so the padded row/col has
    the right colour; only that single border line is synthetic.
    """
    if not dy and not dx:
        return np.ascontiguousarray(a)
    a = a[..., dy:, dx:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, dy), (0, dx)]
    return np.pad(a, pad, mode="reflect")


def bayer_transform(raw: np.ndarray, *others: np.ndarray, hflip: bool = False,
                    vflip: bool = False, k_rot90: int = 0, pattern: str = BAYER_PATTERN
                    ) -> tuple[np.ndarray, ...]:
    """Flip / rotate a RAW mosaic (..., H, W) and re-align it to `pattern` (Liu et al. 2019).

    H and W must be even. `others` (truth masks, (..., H, W)) get exactly the same geometric
    transform and shift, so labels stay registered with the RAW to the pixel. Returns
    (raw, *others), each with the input's spatial shape when k_rot90 is even, else (W, H).
    """
    h, w = raw.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"bayer_transform needs even H and W, got {h} x {w}")
    codes = _dihedral(colour_codes(h, w, pattern), hflip, vflip, k_rot90)
    want = colour_codes(2, 2, pattern)
    for dy in (0, 1):
        for dx in (0, 1):
            if np.array_equal(codes[dy:dy + 2, dx:dx + 2], want):
                break
        else:
            continue
        break
    else:  # pragma: no cover - every dihedral transform of a Bayer mosaic is a shifted Bayer
        raise AssertionError("no shift re-aligns the mosaic")
    out = [_shift_reflect(_dihedral(a, hflip, vflip, k_rot90), dy, dx) for a in (raw, *others)]
    return tuple(out)


def random_bayer_augment(rng: np.random.Generator, raw: np.ndarray, *others: np.ndarray,
                         pattern: str = BAYER_PATTERN) -> tuple[np.ndarray, ...]:
    """One of the 8 flips/rotations, chosen by `rng`, Bayer phase preserved."""
    return bayer_transform(raw, *others, hflip=bool(rng.integers(2)), vflip=bool(rng.integers(2)),
                           k_rot90=int(rng.integers(4)), pattern=pattern)


def add_noise(rng: np.random.Generator, x: np.ndarray, gaussian_sigma: float = 0.01,
              salt_pepper_fraction: float = 1e-4) -> np.ndarray:
    """Gaussian plus salt-and-pepper noise on a normalised stack (paper 5.6); returns float32."""
    y = x.astype(np.float32) + rng.normal(0.0, gaussian_sigma, x.shape).astype(np.float32)
    if salt_pepper_fraction > 0:
        hit = rng.random(x.shape) < salt_pepper_fraction
        y[hit] = rng.integers(0, 2, int(hit.sum())).astype(np.float32)
    return np.clip(y, 0.0, 1.0)
