"""Dark-field optics: what the camera records for one RoI and one set of lit facets.

docs/simulated-optics.md. Per RoI and illumination (a 12-facet level vector; state k = facets k and
k + 6 at level 1), in 12-bit DN:

    signal = exposure * vignetting * CFA * (haze * illumination + edge glare + stray
                                            + sum over defects of their scattered light)
    raw    = clip(black + signal + shot and read noise, 0, 4095), hot pixels added

Speed (target <= 0.2 s per 3504 x 3120 frame on two shared cores) comes from three choices:

* The smooth background is a sum of ~12 separable terms (row vector x column vector): the
  illumination of each facet is a quadratic in sensor coordinates, vignetting is a product of
  per-axis fall-offs, the haze texture is a few separable modes, and the straight glass edges
  are functions of x or of y alone. So one small matrix product per strip of rows gives it
  exactly; only the rounded glass corners, which are not separable, are computed densely (and
  only in the RoIs that contain one).
* The frame is produced in strips of 64 rows that stay in cache: product, colour filter, noise,
  black level, clipping and conversion to uint16 per strip. The small products use einsum, not
  BLAS: OpenBLAS's spin-waiting threads made them ~10x slower on two cores shared with other
  work, and limiting them would change process-wide state.
* Noise is drawn as raw 64-bit words (SFC64) read as int8 and summed four at a time (an
  Irwin-Hall approximation of a Gaussian: excess kurtosis -0.3, bounded at +-3.5 sigma), ~10x
  cheaper than numpy's Gaussian sampler. Its standard deviation per pixel is the exact
  sqrt(gain * signal + read^2); defects add their own independent shot noise on their pixels.

Defects are rasterised once per renderer in the sample pixel frame as sparse pixel lists (curves
by splatting Gaussian footprints of points along the centreline, blobs as small dense patches);
each RoI caches its share as a (pixels x 12 facets) matrix for scratches and a (pixels x defects)
sparse matrix for isotropic defects, so a new illumination state costs one small product.

Noise is seeded from (sample seed, RoI origin, state, frame counter, strip): same inputs, same
bytes, whatever the number of threads.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp

from recordings import RoiTruth
from rig.geometry import DEFAULT_PIXEL_SIZE_MM
from world.sample import (
    FACET_AZIMUTHS_DEG,
    N_FACETS,
    BlobDefect,
    CurveDefect,
    Defect,
    Dust,
    Sample,
    Scratch,
    Stain,
)

N_STATES = 6
DEFAULT_SENSOR = (3504, 3120)  # (W, H)
STRIP_ROWS = 64  # part of the noise seeding: changing it changes the noise (not its statistics)
_IH4_SD = math.sqrt(4 * (256**2 - 1) / 12.0)  # sd of the sum of four uniform int8
_IH4_MEAN = -2.0  # four int8 uniforms on -128..127 have mean -0.5 each


@dataclass(frozen=True)
class OpticsConfig:
    """The virtual bench's optics and sensor. DN are 12-bit; levels are per lit facet pair."""

    black_level_dn: float = 64.0
    full_scale_dn: int = 4095
    read_noise_dn: float = 2.5
    shot_gain_dn_per_e: float = 0.35  # shot variance (DN^2) = gain * signal (DN)
    cfa_response: tuple[float, float, float] = (0.6, 1.0, 0.5)  # R, G, B to white LEDs
    nominal_exposure_us: float = 20000.0
    psf_sigma_px: float = 0.5  # blur of small blobs (curves carry their own width)
    illumination_radius_mm: float = 20.0  # normalises sensor coordinates for the light field
    illumination_gradient: float = 0.18  # linear fall-off of one facet across the field
    illumination_curvature: float = 0.12  # quadratic term of one facet
    facet_balance_sd: float = 0.04  # facet-to-facet brightness spread of the ring light
    vignetting_radius_mm: float = 80.0  # per-axis (1 + (r/R)^2)^-2: ~0.8 in a full-frame corner
    stray_dn: float = 1.0  # flat stray light per lit pair
    glare_line_dn: float = 2500.0  # glass edge line when the lit pair faces the edge
    glare_line_mm: float = 0.08  # its decay into the glass
    glare_halo_dn: float = 60.0
    glare_halo_mm: float = 1.0
    hot_pixel_fraction: float = 1e-5
    hot_pixel_dn: tuple[float, float] = (150.0, 4000.0)  # log-uniform, above black
    rig_seed: int = 0  # ring-light balance and hot-pixel map (the same for every sample)
    threads: int = 1  # strips rendered in parallel (output does not depend on it)


def state_levels(state: int) -> np.ndarray:
    """Facet level vector of illumination state k: facets k and k + 6 at nominal level 1."""
    if not 0 <= state < N_STATES:
        raise ValueError(f"state must be 0..{N_STATES - 1}, got {state}")
    lv = np.zeros(N_FACETS)
    lv[state] = lv[state + N_STATES] = 1.0
    return lv


