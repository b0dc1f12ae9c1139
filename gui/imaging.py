"""Display maths for dark-field stacks: pure numpy, no Qt, so it runs in worker threads and tests.

Why these choices:
- Raw frames are Bayer GRBG. Averaging each 2 x 2 quad gives a demosaic-free luminance at half
  resolution with the same phase everywhere (RoI origins are even), so no checkerboard shows.
- Downsampling beyond that uses a block *maximum*: scratches are 1-3 px wide bright lines on a
  black background and a mean or a stride would thin them out of the preview.
- Display levels are fixed (black level to 12-bit full scale through a log transfer): dark-field
  images span faint scratches a few DN above black to saturated dust, and auto-levels would make
  the picture flicker from frame to frame and hide how bright a defect really is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLACK_LEVEL_DN = 64
FULL_SCALE_DN = 4095
LOG_KNEE_DN = 16.0  # DN above black where the log transfer bends: noise stays dark, faint shows
MODULATION_FLOOR_DN = 12.0  # added to the denominator so background noise reads as isotropic
OVERVIEW_MAX_PX = 800  # longest side of a preview tile (display downsampling target)
AZIMUTH_STEP_DEG = 30.0
DIRECTIONAL_M = 0.5  # modulation index above which a spot behaves like a scratch
ISOTROPIC_M = 0.2  # ... and below which like dust / stain
BACKGROUND_RADIUS_PX = 16  # the local background: median of the quads this far around a spot
SPOT_EXCLUDE_QUADS = 2  # ... leaving out this many quads on each side of the spot itself


@dataclass(frozen=True)
class DisplayLevels:
    """A fixed mapping of 12-bit DN to 8-bit grey; never derived from the image."""

    name: str
    black_dn: float = BLACK_LEVEL_DN
    white_dn: float = FULL_SCALE_DN
    log_knee_dn: float | None = LOG_KNEE_DN  # None: linear

    def lut(self) -> np.ndarray:
        """4096-entry uint8 lookup table (index = DN)."""
        dn = np.arange(FULL_SCALE_DN + 1, dtype=np.float64)
        x = np.clip(dn - self.black_dn, 0, None)
        span = max(self.white_dn - self.black_dn, 1.0)
        if self.log_knee_dn:
            y = np.log1p(x / self.log_knee_dn) / np.log1p(span / self.log_knee_dn)
        else:
            y = x / span
        return np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)


LEVEL_PRESETS = {
    "log (dark field)": DisplayLevels("log (dark field)"),
    "linear 64-1023": DisplayLevels("linear 64-1023", white_dn=1023, log_knee_dn=None),
    "linear 64-4095": DisplayLevels("linear 64-4095", log_knee_dn=None),
}
DEFAULT_LEVELS = "log (dark field)"


def overview_factor(shape_hw: tuple[int, int], max_px: int = OVERVIEW_MAX_PX) -> int:
    """Even downsampling factor (>= 2, the Bayer quad) so the longest side fits `max_px`."""
    longest = max(shape_hw)
    f = 2
    while longest / f > max_px:
        f += 2
    return f


def quad_mean(raw: np.ndarray) -> np.ndarray:
    """Mean of each 2 x 2 Bayer quad, uint16, half resolution; works on (..., H, W)."""
    h, w = raw.shape[-2] // 2 * 2, raw.shape[-1] // 2 * 2
    r = raw[..., :h, :w]
    s = r[..., 0::2, 0::2].astype(np.uint16)  # 4 x 4095 fits in uint16
    s += r[..., 0::2, 1::2]
    s += r[..., 1::2, 0::2]
    s += r[..., 1::2, 1::2]
    s >>= 2
    return s


def block_max(img: np.ndarray, k: int) -> np.ndarray:
    """Maximum over k x k blocks of the last two axes (edges that do not fill a block dropped).

    Strided element-wise maxima rather than a reshape-reduce: several times faster for small
    k, and numpy releases the GIL in them, so the GUI thread keeps running.
    """
    if k <= 1:
        return img
    h, w = img.shape[-2] // k * k, img.shape[-1] // k * k
    rows = img[..., 0:h:k, :w].copy()
    for i in range(1, k):
        np.maximum(rows, img[..., i:h:k, :w], out=rows)
    out = rows[..., 0::k].copy()
    for j in range(1, k):
        np.maximum(out, rows[..., j::k], out=out)
    return out


def downsample(raw: np.ndarray, factor: int) -> np.ndarray:
    """Raw Bayer (..., H, W) -> luminance preview (..., H/factor, W/factor) uint16 DN."""
    if factor < 2 or factor % 2:
        raise ValueError(f"display factor must be even and >= 2, got {factor}")
    return block_max(quad_mean(raw), factor // 2)


def to_display(img_dn: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """DN image -> uint8 through a fixed lookup table."""
    return lut[np.minimum(img_dn, FULL_SCALE_DN)]


def _state_palette(n: int) -> np.ndarray:
    """One saturated colour per illumination state, hues evenly around the circle."""
    h = np.arange(n) / n
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h[:, None] * 6) % 6
    return (1 - np.clip(np.minimum(k, 4 - k), 0, 1)).astype(np.float32)  # (n, 3) in 0..1


def modulation_index(values: np.ndarray, floor_dn: float = 0.0, axis: int = 0) -> np.ndarray:
    """(max - min) / (max + min) of black-subtracted intensities over the states.

    Near 1: lit from some directions only (a scratch). Near 0: isotropic (dust, stain, fibre).
    """
    v = np.clip(np.asarray(values, dtype=np.float32), 0, None)
    mx, mn = v.max(axis=axis), v.min(axis=axis)
    return (mx - mn) / (mx + mn + floor_dn + 1e-6)


def modulation_rgb(states_dn: np.ndarray, lut: np.ndarray,
                   black_dn: float = BLACK_LEVEL_DN) -> np.ndarray:
    """(6, h, w) DN previews -> RGB image that makes directional scatterers stand out.

    Brightness = the per-pixel maximum (same transfer as the tiles), saturation = modulation
    index, hue = the illumination state where the pixel is brightest (which encodes the
    scratch's direction). Scratches come out coloured; dust, stains and fibres grey or white.
    """
    s = states_dn.astype(np.float32)
    s -= black_dn
    np.clip(s, 0, None, out=s)
    mx = s.max(axis=0)
    mn = s.min(axis=0)
    sat = (mx - mn) / (mx + mn + MODULATION_FLOOR_DN)
    np.clip(sat * 1.25, 0, 1, out=sat)
    hue = _state_palette(states_dn.shape[0])[s.argmax(axis=0)]  # (h, w, 3)
    value = to_display(np.round(mx + black_dn).astype(np.uint16), lut).astype(np.float32)
    # HSV with a discrete hue: blend from white to the state's colour by saturation
    rgb = 1 - sat[..., None] * (1 - hue)
    rgb *= value[..., None]
    return rgb.astype(np.uint8)


@dataclass(frozen=True)
class Signature:
    """Intensity of one spot under each illumination state: the physical signature."""

    row: int  # RoI pixel of the quad used (top-left, even)
    col: int
    values_dn: np.ndarray  # (states,) DN of the quad above the local background
    azimuths_deg: np.ndarray  # (states,) azimuth of the first facet of each lit pair
    saturated: bool
    approximate: bool = False  # from the downsampled preview, not the raw stack
    background_dn: np.ndarray | None = None  # (states,) local background above black

    @property
    def modulation(self) -> float:
        return float(modulation_index(self.values_dn, MODULATION_FLOOR_DN))

    @property
    def verdict(self) -> str:
        m = self.modulation
        if self.saturated:  # a clipped state hides how much brighter it was: no ratio holds
            return "saturated: direction unknown"
        if self.values_dn.max() < MODULATION_FLOOR_DN:  # above the local background
            return "background (too dark to judge)"
        if m >= DIRECTIONAL_M:
            return "directional: scratch-like"
        if m <= ISOTROPIC_M:
            return "isotropic: dust / stain / fibre-like"
        return "weakly directional: ambiguous"


def _spot_and_background(q: np.ndarray, ci: int, cj: int, search: int
                         ) -> tuple[int, int, np.ndarray]:
    """The brightest cell of `q` (states, h, w) within `search` cells of (ci, cj), and the
    per-state median of the cells around it, leaving out the spot's own neighbourhood: the
    haze and glow a spot sits on, which would otherwise lift every state alike and pull the
    modulation of a faint scratch towards "isotropic"."""
    _, h, w = q.shape
    i0, i1 = max(ci - search, 0), min(ci + search + 1, h)
    j0, j1 = max(cj - search, 0), min(cj + search + 1, w)
    peak = q[:, i0:i1, j0:j1].max(axis=0)
    a, b = np.unravel_index(int(np.argmax(peak)), peak.shape)
    qi, qj = i0 + int(a), j0 + int(b)
    ring = np.ones((h, w), bool)
    e = SPOT_EXCLUDE_QUADS
    ring[max(qi - e, 0):qi + e + 1, max(qj - e, 0):qj + e + 1] = False
    bg = np.median(q[:, ring], axis=1) if ring.any() else np.zeros(q.shape[0], np.float32)
    return qi, qj, bg.astype(np.float32)


def signature_at(stack: np.ndarray, row: float, col: float, radius_px: int = 4,
                 black_dn: float = BLACK_LEVEL_DN,
                 azimuths_deg: np.ndarray | None = None) -> Signature:
    """Signature of the brightest Bayer quad within `radius_px` of a clicked raw pixel, above
    the local background (`BACKGROUND_RADIUS_PX` around it).

    Snapping to the brightest quad nearby makes a click on a 1-3 px scratch land on it.
    `stack` is (states, H, W) raw (a numpy array or an h5py dataset; only a crop is read).
    """
    n, h, w = stack.shape
    r, c = int(row) // 2 * 2, int(col) // 2 * 2
    rad = max(radius_px // 2 * 2, 2)
    around = max(BACKGROUND_RADIUS_PX // 2 * 2, rad + 2 * SPOT_EXCLUDE_QUADS + 2)
    r0, r1 = max(r - around, 0), min(r + around + 2, h // 2 * 2)
    c0, c1 = max(c - around, 0), min(c + around + 2, w // 2 * 2)
    crop = np.asarray(stack[:, r0:r1, c0:c1])
    q = quad_mean(crop).astype(np.float32) - black_dn  # (n, qr, qc)
    qi, qj, bg = _spot_and_background(q, (r - r0) // 2, (c - c0) // 2, rad // 2)
    quad = crop[:, 2 * qi:2 * qi + 2, 2 * qj:2 * qj + 2]
    az = (np.asarray(azimuths_deg, dtype=float) if azimuths_deg is not None
          else AZIMUTH_STEP_DEG * np.arange(n))
    return Signature(int(r0 + 2 * qi), int(c0 + 2 * qj), np.clip(q[:, qi, qj] - bg, 0, None),
                     az, bool((quad >= FULL_SCALE_DN).any()),
                     background_dn=np.clip(bg, 0, None))


def signature_from_preview(states_dn: np.ndarray, factor: int, row: float, col: float,
                           black_dn: float = BLACK_LEVEL_DN) -> Signature:
    """Approximate signature from (states, h, w) previews when the raw stack is not in memory."""
    n, h, w = states_dn.shape
    i = int(np.clip(row // factor, 0, h - 1))
    j = int(np.clip(col // factor, 0, w - 1))
    around = max(BACKGROUND_RADIUS_PX // factor, SPOT_EXCLUDE_QUADS + 2)
    i0, i1, j0, j1 = max(i - around, 0), min(i + around + 1, h), max(j - around, 0), \
        min(j + around + 1, w)
    win = states_dn[:, i0:i1, j0:j1].astype(np.float32) - black_dn
    a, b, bg = _spot_and_background(win, i - i0, j - j0, 1)
    return Signature(int((i0 + a) * factor), int((j0 + b) * factor),
                     np.clip(win[:, a, b] - bg, 0, None), AZIMUTH_STEP_DEG * np.arange(n),
                     bool((states_dn[:, i0 + a, j0 + b] >= FULL_SCALE_DN).any()),
                     approximate=True, background_dn=np.clip(bg, 0, None))


def polar_curve(values: np.ndarray, azimuths_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed (x, y) polygon of intensity versus azimuth over both facets of every lit pair.

    State k lights facets at azimuth a_k and a_k + 180, so each value appears twice.
    """
    az = np.concatenate([azimuths_deg, np.asarray(azimuths_deg) + 180.0])
    r = np.concatenate([values, values]).astype(float)
    order = np.argsort(az % 360)
    az, r = np.deg2rad(az[order] % 360), r[order]
    az, r = np.append(az, az[0]), np.append(r, r[0])
    return r * np.cos(az), r * np.sin(az)


@dataclass
class RoiPreview:
    """Everything the stack view needs to show one RoI without touching the raw data again."""

    roi: int
    shape: tuple[int, int]  # raw (H, W)
    factor: int
    states_dn: np.ndarray  # (states, h, w) uint16 previews
    tiles: dict[str, np.ndarray]  # "0".."5", "max", "modulation" -> uint8 (h, w) or (h, w, 3)
    levels: str = DEFAULT_LEVELS


def make_preview(roi: int, states_dn: np.ndarray, shape: tuple[int, int], factor: int,
                 levels: str = DEFAULT_LEVELS) -> RoiPreview:
    """Tiles for the 6 states, their maximum and the modulation image, from previews."""
    lut = LEVEL_PRESETS[levels].lut()
    tiles = {str(k): to_display(states_dn[k], lut) for k in range(states_dn.shape[0])}
    tiles["max"] = to_display(states_dn.max(axis=0), lut)
    tiles["modulation"] = modulation_rgb(states_dn, lut)
    return RoiPreview(roi, shape, factor, states_dn, tiles, levels)


def preview_from_stack(roi: int, stack: np.ndarray, levels: str = DEFAULT_LEVELS,
                       factor: int | None = None) -> RoiPreview:
    shape = (int(stack.shape[1]), int(stack.shape[2]))
    f = factor or overview_factor(shape)
    return make_preview(roi, downsample(np.asarray(stack), f), shape, f, levels)


def crop_tiles(stack: np.ndarray, r0: int, r1: int, c0: int, c1: int,
               levels: str = DEFAULT_LEVELS) -> dict[str, np.ndarray]:
    """Full-detail (quad-mean, factor 2) tiles of a raw crop, for a zoomed-in view."""
    r0, c0 = r0 // 2 * 2, c0 // 2 * 2
    crop = np.asarray(stack[:, r0:r1, c0:c1])
    q = quad_mean(crop)
    lut = LEVEL_PRESETS[levels].lut()
    tiles = {str(k): to_display(q[k], lut) for k in range(q.shape[0])}
    tiles["max"] = to_display(q.max(axis=0), lut)
    tiles["modulation"] = modulation_rgb(q, lut)
    return tiles


def heat_overlay(prob: np.ndarray, scale: float, max_px: int = OVERVIEW_MAX_PX
                 ) -> tuple[np.ndarray, float]:
    """Probability map (one cell = `scale` raw px) -> (RGBA overlay, raw px per overlay cell).

    Block-max pooled down to preview size first, so a thin high-probability line survives and
    the window never paints a full-resolution overlay.
    """
    p = np.nan_to_num(np.asarray(prob, dtype=np.float32))
    k = max(1, int(np.ceil(max(p.shape) / max_px)))
    return heat_rgba(block_max(p, k)), float(scale) * k


def heat_rgba(prob: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Scratch probability (0..1) -> RGBA overlay: transparent below `threshold`, red-yellow."""
    p = np.clip(np.nan_to_num(np.asarray(prob, dtype=np.float32)), 0, 1)
    out = np.zeros((*p.shape, 4), np.uint8)
    out[..., 0] = 255
    out[..., 1] = np.round(255 * np.clip(p * 2 - 1, 0, 1)).astype(np.uint8)
    out[..., 3] = np.where(p >= threshold, np.round(60 + 150 * p), 0).astype(np.uint8)
    return out
