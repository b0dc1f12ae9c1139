"""Stage/camera registration: pixel size and the rotation between stage and sensor axes.

Method: frames of a fiducial (random-dot) plate at a grid of stage offsets around one
position. Each frame's image shift against the frame at the centre comes from phase
correlation (whitened cross-power spectrum, numpy FFT) refined to ~0.01 px by a locally
upsampled DFT around the peak (Guizar-Sicairos, Thurman & Fienup 2008). A least-squares fit of
shift = J d + b over all offsets gives the 2 x 2 matrix J (px per stage mm); its similarity part
is -R(theta) / pixel_size. Frames are reduced to 2 x 2 Bayer-cell sums first, so the fixed colour
mosaic does not correlate with itself.

Only displacements are used, so the result does not depend on where the fiducial is, and every
offset is a separate measurement: with 25 positions the fit averages their errors. The fit's
RMS residual says how well the frames agree (a slipping stage or a moving target shows there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from calibration.store import CalibrationError, Registration, now_iso

DEFAULT_GRID = 5
"""Offsets per axis (5 x 5 = 25 stage positions)."""
DEFAULT_SPAN = 0.3
"""Largest offset as a fraction of the field: frames keep >= 40 % overlap with the centre."""
UPSAMPLE = 100
"""Sub-pixel step of the refined correlation peak: 1/100 (binned) px."""
MAX_RESIDUAL_PX = 0.5
"""A position whose shift misses the fit by more is dropped (and reported)."""


def bin2x2(img: np.ndarray) -> np.ndarray:
    """Sum of each 2 x 2 Bayer cell: a half-resolution luminance without the colour mosaic."""
    x = np.asarray(img, dtype=np.float32)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    return x[:h:2, :w:2] + x[1:h:2, :w:2] + x[:h:2, 1:w:2] + x[1:h:2, 1:w:2]


def _window(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _upsampled_dft(data: np.ndarray, region: int, factor: int,
                   offsets: tuple[float, float]) -> np.ndarray:
    """Inverse DFT of `data` (a spectrum) on a region x region grid of step 1/factor around
    `offsets` (in upsampled units), by two matrix products (Guizar-Sicairos et al. 2008)."""
    h, w = data.shape
    fr = np.fft.ifftshift(np.arange(h)) - h // 2
    fc = np.fft.ifftshift(np.arange(w)) - w // 2
    pr = np.arange(region) - offsets[0]
    pc = np.arange(region) - offsets[1]
    kr = np.exp((2j * np.pi / (h * factor)) * np.outer(pr, fr))
    kc = np.exp((2j * np.pi / (w * factor)) * np.outer(fc, pc))
    return kr @ data @ kc


def _spectra(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-power spectrum F(b) conj(F(a)) of median-removed, Hann-windowed images."""
    win = _window(a.shape)
    fa = np.fft.fft2((a - np.median(a)) * win)
    fb = np.fft.fft2((b - np.median(b)) * win)
    return fb * np.conj(fa)


def _refine(cross: np.ndarray, d0: np.ndarray, upsample: int) -> np.ndarray:
    """Peak of the correlation whose spectrum is `cross`, searched +-0.75 px around d0."""
    region = int(math.ceil(upsample * 1.5))
    centre = region // 2
    offsets = (centre - d0[0] * upsample, centre - d0[1] * upsample)
    up = _upsampled_dft(cross, region, upsample, offsets).real
    k = np.unravel_index(int(np.argmax(up)), up.shape)
    return d0 + (np.array(k, dtype=np.float64) - centre) / upsample