def _glare_weights(levels_b: np.ndarray) -> np.ndarray:
    """Fourier coefficients (1, cos, sin, cos2, sin2 of the edge normal) of the edge glare.

    A facet at phi lights an edge with outward normal theta by w = 0.4 + 0.4 cos(phi - theta)
    + 0.2 cos 2(phi - theta): strongest face-on, never zero.
    """
    phi = np.radians(FACET_AZIMUTHS_DEG)
    return np.array([0.4 * levels_b.sum(), 0.4 * (levels_b * np.cos(phi)).sum(),
                     0.4 * (levels_b * np.sin(phi)).sum(), 0.2 * (levels_b * np.cos(2 * phi)).sum(),
                     0.2 * (levels_b * np.sin(2 * phi)).sum()])


def _glare_strength(coef: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    t = np.asarray(theta)
    return (coef[0] + coef[1] * np.cos(t) + coef[2] * np.sin(t) + coef[3] * np.cos(2 * t)
            + coef[4] * np.sin(2 * t))


# -- defect rasters (sample pixel frame, computed once per renderer) --------------------------
@dataclass
class _Raster:
    rows: np.ndarray  # int64 sample px
    cols: np.ndarray
    vals: np.ndarray  # float32 (n, C): scratches 12 facets, fibres 1, blobs 1; curves + unit


def _splat_curve(d: CurveDefect, pix: float, facets: bool) -> _Raster:
    """Gaussian footprints of points every <= 0.5 px along the centreline, summed per pixel.

    A point weight ds / (sqrt(2 pi) sigma) makes a long line peak at its amplitude; the unit
    column (amplitude 1, no angular factor) is the footprint used for the truth mask.
    """
    sigma = max(d.width_mm / pix / 2.3548, 0.35)
    pts, psi, frac = d.centreline(0.5 * pix)
    a = d.profile_along(frac) * d.amplitude_dn
    keep = a > 0
    if not keep.any():
        return _Raster(np.zeros(0, np.int64), np.zeros(0, np.int64),
                       np.zeros((0, N_FACETS + 1 if facets else 2), np.float32))
    ds = d.length_mm() / pix / max(len(frac) - 1, 1)
    x, y, a, psi = pts[keep, 0] / pix, pts[keep, 1] / pix, a[keep], psi[keep]
    k = int(math.ceil(3.0 * sigma))
    off = np.arange(-k, k + 1)
    ix, iy = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    cols = ix[:, None, None] + off[None, None, :]
    rows = iy[:, None, None] + off[None, :, None]
    dx = cols + 0.5 - x[:, None, None]
    dy = rows + 0.5 - y[:, None, None]
    w = np.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)) * (ds / (math.sqrt(2 * math.pi) * sigma))
    rows, cols = np.broadcast_to(rows, w.shape).ravel(), np.broadcast_to(cols, w.shape).ravel()
    pidx = np.broadcast_to(np.arange(len(x))[:, None, None], w.shape).ravel()
    w = w.ravel()
    sel = w > 1e-4 * w.max()
    rows, cols, pidx, w = rows[sel], cols[sel], pidx[sel], w[sel]
    key = rows * (1 << 31) + cols
    ukey, inv = np.unique(key, return_inverse=True)
    smat = sp.csr_matrix((w, (inv, pidx)), shape=(len(ukey), len(x)))
    if facets:
        per_point = np.empty((len(x), N_FACETS + 1))
        per_point[:, :N_FACETS] = d.facet_response(psi) * a[:, None]
    else:
        per_point = np.empty((len(x), 2))
        per_point[:, 0] = a
    per_point[:, -1] = 1.0
    vals = np.asarray(smat @ per_point, dtype=np.float32)
    return _Raster(ukey >> 31, ukey & ((1 << 31) - 1), vals)


