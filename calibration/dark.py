"""Dark frames: every facet off, N frames averaged, hot pixels found.

The mean dark holds the black level, any fixed-pattern offset and the dark signal of hot
pixels at that exposure; subtracting it (instead of a constant 64 DN) removes all three. Hot
pixels are those whose mean dark stands above the local dark level (median of the 5 x 5
neighbourhood, so a slow offset gradient or amplifier glow does not count) by more than
`max(HOT_PIXEL_MIN_DN, HOT_PIXEL_SIGMA x the robust temporal noise of the mean)`. Their value
in an image carries no light information, so correction replaces them from their same-colour
neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.ndimage as ndi

from calibration.store import DarkFrame, now_iso

DEFAULT_DARK_FRAMES = 16
"""Frames averaged: read noise 2.5 DN -> 0.6 DN in the mean (adds 6 % to the noise variance)."""
HOT_PIXEL_SIGMA = 8.0
HOT_PIXEL_MIN_DN = 20.0
"""A hot pixel adds at least this much to the mean dark (the sim's weakest add 150 DN)."""
LOCAL_BACKGROUND_PX = 5


def mean_frame(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean float32, temporal variance float32, count) of uint16 frames, streamed (float64
    sums) so N full frames never sit in memory together."""
    s = s2 = None
    n = 0
    for f in frames:
        x = np.asarray(f, dtype=np.float64)
        if s is None:
            s, s2 = x.copy(), x * x
        else:
            if x.shape != s.shape:
                raise ValueError(f"frame {n} has shape {x.shape}, expected {s.shape}")
            s += x
            s2 += x * x
        n += 1
    if s is None or s2 is None:
        raise ValueError("no frames")
    mean = s / n
    var = np.maximum(s2 / n - mean * mean, 0.0) * (n / max(n - 1, 1))
    return mean.astype(np.float32), var.astype(np.float32), n


def find_hot_pixels(mean: np.ndarray, read_noise_dn: float, n_frames: int,
                    sigma: float = HOT_PIXEL_SIGMA, min_dn: float = HOT_PIXEL_MIN_DN
                    ) -> tuple[np.ndarray, float]:
    """Flat indices of hot pixels in a mean dark, and the threshold (DN above local) used."""
    local = ndi.median_filter(mean, size=LOCAL_BACKGROUND_PX, mode="nearest")
    excess = mean - local
    threshold = max(min_dn, sigma * read_noise_dn / np.sqrt(max(n_frames, 1)))
    return np.flatnonzero(excess > threshold).astype(np.int64), float(threshold)


def measure_dark(frames: Iterable[np.ndarray], exposure_us: float,
                 sigma: float = HOT_PIXEL_SIGMA, min_dn: float = HOT_PIXEL_MIN_DN) -> DarkFrame:
    """A DarkFrame from frames taken with every facet off at `exposure_us`."""
    mean, var, n = mean_frame(frames)
    # temporal noise of one frame: median over pixels is robust to hot pixels and defects
    read_noise = float(np.sqrt(np.median(var))) if n > 1 else float("nan")
    hot, threshold = find_hot_pixels(mean, read_noise if np.isfinite(read_noise) else 3.0, n,
                                     sigma, min_dn)
    black = float(np.median(mean))
    stats = {"black_dn": round(black, 3), "read_noise_dn": round(read_noise, 3),
             "hot_threshold_dn": round(threshold, 2), "hot_pixels": int(len(hot)),
             "mean_dn": round(float(mean.mean()), 3)}
    method = (f"mean of {n} frames, all facets off, exposure {exposure_us:g} us; hot pixel: "
              f"mean - median{LOCAL_BACKGROUND_PX}x{LOCAL_BACKGROUND_PX} > "
              f"max({min_dn:g} DN, {sigma:g} x read noise / sqrt(N))")
    return DarkFrame(float(exposure_us), mean, hot, n, now_iso(), method, stats)


def scale_dark(dark: DarkFrame, exposure_us: float) -> DarkFrame:
    """A dark for another exposure from one dark: dark signal (above the black level) scales
    with exposure, the black level does not. Used only when no dark at that exposure exists."""
    black = np.float32(dark.stats.get("black_dn", float(np.median(dark.mean))))
    ratio = np.float32(exposure_us / dark.exposure_us)
    mean = black + (dark.mean - black) * ratio
    method = f"scaled from the {dark.exposure_us:g} us dark by {float(ratio):.4g}"
    return DarkFrame(float(exposure_us), mean.astype(np.float32), dark.hot_pixels, dark.n_frames,
                     dark.measured, method, dict(dark.stats))