def phase_correlation(ref: np.ndarray, img: np.ndarray, upsample: int = UPSAMPLE
                      ) -> tuple[float, float, float]:
    """(d_row, d_col, peak) with img(q) ~ ref(q - d): the content of `ref` moved by d in `img`.

    Two steps. (1) Whole-pixel shift from the phase correlation (whitened cross-power: a sharp
    peak, robust to uneven brightness); `peak` is its normalised height (about 1 for identical
    content, ~0.01 for unrelated frames), a quality figure. (2) The overlapping parts of both
    frames are cut out (content that is in one frame only biases a sub-pixel estimate) and the
    plain cross-correlation peak of those is located to 1/upsample px by an upsampled DFT;
    plain rather than whitened, because whitening gives the noise-only high frequencies as
    much weight as the signal (on simulated dot frames: 0.007 px RMS error against 0.05 px).
    Images have their median (dark background) removed, not their mean, so the window's own
    shape does not correlate with itself at zero shift.
    """
    a = np.asarray(ref, dtype=np.float32)
    b = np.asarray(img, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    cross = _spectra(a, b)
    cross /= np.maximum(np.abs(cross), 1e-12)
    corr = np.fft.ifft2(cross).real
    h, w = corr.shape
    i, j = np.unravel_index(int(np.argmax(corr)), corr.shape)
    peak = float(corr[i, j])
    r = int(i if i <= h // 2 else i - h)
    c = int(j if j <= w // 2 else j - w)
    if upsample <= 1:
        return float(r), float(c), peak
    ra = a[max(0, -r):h - max(0, r), max(0, -c):w - max(0, c)]
    rb = b[max(0, r):h - max(0, -r), max(0, c):w - max(0, -c)]
    if min(ra.shape) < 16:
        raise CalibrationError(f"frames overlap by only {ra.shape} px; use smaller stage offsets")
    fine = _refine(_spectra(ra, rb), np.zeros(2), upsample)
    return float(r + fine[0]), float(c + fine[1]), peak


def frame_shift(ref: np.ndarray, img: np.ndarray, dark: np.ndarray | None = None
                ) -> tuple[float, float, float]:
    """Shift (d_row, d_col) in sensor px of the content of RAW frame `ref` in RAW frame `img`."""
    if dark is not None:
        ref = np.asarray(ref, np.float32) - dark
        img = np.asarray(img, np.float32) - dark
    dr, dc, peak = phase_correlation(bin2x2(ref), bin2x2(img))
    return 2.0 * dr, 2.0 * dc, peak


def stage_offsets(field_mm: tuple[float, float], grid: int = DEFAULT_GRID,
                  span: float = DEFAULT_SPAN) -> np.ndarray:
    """(n, 2) stage offsets (x, y) mm: a grid x grid lattice over +-span of the field."""
    fw, fh = field_mm
    ax = np.linspace(-span, span, grid) if grid > 1 else np.zeros(1)
    return np.array([(u * fw, v * fh) for v in ax for u in ax], dtype=np.float64)


def fit_registration(offsets_mm: np.ndarray, shifts_px: np.ndarray,
                     nominal_pixel_size_mm: float, peaks: Sequence[float] | None = None,
                     max_residual_px: float = MAX_RESIDUAL_PX) -> Registration:
    """Least-squares J from stage offsets (n, 2) (x, y) mm and image shifts (n, 2) (col, row) px.

    Positions that miss the fit by more than `max_residual_px` are dropped one at a time (worst
    first) while at least 4 remain; what was dropped is in `stats`.
    """
    d = np.asarray(offsets_mm, dtype=np.float64)
    s = np.asarray(shifts_px, dtype=np.float64)
    keep = np.ones(len(d), bool)
    while True:
        if keep.sum() < 3:
            raise CalibrationError("registration needs at least 3 stage positions that agree; "
                                   "check that the fiducial plate is in view and the stage moves")
        a = np.column_stack([d[keep], np.ones(keep.sum())])
        coef, *_ = np.linalg.lstsq(a, s[keep], rcond=None)
        jac = coef[:2].T  # (2, 2): shift = jac @ d + b
        res = np.linalg.norm(s - (d @ jac.T + coef[2]), axis=1)
        worst = int(np.argmax(np.where(keep, res, -1.0)))
        if res[worst] <= max_residual_px or keep.sum() <= 4:
            break
        keep[worst] = False
    m = -jac  # = R(theta) / pixel_size for a similarity
    a_, b_ = (m[0, 0] + m[1, 1]) / 2.0, (m[1, 0] - m[0, 1]) / 2.0
    scale = math.hypot(a_, b_)  # px per mm
    if scale <= 0:
        raise CalibrationError("registration found no image motion; is the stage moving?")
    rotation = math.degrees(math.atan2(b_, a_))
    sv = np.linalg.svd(m, compute_uv=False)
    rms = float(np.sqrt(np.mean(res[keep] ** 2)))
    stats: dict[str, Any] = {
        "anisotropy": float(sv[0] / sv[1] - 1.0) if sv[1] > 0 else float("inf"),
        "skew_deg": float(math.degrees(math.atan2(m[0, 1] + m[1, 0], m[0, 0] + m[1, 1]))),
        "intercept_px": [float(v) for v in coef[2]],
        "dropped": [int(i) for i in np.flatnonzero(~keep)],
        "offsets_mm": d.round(4).tolist(), "shifts_px": s.round(4).tolist(),
        "residuals_px": res.round(4).tolist(),
    }
    if peaks is not None:
        stats["min_peak"] = float(np.min(np.asarray(peaks)[keep]))
    method = ("fiducial dot plate at a grid of stage offsets; phase correlation of 2x2-binned "
              f"frames (upsampled DFT, 1/{UPSAMPLE} px); least squares shift = J d + b")
    return Registration(jac, 1.0 / scale, rotation, float(nominal_pixel_size_mm), rms,
                        int(keep.sum()), now_iso(), method, stats)


# -- using a registration ------------------------------------------------------------------------
def sample_px_to_stage(reg: Registration, centre_px: tuple[float, float],
                       sample_origin_mm: tuple[float, float]) -> tuple[float, float]:
    """Stage (x, y) mm that puts sample pixel (row, col) `centre_px` on the optical axis.

    At `sample_origin_mm` the sample corner is on the axis (station config); the sample content
    on the axis moves by -J d when the stage moves by d.
    """
    target = np.array([centre_px[1], centre_px[0]], dtype=np.float64)  # (col, row)
    d = np.linalg.solve(-np.asarray(reg.matrix, dtype=np.float64), target)
    return float(sample_origin_mm[0] + d[0]), float(sample_origin_mm[1] + d[1])


def calibrated_roi_layout(cfg: Any, reg: Registration) -> tuple[Any, ...]:
    """The station's RoI grid in *measured* pixels, with stage positions that put each RoI's
    origin where the grid says despite stage rotation and pixel-size error.

    Same RoIs as `rig.layout.roi_layout(cfg)`, but `pixel_size_mm` is the registration's (so
    detections land at the right sample mm) and `stage_xy_mm` comes from J.
    """
    from rig.layout import roi_layout

    origin = tuple(cfg.stage.sample_origin_mm)
    return roi_layout(cfg, reg.pixel_size_mm,
                      lambda centre_px: sample_px_to_stage(reg, centre_px, origin))
