"""Tiny synthetic dark-field patches for unit tests and smoke training.

Not the station simulator (that is `world`, which renders full RoIs with the whole optics
model); this renders small patches with just enough physics for the detector to have something
to learn: a *scratch* scatters light only when lit roughly perpendicular to it (intensity under
a facet pair at azimuth phi is A * [g(phi - psi - 90) + g(phi + 180 - psi - 90)], g triangular),
a *fibre* has the same shape but scatters equally in every state, *dust* is a small isotropic
and often saturated blob, a *stain* a large faint diffuse patch; plus the odd hot pixel.
Sensor: GRBG colour filter (R, G, B = 0.6, 1.0, 0.5), black level 64, shot and read noise,
clipping at 4095. Deterministic from the generator passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

N_STATES = 6
STATE_AZIMUTHS_DEG = tuple(30.0 * k for k in range(N_STATES))
CFA_GAIN = {"R": 0.6, "G": 1.0, "B": 0.5}


@dataclass
class SynthObject:
    """One planted object. points: polyline (row, col) in patch pixels; radius for dust."""

    kind: str  # "scratch", "fibre", "dust", "stain"
    points: np.ndarray  # polyline (row, col); the centre for dust and stains
    amplitude: float  # DN at the brightest state, before the colour filter
    width_px: float = 1.5
    lobe_half_width_deg: float = 30.0
    radius_px: float = 0.0  # dust radius, stain Gaussian sigma

    @property
    def is_scratch(self) -> bool:
        return self.kind == "scratch"


@dataclass
class SensorModel:
    black_level: float = 64.0
    read_noise_dn: float = 2.5
    gain_dn_per_e: float = 0.25  # shot noise: variance = signal * gain
    white_level: int = 4095
    haze_dn: tuple[float, float] = (1.0, 6.0)
    max_hot_pixels: int = 1
    cfa_gain: dict[str, float] = field(default_factory=lambda: dict(CFA_GAIN))


def _wrap_deg(a: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(a) + 180.0) % 360.0 - 180.0


def scratch_state_gains(psi_deg: float, lobe_half_width_deg: float = 30.0) -> np.ndarray:
    """Relative brightness of a scratch with tangent azimuth psi under each of the 6 states."""
    out = np.zeros(N_STATES)
    for k, phi in enumerate(STATE_AZIMUTHS_DEG):
        for facet in (phi, phi + 180.0):
            d = abs(float(_wrap_deg(facet - psi_deg - 90.0)))
            out[k] += max(0.0, 1.0 - d / lobe_half_width_deg)
    return out / max(out.max(), 1e-9)


def _segment_distance(rr: np.ndarray, cc: np.ndarray, a: np.ndarray, b: np.ndarray
                      ) -> np.ndarray:
    ab = b - a
    L2 = float(ab @ ab) or 1e-9
    t = np.clip(((rr - a[0]) * ab[0] + (cc - a[1]) * ab[1]) / L2, 0.0, 1.0)
    return np.hypot(rr - (a[0] + t * ab[0]), cc - (a[1] + t * ab[1]))


def cfa_map(h: int, w: int, gains: dict[str, float]) -> np.ndarray:
    """Per-pixel colour-filter gain of a GRBG mosaic."""
    cell = np.array([[gains["G"], gains["R"]], [gains["B"], gains["G"]]], np.float32)
    return np.tile(cell, ((h + 1) // 2, (w + 1) // 2))[:h, :w]


def render(shape: tuple[int, int], objects: list[SynthObject], rng: np.random.Generator,
           sensor: SensorModel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> (stack (6, H, W) uint16 RAW, scratch mask (H, W) uint8)."""
    sensor = sensor or SensorModel()
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    signal = np.zeros((N_STATES, h, w), np.float32)
    # background: haze with a slow gradient that differs per state
    for k in range(N_STATES):
        level = rng.uniform(*sensor.haze_dn)
        gy, gx = rng.normal(0, 0.5, 2) / max(h, w)
        signal[k] += level * (1.0 + gy * (rr - h / 2) + gx * (cc - w / 2))
    mask = np.zeros((h, w), np.uint8)
    for obj in objects:
        if obj.kind in ("dust", "stain"):
            c = obj.points[0]
            d = np.hypot(rr - c[0], cc - c[1])
            if obj.kind == "dust":
                prof = np.clip(obj.radius_px + 0.5 - d, 0.0, 1.0)
                gains = 1.0 + rng.uniform(-0.05, 0.05, N_STATES)
            else:  # large, diffuse, weakly modulated
                prof = np.exp(-0.5 * (d / obj.radius_px) ** 2)
                gains = 1.0 + rng.uniform(-0.15, 0.15, N_STATES)
            signal += obj.amplitude * gains[:, None, None] * prof[None]
            continue
        sigma = obj.width_px / 2.355
        for a, b in zip(obj.points[:-1], obj.points[1:], strict=True):
            d = _segment_distance(rr, cc, a, b)
            prof = np.exp(-0.5 * (d / sigma) ** 2)
            if obj.is_scratch:
                psi = math.degrees(math.atan2(b[0] - a[0], b[1] - a[1]))
                gains = scratch_state_gains(psi, obj.lobe_half_width_deg)
                mask |= (d <= max(0.75, obj.width_px / 2)).astype(np.uint8)
            else:  # fibre: isotropic
                gains = 1.0 + rng.uniform(-0.05, 0.05, N_STATES)
            signal = np.maximum(signal, obj.amplitude * gains[:, None, None] * prof[None])
    signal *= cfa_map(h, w, sensor.cfa_gain)[None]
    shot = rng.normal(0.0, 1.0, signal.shape).astype(np.float32) * np.sqrt(
        np.maximum(signal, 0.0) * sensor.gain_dn_per_e)
    read = rng.normal(0.0, sensor.read_noise_dn, signal.shape).astype(np.float32)
    raw = np.rint(sensor.black_level + signal + shot + read)
    for _ in range(int(rng.integers(0, sensor.max_hot_pixels + 1))):
        raw[:, rng.integers(0, h), rng.integers(0, w)] = rng.uniform(500, sensor.white_level)
    return np.clip(raw, 0, sensor.white_level).astype(np.uint16), mask