def _blob_raster(d: BlobDefect, pix: float, psf_sigma: float) -> _Raster:
    """Dense patch around a dust grain or stain, kept as a pixel list."""
    cx, cy = d.centre[0] / pix, d.centre[1] / pix
    soft = (d.edge_mm / pix) if isinstance(d, Stain) else max(0.6, 0.1 * d.radius_mm / pix)
    rmax = d.max_radius_mm() / pix + soft + 3.0 * psf_sigma + 2.0
    r0, r1 = int(math.floor(cy - rmax)), int(math.ceil(cy + rmax))
    c0, c1 = int(math.floor(cx - rmax)), int(math.ceil(cx + rmax))
    yy = np.arange(r0, r1)[:, None] + 0.5 - cy
    xx = np.arange(c0, c1)[None, :] + 0.5 - cx
    rho = np.hypot(xx, yy)
    radius = d.radius_at(np.arctan2(yy, xx)) / pix
    inside = np.clip((radius - rho) / soft + 0.5, 0.0, 1.0)
    if isinstance(d, Dust):
        prof = inside * np.clip(1.0 - d.dome * (rho / np.maximum(radius, 1e-6)) ** 2, 0.0, 1.0)
        prof = ndi.gaussian_filter(prof, psf_sigma, mode="constant")
    else:
        assert isinstance(d, Stain)
        h, w = inside.shape
        g = np.random.default_rng(d.texture_seed).standard_normal((9, 9))
        tex = ndi.zoom(g, (h / 9.0, w / 9.0), order=3, grid_mode=True, mode="grid-wrap")
        tex = (tex - tex.mean()) / (tex.std() + 1e-9)
        ring = np.exp(-(((radius - rho) / np.maximum(0.15 * radius, 1.0)) ** 2))
        prof = inside * np.clip(1.0 + 0.5 * d.texture * tex, 0.2, 2.0) * (1.0 + 1.5 * d.rim * ring)
    prof = prof * d.amplitude_dn
    sel = prof > 1e-3 * max(prof.max(), 1e-12)
    rr, cc = np.nonzero(sel)
    return _Raster((rr + r0).astype(np.int64), (cc + c0).astype(np.int64),
                   prof[sel].astype(np.float32)[:, None])


# -- per-RoI cache ------------------------------------------------------------------------------
@dataclass
class _Corner:
    rows: slice
    cols: slice
    haze: np.ndarray  # haze texture x glass coverage (relative, x haze_dn later)
    glare: np.ndarray  # (5, h, w) edge profile x (1, cos, sin, cos 2, sin 2) of the normal
    u: np.ndarray  # normalised sensor coordinates (1, w) and (h, 1)
    v: np.ndarray
    vig: np.ndarray


@dataclass
class _RoiCache:
    origin: tuple[int, int]
    # background (1D, sensor/sample coordinates)
    u: np.ndarray  # (W,) normalised sensor x
    v: np.ndarray  # (H,)
    vx: np.ndarray  # vignetting per axis
    vy: np.ndarray
    gx: np.ndarray  # glass coverage per axis (bounding box)
    gy: np.ndarray
    haze_x: list[np.ndarray]  # separable haze modes (amplitude folded into y)
    haze_y: list[np.ndarray]
    glare_x: dict[str, np.ndarray]  # edge profiles: "left", "right" (W,), "top", "bottom" (H,)
    glare_y: dict[str, np.ndarray]
    corners: list[_Corner]
    # defects
    u_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # flat RoI px
    pix_factor: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # vig x CFA
    dir_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dir_vals: np.ndarray = field(default_factory=lambda: np.zeros((0, N_FACETS), np.float32))
    iso_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    iso_mat: sp.csr_matrix | None = None
    iso_facets: np.ndarray = field(default_factory=lambda: np.zeros((0, N_FACETS)))
    mask_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    visible: list[dict] = field(default_factory=list)


