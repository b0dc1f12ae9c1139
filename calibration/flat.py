"""Flat field per illumination state from frames of a uniform reference diffuser.

For state k a reference frame is black + G_k(x, y) x CFA x level, where G_k holds the
illumination gradient of the facet pair, the vignetting and the facet balance. The flat field
is G_k per Bayer phase, normalised so each phase's mean over all states is 1, and the
correction is

    corrected = black + (raw - dark) / G_k

which keeps RAW DN (same black level, same colour balance, same mean level), so the detector's
input scaling is unchanged; only the spatial and state-to-state non-uniformity go.

The gain map is measured as block means (FLAT_BLOCK_PX sensor px, i.e. 8 x 8 pixels of each
Bayer plane) of the dark-subtracted mean reference and stored as that grid; the full map is its
piecewise-linear interpolation (`FlatField.gain`). The block mean averages shot noise of
8 x 8 x N pixels, so the flat adds no visible noise to corrected images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from calibration.store import DarkFrame, FlatField, now_iso

DEFAULT_FLAT_FRAMES = 8
FLAT_BLOCK_PX = 16
"""Block of the stored gain grid, in sensor px (8 x 8 pixels of each Bayer plane)."""
UNIFORMITY_BLOCK_PX = 32
"""Block over which (non-)uniformity is judged: averages pixel noise, keeps shading."""


def bayer_planes(img: np.ndarray) -> list[np.ndarray]:
    """The 4 Bayer planes (phase 2 * row parity + col parity): GRBG -> G, R, B, G."""
    return [img[i::2, j::2] for i in (0, 1) for j in (0, 1)]


def _block_edges(n: int, block: int) -> np.ndarray:
    """Start indices of blocks of `block` along n; a short last block joins its neighbour."""
    starts = np.arange(0, n, block)
    if len(starts) > 1 and n - starts[-1] < block // 2:
        starts = starts[:-1]
    return starts


def block_means(plane: np.ndarray, block: int, valid: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means of `plane` over blocks (ignoring pixels where valid is False), with the blocks'
    centre rows and columns (in plane pixels)."""
    h, w = plane.shape
    rs, cs = _block_edges(h, block), _block_edges(w, block)
    x = np.asarray(plane, dtype=np.float64)
    v = np.ones_like(x) if valid is None else valid.astype(np.float64)
    sums = np.add.reduceat(np.add.reduceat(x * v, rs, axis=0), cs, axis=1)
    counts = np.add.reduceat(np.add.reduceat(v, rs, axis=0), cs, axis=1)
    means = sums / np.maximum(counts, 1.0)
    r_end = np.append(rs[1:], h)
    c_end = np.append(cs[1:], w)
    return means, (rs + r_end - 1) / 2.0, (cs + c_end - 1) / 2.0


def _valid_mask(shape: tuple[int, int], hot: np.ndarray | None) -> np.ndarray | None:
    if hot is None or not len(hot):
        return None
    valid = np.ones(shape, bool)
    valid.reshape(-1)[hot] = False
    return valid


def measure_flat(reference: Iterable[np.ndarray], dark: DarkFrame,
                 facet_levels: Sequence[int], exposure_us: float, n_frames: int,
                 block_px: int = FLAT_BLOCK_PX) -> FlatField:
    """FlatField from the mean reference frame of each state in order ((H, W) float, already
    averaged over `n_frames`; an iterable, so the states need not all be in memory) and the
    dark frame at the same exposure."""
    h, w = dark.shape
    valid = _valid_mask((h, w), dark.hot_pixels)
    vplanes = bayer_planes(valid) if valid is not None else [None] * 4
    grids, raw_nu = [], []
    rows = cols = None
    for k, r in enumerate(reference):
        r = np.asarray(r, dtype=np.float32)
        if r.shape != (h, w):
            raise ValueError(f"reference frame {r.shape} does not match the dark frame {(h, w)}")
        signal = r - dark.mean
        if float(np.median(signal)) <= 0:
            raise ValueError(f"state {k}: the reference frame is not brighter than the dark "
                             "frame: is the diffuser in place and are the lights on?")
        per_phase = []
        for plane, vp in zip(bayer_planes(signal), vplanes, strict=True):
            m, rows, cols = block_means(plane, block_px // 2, vp)
            per_phase.append(m)
        grids.append(per_phase)
        raw_nu.append(nonuniformity(signal, dark.hot_pixels))
    if not grids or rows is None or cols is None:
        raise ValueError("no reference frames")
    grid = np.asarray(grids, dtype=np.float64)  # (S, 4, ny, nx)
    norm = grid.mean(axis=(0, 2, 3), keepdims=True)  # per phase, over all states
    gain = (grid / norm).astype(np.float32)
    stats: dict[str, object] = {
        "state_mean_dn": [round(float(s.mean()), 2) for s in grid.mean(axis=1)],
        "raw_nonuniformity_p2p": [round(v["p2p"], 5) for v in raw_nu],
        "raw_nonuniformity_rms": [round(v["rms"], 5) for v in raw_nu],
        "gain_min": round(float(gain.min()), 4), "gain_max": round(float(gain.max()), 4),
    }
    method = (f"mean of {n_frames} frames of the reference diffuser per state minus dark; "
              f"block means of {block_px // 2}x{block_px // 2} px per Bayer plane, normalised "
              "per phase over all states; piecewise-linear interpolation")
    return FlatField(gain, np.asarray(rows, np.float64), np.asarray(cols, np.float64), (h, w),
                     float(exposure_us), tuple(int(v) for v in facet_levels), int(n_frames),
                     now_iso(), method, stats)


def nonuniformity(signal: np.ndarray, hot: np.ndarray | None = None,
                  block_px: int = UNIFORMITY_BLOCK_PX) -> dict[str, float]:
    """Spatial non-uniformity of a dark-subtracted image of a uniform target.

    Per Bayer plane: means of `block_px` x `block_px` blocks (pixel noise averaged away);
    `p2p` = (max - min) / mean and `rms` = std / mean of the block means; the worst plane.
    """
    sig = np.asarray(signal, dtype=np.float32)
    valid = _valid_mask(sig.shape, hot)
    vplanes = bayer_planes(valid) if valid is not None else [None] * 4
    p2p = rms = 0.0
    for plane, vp in zip(bayer_planes(sig), vplanes, strict=True):
        m, _, _ = block_means(plane, max(block_px // 2, 1), vp)
        mu = float(m.mean())
        if mu <= 0:
            return {"p2p": float("nan"), "rms": float("nan")}
        p2p = max(p2p, float((m.max() - m.min()) / mu))
        rms = max(rms, float(m.std() / mu))
    return {"p2p": p2p, "rms": rms}