def random_curve(rng: np.random.Generator, shape: tuple[int, int], min_len: float,
                 max_len: float, bend_deg: float = 20.0, n_seg: int = 3) -> np.ndarray:
    """A gently bent polyline fully inside the patch."""
    h, w = shape
    length = rng.uniform(min_len, max_len)
    ang = rng.uniform(0, 2 * math.pi)
    seg = length / n_seg
    for _ in range(50):
        p = np.array([rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)])
        pts, a = [p], ang
        for _ in range(n_seg):
            a += math.radians(rng.uniform(-bend_deg, bend_deg))
            p = p + seg * np.array([math.sin(a), math.cos(a)])
            pts.append(p)
        pts_arr = np.array(pts)
        if (pts_arr.min(axis=0) >= 2).all() and (pts_arr[:, 0] < h - 2).all() and \
                (pts_arr[:, 1] < w - 2).all():
            return pts_arr
        ang = rng.uniform(0, 2 * math.pi)
    return pts_arr


def random_objects(rng: np.random.Generator, shape: tuple[int, int], p_scratch: float = 0.5,
                   p_fibre: float = 0.5, max_dust: int = 3, p_stain: float = 0.3
                   ) -> list[SynthObject]:
    h, w = shape
    objs: list[SynthObject] = []
    if rng.random() < p_scratch:
        objs.append(SynthObject("scratch", random_curve(rng, shape, 0.3 * min(h, w),
                                                        0.8 * min(h, w)),
                                amplitude=rng.uniform(150, 1500), width_px=rng.uniform(1.0, 3.0),
                                lobe_half_width_deg=rng.uniform(15, 40)))
    if rng.random() < p_fibre:
        objs.append(SynthObject("fibre", random_curve(rng, shape, 0.3 * min(h, w),
                                                      0.8 * min(h, w), bend_deg=35),
                                amplitude=rng.uniform(150, 1500), width_px=rng.uniform(1.0, 3.0)))
    for _ in range(int(rng.integers(0, max_dust + 1))):
        objs.append(SynthObject("dust", np.array([[rng.uniform(0, h), rng.uniform(0, w)]]),
                                amplitude=rng.uniform(300, 5000), radius_px=rng.uniform(0.5, 5)))
    if rng.random() < p_stain:
        objs.append(SynthObject("stain", np.array([[rng.uniform(0, h), rng.uniform(0, w)]]),
                                amplitude=rng.uniform(20, 200),
                                radius_px=rng.uniform(0.1, 0.6) * min(h, w)))
    return objs