class DarkFieldRenderer:
    """Renders RAW GRBG frames of one virtual sample as seen through the simulated bench.

    One renderer per (sample, sensor, pixel size); it caches defect rasters for the sample and
    the last few RoIs, so rendering the 6 states of an RoI builds the RoI's share only once.
    """

    def __init__(self, sample: Sample, sensor: tuple[int, int] = DEFAULT_SENSOR,
                 pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM, config: OpticsConfig | None = None,
                 cache_rois: int = 4, window_of: tuple[int, int] | None = None,
                 window_origin_px: tuple[int, int] = (0, 0)):
        """`window_of` (W, H) and `window_origin_px` (row, col): render only a `sensor`-sized
        window of a larger sensor, with the light field and vignetting of that part of the
        field (training patches from anywhere in a full-size field, at patch cost)."""
        w, h = int(sensor[0]), int(sensor[1])
        if w % 2 or h % 2:
            raise ValueError(f"sensor size must be even (Bayer phase), got {w}x{h}")
        fw, fh = window_of or (w, h)
        wr, wc = int(window_origin_px[0]), int(window_origin_px[1])
        if not (0 <= wr <= fh - h and 0 <= wc <= fw - w):
            raise ValueError(f"window {w}x{h} at (row {wr}, col {wc}) is not inside the "
                             f"{fw}x{fh} sensor")
        self.sample = sample
        self.width, self.height = w, h
        self.field_size, self.window_origin = (int(fw), int(fh)), (wr, wc)
        self.pix = float(pixel_size_mm)
        self.cfg = config or OpticsConfig()
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.rig_seed, 0xB1A5]))
        self.facet_balance = np.clip(1.0 + rng.normal(0.0, self.cfg.facet_balance_sd, N_FACETS),
                                     0.5, 1.5)
        r, g, b = self.cfg.cfa_response
        self._cfa = np.array([[g, r], [b, g]], np.float32)  # GRBG: row 0 = G R, row 1 = B G
        self._cfa_rows = np.stack([np.tile(self._cfa[0], w // 2),
                                   np.tile(self._cfa[1], w // 2)])[None]  # (1, 2, W)
        self._hot_idx, self._hot_val = self._hot_pixels(rng)
        self._rasters: dict[int, _Raster] = {}
        self._rois: OrderedDict[tuple[int, int], _RoiCache] = OrderedDict()
        self._cache_rois = max(1, cache_rois)
        self._pool: ThreadPoolExecutor | None = None

    # -- public API ------------------------------------------------------------------------
    def render(self, origin_px: tuple[int, int], state: int | None = None,
               levels: np.ndarray | None = None, *, frame_counter: int = 0,
               exposure_us: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """One RAW frame (H, W) uint16 of the RoI whose top-left sample pixel is `origin_px`.

        Give either `state` (0..5: facets k, k+6 at level 1) or `levels` (12 facet levels,
        1 = nominal drive) for an arbitrary ring-light setting.
        """
        if (state is None) == (levels is None):
            raise ValueError("give exactly one of state or levels")
        if state is not None:
            lv, code = state_levels(state), int(state)
        else:
            lv = np.asarray(levels, dtype=np.float64).reshape(N_FACETS)
            code = 1000 + zlib.crc32(lv.astype("<f8").tobytes())
        roi = self._roi(origin_px)
        expo = (exposure_us if exposure_us is not None else self.cfg.nominal_exposure_us)
        scale = float(expo) / self.cfg.nominal_exposure_us
        key = [int(self.sample.seed) & 0xFFFFFFFFFFFF, int(origin_px[0]) + (1 << 24),
               int(origin_px[1]) + (1 << 24), code, int(frame_counter)]
        if out is None:
            out = np.empty((self.height, self.width), np.uint16)
        self._render_background(roi, lv, scale, key, out)
        self._add_defects(roi, lv, scale, key, out)
        flat = out.reshape(-1)
        if len(self._hot_idx):
            hot = flat[self._hot_idx].astype(np.float32) + self._hot_val * np.float32(scale)
            flat[self._hot_idx] = np.minimum(hot, self.cfg.full_scale_dn).astype(np.uint16)
        return out

    def render_stack(self, origin_px: tuple[int, int], *, frame_counter: int = 0,
                     exposure_us: float | None = None) -> np.ndarray:
        """The RoI's 6 states, (6, H, W) uint16; frame k uses frame counter `frame_counter + k`."""
        stack = np.empty((N_STATES, self.height, self.width), np.uint16)
        for k in range(N_STATES):
            self.render(origin_px, k, frame_counter=frame_counter + k, exposure_us=exposure_us,
                        out=stack[k])
        return stack

    def truth(self, origin_px: tuple[int, int]) -> RoiTruth:
        """Scratch mask (uint8 H x W, 1 on scratch pixels) and the defects this RoI sees."""
        roi = self._roi(origin_px)
        mask = np.zeros((self.height, self.width), np.uint8)
        mask.reshape(-1)[roi.mask_idx] = 1
        return RoiTruth(scratch_mask=mask, defects=copy.deepcopy(roi.visible))

    def visible_defects(self, origin_px: tuple[int, int]) -> list[dict]:
        """Defect dicts (Defect.to_dict + geometry.roi_box_px) of what this RoI sees."""
        return copy.deepcopy(self._roi(origin_px).visible)

    def footprint(self, defect_id: int, origin_px: tuple[int, int],
                  level: float = 0.5) -> np.ndarray:
        """Flat RoI pixel indices a defect covers: curves within their FWHM, blobs where they
        reach `level` x their peak (level 0 = every pixel the defect touches at all)."""
        d = next(x for x in self.sample.defects if x.id == defect_id)
        ras = self._raster(d)
        rr, cc = ras.rows - origin_px[0], ras.cols - origin_px[1]
        v = ras.vals[:, -1] if isinstance(d, CurveDefect) else ras.vals[:, 0] / max(
            float(ras.vals[:, 0].max(initial=0)), 1e-12)
        sel = (rr >= 0) & (rr < self.height) & (cc >= 0) & (cc < self.width) & (v > level)
        return rr[sel] * self.width + cc[sel]

    @property
    def hot_pixels(self) -> np.ndarray:
        """Flat indices of the sensor's hot pixels (the same in every RoI and state)."""
        return self._hot_idx.copy()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # -- sensor ----------------------------------------------------------------------------
    def _hot_pixels(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = int(round(self.cfg.hot_pixel_fraction * self.width * self.height))
        idx = np.unique(rng.integers(0, self.width * self.height, n))
        lo, hi = self.cfg.hot_pixel_dn
        val = np.exp(rng.uniform(math.log(lo), math.log(hi), len(idx))).astype(np.float32)
        return idx, val

    def _sensor_axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        c = self.cfg
        (fw, fh), (wr, wc) = self.field_size, self.window_origin
        xs = (wc + np.arange(self.width) + 0.5 - fw / 2) * self.pix
        ys = (wr + np.arange(self.height) + 0.5 - fh / 2) * self.pix
        vx = (1.0 + (xs / c.vignetting_radius_mm) ** 2) ** -2
        vy = (1.0 + (ys / c.vignetting_radius_mm) ** 2) ** -2
        return xs / c.illumination_radius_mm, ys / c.illumination_radius_mm, vx, vy

    def _facet_illumination(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(n, 12) relative irradiance of each facet at normalised sensor points (u, v)."""
        phi = np.radians(FACET_AZIMUTHS_DEG)
        p = u[:, None] * np.cos(phi) + v[:, None] * np.sin(phi)
        c = self.cfg
        return self.facet_balance * (1.0 + c.illumination_gradient * p
                                     + c.illumination_curvature * p * p)

    def _illum_coeffs(self, lv: np.ndarray) -> np.ndarray:
        """C (3 x 3): illumination = sum_ij C[i, j] v^i u^j for facet levels lv."""
        phi = np.radians(FACET_AZIMUTHS_DEG)
        lb = lv * self.facet_balance
        co, si = np.cos(phi), np.sin(phi)
        g, k = self.cfg.illumination_gradient, self.cfg.illumination_curvature
        s0, sc, ss = lb.sum(), (lb * co).sum(), (lb * si).sum()
        scc, scs, sss = (lb * co * co).sum(), (lb * co * si).sum(), (lb * si * si).sum()
        return np.array([[s0, g * sc, k * scc], [g * ss, 2 * k * scs, 0.0], [k * sss, 0.0, 0.0]])

    # -- RoI cache -------------------------------------------------------------------------
    def _edge_profile(self, d_mm: np.ndarray) -> np.ndarray:
        c = self.cfg
        inside = (c.glare_line_dn * np.exp(-np.maximum(d_mm, 0) / c.glare_line_mm)
                  + c.glare_halo_dn * np.exp(-np.maximum(d_mm, 0) / c.glare_halo_mm))
        outside = c.glare_line_dn * np.exp(np.minimum(d_mm, 0) / (0.5 * c.glare_line_mm))
        return np.where(d_mm >= 0, inside, outside) * self.sample.glare_scale

    def _roi(self, origin_px: tuple[int, int]) -> _RoiCache:
        key = (int(origin_px[0]), int(origin_px[1]))
        if key[0] % 2 or key[1] % 2:
            raise ValueError(f"RoI origin must be even (Bayer phase), got {key}")
        hit = self._rois.get(key)
        if hit is not None:
            self._rois.move_to_end(key)
            return hit
        roi = self._build_roi(key)
        self._rois[key] = roi
        while len(self._rois) > self._cache_rois:
            self._rois.popitem(last=False)
        return roi

    def _build_roi(self, origin: tuple[int, int]) -> _RoiCache:
        s, pix, W, H = self.sample, self.pix, self.width, self.height
        r0, c0 = origin
        u, v, vx, vy = self._sensor_axes()
        x_mm = (c0 + np.arange(W) + 0.5) * pix
        y_mm = (r0 + np.arange(H) + 0.5) * pix

        def coverage(coord_mm: np.ndarray, extent: float) -> np.ndarray:
            lo = np.clip((coord_mm + 0.5 * pix) / pix, 0, 1)  # fraction of the pixel past 0
            hi = np.clip((extent - coord_mm + 0.5 * pix) / pix, 0, 1)
            return np.minimum(lo, hi)

        gx, gy = coverage(x_mm, s.width_mm), coverage(y_mm, s.length_mm)
        haze_x, haze_y = [np.ones(W)], [np.ones(H)]
        for amp, kx, phx, ky, phy in s.haze_modes:
            haze_x.append(np.cos(2 * math.pi * kx * x_mm / s.width_mm + phx))
            haze_y.append(amp * np.cos(2 * math.pi * ky * y_mm / s.length_mm + phy))
        glare_x = {"left": self._edge_profile(x_mm), "right": self._edge_profile(s.width_mm - x_mm)}
        glare_y = {"top": self._edge_profile(y_mm), "bottom": self._edge_profile(s.length_mm - y_mm)}
        roi = _RoiCache(origin, u, v, vx, vy, gx, gy, haze_x, haze_y, glare_x, glare_y,
                        self._corners(origin, u, v, vx, vy))
        self._build_defects(roi)
        return roi

    def _corners(self, origin, u, v, vx, vy) -> list[_Corner]:
        """Dense patches where the rounded corners break the separable background model."""
        s, pix, W, H = self.sample, self.pix, self.width, self.height
        rc = min(s.corner_radius_mm, s.width_mm / 2, s.length_mm / 2)
        if rc <= 0:
            return []
        out = []
        for cx_mm, cy_mm, xr, yr in ((rc, rc, (0.0, rc), (0.0, rc)),
                                     (s.width_mm - rc, rc, (s.width_mm - rc, s.width_mm), (0.0, rc)),
                                     (rc, s.length_mm - rc, (0.0, rc), (s.length_mm - rc, s.length_mm)),
                                     (s.width_mm - rc, s.length_mm - rc, (s.width_mm - rc, s.width_mm),
                                      (s.length_mm - rc, s.length_mm))):
            ca = max(0, int(math.floor(xr[0] / pix)) - origin[1])
            cb = min(W, int(math.ceil(xr[1] / pix)) - origin[1])
            ra = max(0, int(math.floor(yr[0] / pix)) - origin[0])
            rb = min(H, int(math.ceil(yr[1] / pix)) - origin[0])
            if ca >= cb or ra >= rb:
                continue
            xm = (origin[1] + np.arange(ca, cb) + 0.5)[None, :] * pix
            ym = (origin[0] + np.arange(ra, rb) + 0.5)[:, None] * pix
            dx, dy = xm - cx_mm, ym - cy_mm
            # only the quadrant beyond the corner centre is round; elsewhere the straight edges rule
            qx = np.where((dx > 0) == (cx_mm > s.width_mm / 2), dx, 0.0)
            qy = np.where((dy > 0) == (cy_mm > s.length_mm / 2), dy, 0.0)
            d_in = rc - np.hypot(qx, qy)
            theta = np.arctan2(qy, qx)
            cover = np.clip(d_in / pix + 0.5, 0.0, 1.0)
            tex = np.ones_like(d_in)
            for amp, kx, phx, ky, phy in s.haze_modes:
                tex = tex + amp * np.cos(2 * math.pi * kx * xm / s.width_mm + phx) * np.cos(
                    2 * math.pi * ky * ym / s.length_mm + phy)
            prof = self._edge_profile(d_in)
            basis = np.stack([prof, prof * np.cos(theta), prof * np.sin(theta),
                              prof * np.cos(2 * theta), prof * np.sin(2 * theta)])
            out.append(_Corner(slice(ra, rb), slice(ca, cb), tex * cover,
                               basis.astype(np.float32), u[None, ca:cb], v[ra:rb, None],
                               vy[ra:rb, None] * vx[None, ca:cb]))
        return out

    def _raster(self, d: Defect) -> _Raster:
        r = self._rasters.get(d.id)
        if r is None:
            if isinstance(d, CurveDefect):
                r = _splat_curve(d, self.pix, facets=isinstance(d, Scratch))
            else:
                assert isinstance(d, BlobDefect)
                r = _blob_raster(d, self.pix, self.cfg.psf_sigma_px)
            self._rasters[d.id] = r
        return r

    def _build_defects(self, roi: _RoiCache) -> None:
        pix, W, H = self.pix, self.width, self.height
        r0, c0 = roi.origin
        margin = 50.0 * pix
        x_lo, x_hi = c0 * pix - margin, (c0 + W) * pix + margin
        y_lo, y_hi = r0 * pix - margin, (r0 + H) * pix + margin
        dir_idx, dir_vals, mask_parts = [], [], []
        iso_idx, iso_vals, iso_col, iso_fac = [], [], [], []
        for d in self.sample.defects:
            bx0, by0, bx1, by1 = d.bbox_mm()
            if bx1 < x_lo or bx0 > x_hi or by1 < y_lo or by0 > y_hi:
                continue
            ras = self._raster(d)
            rr, cc = ras.rows - r0, ras.cols - c0
            sel = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
            if not sel.any():
                continue
            rr, cc, vals = rr[sel], cc[sel], ras.vals[sel]
            flat = rr * W + cc
            info = d.to_dict()
            info["geometry"]["roi_box_px"] = [int(rr.min()), int(cc.min()), int(rr.max()) + 1,
                                              int(cc.max()) + 1]
            roi.visible.append(info)
            if isinstance(d, Scratch):
                illum = self._facet_illumination(roi.u[cc], roi.v[rr])
                dir_idx.append(flat)
                dir_vals.append((vals[:, :N_FACETS] * illum).astype(np.float32))
                mask_parts.append(flat[vals[:, N_FACETS] >= 0.5])
            else:
                # isotropic: the light field is sampled at the defect centre (defects are small)
                cx = min(max(d.centre_mm()[0] / pix - c0, 0), W - 1)
                cy = min(max(d.centre_mm()[1] / pix - r0, 0), H - 1)
                fac = d.facet_vector() if isinstance(d, BlobDefect) else 0.5 * np.asarray(
                    d.facet_gain)
                illum = self._facet_illumination(roi.u[[int(cx)]], roi.v[[int(cy)]])[0]
                iso_idx.append(flat)
                iso_vals.append(vals[:, 0])
                iso_col.append(np.full(len(flat), len(iso_fac)))
                iso_fac.append(fac * illum)
        parts = dir_idx + iso_idx
        if not parts:
            return
        u_all = np.unique(np.concatenate(parts))
        roi.u_idx = u_all
        rows, cols = u_all // W, u_all % W
        roi.pix_factor = (roi.vy[rows] * roi.vx[cols] * self._cfa[rows % 2, cols % 2]).astype(
            np.float32)
        if dir_idx:
            flat = np.concatenate(dir_idx)
            vals = np.concatenate(dir_vals)
            ud, inv = np.unique(flat, return_inverse=True)
            acc = np.empty((len(ud), N_FACETS), np.float32)
            for f in range(N_FACETS):
                acc[:, f] = np.bincount(inv, weights=vals[:, f], minlength=len(ud))
            roi.dir_pos = np.searchsorted(u_all, ud)
            roi.dir_vals = acc
            roi.mask_idx = np.unique(np.concatenate(mask_parts))
        if iso_idx:
            flat = np.concatenate(iso_idx)
            ui, inv = np.unique(flat, return_inverse=True)
            roi.iso_pos = np.searchsorted(u_all, ui)
            roi.iso_mat = sp.csr_matrix(
                (np.concatenate(iso_vals).astype(np.float32), (inv, np.concatenate(iso_col))),
                shape=(len(ui), len(iso_fac)))
            roi.iso_facets = np.asarray(iso_fac)

    # -- rendering -------------------------------------------------------------------------
    def _background_factors(self, roi: _RoiCache, lv: np.ndarray,
                            scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row factors (H, K) and column factors (K, W) with background = rows @ cols."""
        s, c = self.sample, self.cfg
        C = self._illum_coeffs(lv)
        vpow = [np.ones_like(roi.v), roi.v, roi.v * roi.v]
        upow = [np.ones_like(roi.u), roi.u, roi.u * roi.u]
        rows, cols = [], []
        haze = s.haze_dn * scale
        for i in range(3):
            cu = C[i, 0] * upow[0] + C[i, 1] * upow[1] + C[i, 2] * upow[2]
            for hx, hy in zip(roi.haze_x, roi.haze_y, strict=True):
                rows.append(roi.vy * roi.gy * vpow[i] * hy * haze)
                cols.append(roi.vx * roi.gx * hx * cu)
        gw = _glare_weights(lv * self.facet_balance) * scale
        th = {"left": math.pi, "right": 0.0, "top": -math.pi / 2, "bottom": math.pi / 2}
        rows.append(roi.vy * roi.gy)
        cols.append(roi.vx * sum(_glare_strength(gw, th[e]) * roi.glare_x[e] for e in roi.glare_x))
        rows.append(roi.vy * sum(_glare_strength(gw, th[e]) * roi.glare_y[e] for e in roi.glare_y))
        cols.append(roi.vx * roi.gx)
        rows.append(roi.vy)
        cols.append(roi.vx * (c.stray_dn * 0.5 * (lv * self.facet_balance).sum() * scale))
        a = np.ascontiguousarray(np.stack(rows, axis=1), dtype=np.float32)
        b = np.ascontiguousarray(np.stack(cols, axis=0), dtype=np.float32)
        return a, b, gw

    def _corner_values(self, roi: _RoiCache, lv: np.ndarray, scale: float,
                       gw: np.ndarray) -> list[tuple[_Corner, np.ndarray]]:
        C = self._illum_coeffs(lv)
        out = []
        for cn in roi.corners:
            illum = sum(C[i, j] * cn.v**i * cn.u**j for i in range(3) for j in range(3) if C[i, j])
            stray = self.cfg.stray_dn * 0.5 * (lv * self.facet_balance).sum() * scale
            glare = np.einsum("k,kij->ij", gw.astype(np.float32), cn.glare)
            val = cn.vig * (illum * cn.haze * (self.sample.haze_dn * scale) + glare + stray)
            out.append((cn, val.astype(np.float32)))
        return out

    def _render_background(self, roi: _RoiCache, lv: np.ndarray, scale: float, key: list[int],
                           out: np.ndarray) -> None:
        a, b, gw = self._background_factors(roi, lv, scale)
        corners = self._corner_values(roi, lv, scale, gw)
        c = self.cfg
        H, W = self.height, self.width
        gain, read2 = np.float32(c.shot_gain_dn_per_e), np.float32(c.read_noise_dn**2)
        black = np.float32(c.black_level_dn + 0.5)  # + 0.5: truncation below rounds
        top = np.float32(c.full_scale_dn)
        cfa = self._cfa_rows

        def strip(i: int) -> None:
            r0 = i * STRIP_ROWS
            r1 = min(H, r0 + STRIP_ROWS)
            n = r1 - r0
            s = np.einsum("ik,kj->ij", a[r0:r1], b)
            for cn, val in corners:
                lo, hi = max(r0, cn.rows.start), min(r1, cn.rows.stop)
                if lo < hi:
                    s[lo - r0:hi - r0, cn.cols] = val[lo - cn.rows.start:hi - cn.rows.start]
            s.reshape(n // 2, 2, W)[...] *= cfa
            sd = s * gain
            sd += read2
            np.sqrt(sd, out=sd)
            sd *= np.float32(1.0 / _IH4_SD)
            bits = np.random.SFC64(np.random.SeedSequence([*key, i]))
            r = bits.random_raw(n * W // 2).view(np.int8).reshape(4, n, W)
            nz = np.add(r[0], r[1], dtype=np.float32)
            nz += r[2]
            nz += r[3]
            nz -= np.float32(_IH4_MEAN)
            nz *= sd
            s += nz
            s += black
            np.clip(s, 0, top, out=s)
            np.copyto(out[r0:r1], s, casting="unsafe")

        n_strips = (H + STRIP_ROWS - 1) // STRIP_ROWS
        if self.cfg.threads > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.cfg.threads)
            list(self._pool.map(strip, range(n_strips)))
        else:
            for i in range(n_strips):
                strip(i)

    def _add_defects(self, roi: _RoiCache, lv: np.ndarray, scale: float, key: list[int],
                     out: np.ndarray) -> None:
        if not len(roi.u_idx):
            return
        sig = np.zeros(len(roi.u_idx), np.float32)
        if len(roi.dir_pos):
            sig[roi.dir_pos] += np.einsum("ij,j->i", roi.dir_vals, lv.astype(np.float32))
        if roi.iso_mat is not None:
            sig[roi.iso_pos] += roi.iso_mat @ (roi.iso_facets @ lv).astype(np.float32)
        sig *= roi.pix_factor * np.float32(scale)
        rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence([*key, 1 << 30])))
        noise = rng.standard_normal(len(sig), dtype=np.float32)
        noise *= np.sqrt(sig * np.float32(self.cfg.shot_gain_dn_per_e))
        flat = out.reshape(-1)
        val = flat[roi.u_idx].astype(np.float32)
        val += sig
        val += noise
        val += np.float32(0.5)
        np.clip(val, 0, self.cfg.full_scale_dn, out=val)
        flat[roi.u_idx] = val.astype(np.uint16)


# -- convenience -------------------------------------------------------------------------------
_RENDERERS: OrderedDict[tuple, DarkFieldRenderer] = OrderedDict()


def get_renderer(sample: Sample, sensor: tuple[int, int] = DEFAULT_SENSOR,
                 pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM,
                 config: OpticsConfig | None = None) -> DarkFieldRenderer:
    """A cached renderer for (sample, sensor, pixel size, config): keeps its RoI caches warm."""
    key = (id(sample), tuple(sensor), float(pixel_size_mm), config or OpticsConfig())
    r = _RENDERERS.get(key)
    if r is None or r.sample is not sample:
        r = DarkFieldRenderer(sample, sensor, pixel_size_mm, config)
        _RENDERERS[key] = r
        while len(_RENDERERS) > 2:
            _RENDERERS.popitem(last=False)[1].close()
    return r


def render_frame(sample: Sample, origin_px: tuple[int, int],
                 sensor: tuple[int, int] = DEFAULT_SENSOR,
                 pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM, state: int | None = None,
                 levels: np.ndarray | None = None, *, frame_counter: int = 0,
                 exposure_us: float | None = None, config: OpticsConfig | None = None) -> np.ndarray:
    """One RAW frame (H, W) uint16; see `DarkFieldRenderer.render`."""
    return get_renderer(sample, sensor, pixel_size_mm, config).render(
        origin_px, state, levels, frame_counter=frame_counter, exposure_us=exposure_us)


def render_stack(sample: Sample, origin_px: tuple[int, int],
                 sensor: tuple[int, int] = DEFAULT_SENSOR,
                 pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM, *, frame_counter: int = 0,
                 exposure_us: float | None = None, config: OpticsConfig | None = None) -> np.ndarray:
    """The RoI's 6 states (6, H, W) uint16; see `DarkFieldRenderer.render_stack`."""
    return get_renderer(sample, sensor, pixel_size_mm, config).render_stack(
        origin_px, frame_counter=frame_counter, exposure_us=exposure_us)


def roi_truth(sample: Sample, origin_px: tuple[int, int],
              sensor: tuple[int, int] = DEFAULT_SENSOR,
              pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM,
              config: OpticsConfig | None = None) -> RoiTruth:
    return get_renderer(sample, sensor, pixel_size_mm, config).truth(origin_px)