def random_patch(rng: np.random.Generator, shape: tuple[int, int] = (128, 128),
                 **kw: float) -> tuple[np.ndarray, np.ndarray, list[SynthObject]]:
    """One training patch: (stack uint16 (6, H, W), scratch mask uint8, planted objects)."""
    objs = random_objects(rng, shape, **kw)
    stack, mask = render(shape, objs, rng)
    return stack, mask, objs


def synthetic_output_map(rng: np.random.Generator, shape: tuple[int, int] = (1560, 1752),
                         n_scratches: int = 3, n_faint: int = 2, n_speckles: int = 200,
                         n_contaminants: int = 20, noise: float = 0.03
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
    """A network-output-like map y at map resolution (default: one 3504 x 3120 RoI), for
    post-processing tests and benchmarks: strong scratches (+, peak >= 0.8, with breaks), faint
    scratch-like streaks that never reach T_high, isolated false-positive speckles, negative
    contaminant blobs and low background noise. Returns (y, polylines of the strong scratches).
    """
    h, w = shape
    y = rng.normal(0.0, noise, shape).astype(np.float32)
    lines = []

    def draw(pts: np.ndarray, peak: float, width: float, breaks: bool) -> None:
        lo = np.floor(pts.min(axis=0) - 4).astype(int).clip(0)
        hi = np.ceil(pts.max(axis=0) + 5).astype(int)
        hi = np.minimum(hi, (h, w))
        rr, cc = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]].astype(np.float32)
        d = np.full(rr.shape, np.inf, np.float32)
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            d = np.minimum(d, _segment_distance(rr, cc, a, b))
        along = np.cos((rr + cc) / rng.uniform(8, 30)) * 0.15  # amplitude varies along it
        val = (peak + along) * np.exp(-0.5 * (d / (width / 2.355)) ** 2)
        if breaks:
            gap = np.sin((rr * 0.7 + cc * 0.3) / 9.0) > 0.93
            val[gap] = 0.0
        sub = y[lo[0]:hi[0], lo[1]:hi[1]]
        np.maximum(sub, val, out=sub)

    for _ in range(n_scratches):
        pts = random_curve(rng, shape, 0.05 * min(h, w), 0.6 * min(h, w))
        draw(pts, rng.uniform(0.85, 1.0), rng.uniform(1.5, 3.0), breaks=True)
        lines.append(pts)
    for _ in range(n_faint):
        draw(random_curve(rng, shape, 20, 0.3 * min(h, w)), rng.uniform(0.3, 0.55), 2.0, False)
    r = rng.integers(0, h, n_speckles)
    c = rng.integers(0, w, n_speckles)
    y[r, c] = rng.uniform(0.25, 0.7, n_speckles)
    for _ in range(n_contaminants):
        cy, cx, rad = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 15)
        r0, r1 = int(max(0, cy - rad - 2)), int(min(h, cy + rad + 3))
        c0, c1 = int(max(0, cx - rad - 2)), int(min(w, cx + rad + 3))
        rr, cc = np.mgrid[r0:r1, c0:c1]
        blob = -rng.uniform(0.4, 1.0) * np.clip(rad + 0.5 - np.hypot(rr - cy, cc - cx), 0, 1)
        y[r0:r1, c0:c1] = np.minimum(y[r0:r1, c0:c1], blob)
    return np.clip(y, -1.0, 1.0), lines


def training_batch(rng: np.random.Generator,
                   patches: list[tuple[np.ndarray, np.ndarray, list[SynthObject]]],
                   batch_size: int, noise_sigma: float = 0.0):
    """A batch for the auto-encoder loss from rendered patches, with Bayer-preserving flips /
    rotations: (x (N, 24, h, w), max_intensity (N, 1, h, w), scratch (N, 1, h, w))."""
    import torch

    from inference.preprocess import (
        add_noise,
        max_over_states,
        normalize_raw,
        pool_truth,
        random_bayer_augment,
        space_to_depth,
    )

    raws, masks = [], []
    for i in rng.integers(0, len(patches), batch_size):
        stack, mask, _ = patches[int(i)]
        stack, mask = random_bayer_augment(rng, stack, mask)
        raws.append(stack)
        masks.append(mask)
    raw = normalize_raw(np.stack(raws))
    if noise_sigma > 0:
        raw = torch.from_numpy(add_noise(rng, raw.numpy(), noise_sigma))
    return (space_to_depth(raw), max_over_states(raw),
            pool_truth(np.stack(masks)).unsqueeze(1))
