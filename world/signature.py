"""The physical signature of defects, measured on rendered frames (not on the model's inputs).

Seed paper 004, section 3 / Fig. 3: a scratch's scattered intensity swings strongly with the
illumination azimuth and peaks when it is lit perpendicular to its direction; dust, stains and
fibres stay nearly flat. This module measures that from RAW stacks the way one would on the
bench: per defect, sum the background-subtracted signal over its footprint for each state, and
compare states. Used by the signature tests and docs/plot_signature.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from world.optics import N_STATES, DarkFieldRenderer


@dataclass
class DefectSignature:
    id: int
    kind: str
    intensities: np.ndarray  # (6,) background-subtracted sum over the footprint, DN (2x2 mean)
    noise: float  # standard deviation of one such sum from the local background
    n_cells: int  # footprint size in 2x2 Bayer cells
    saturated: float  # fraction of footprint pixels clipped at full scale in the brightest state
    direction_deg: float | None  # straight scratches: azimuth of the line (mod 180)
    profile: str | None = None  # scratches: "triangular" or "rugged"

    @property
    def modulation(self) -> float:
        """max / min over the states (inf when the dimmest state shows nothing)."""
        lo = float(self.intensities.min())
        return math.inf if lo <= 0 else float(self.intensities.max()) / lo

    @property
    def snr(self) -> float:
        return float(self.intensities.max()) / max(self.noise, 1e-9)

    @property
    def peak_state(self) -> int:
        return int(np.argmax(self.intensities))


def bayer_luma(stack: np.ndarray, black_level: float) -> np.ndarray:
    """(n, H/2, W/2) mean of each 2x2 GRBG cell above black: every cell has the same CFA mix."""
    n, h, w = stack.shape
    f = stack.astype(np.float32).reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return f - np.float32(black_level)


def straight_direction(defect: dict) -> float | None:
    g = defect["geometry"]
    if defect["kind"] != "scratch" or g.get("shape") != "straight":
        return None
    (x0, y0), (x1, y1) = g["points_mm"]
    return math.degrees(math.atan2(y1 - y0, x1 - x0)) % 180.0


def measure_signatures(renderer: DarkFieldRenderer, origin_px: tuple[int, int],
                       stack: np.ndarray | None = None, *, states: Sequence[int] | None = None,
                       level: float = 0.5, min_cells: int = 3,
                       max_overlap: float = 0.3) -> list[DefectSignature]:
    """Per-state intensity of every defect the RoI sees, measured on the rendered stack.

    Footprints come from the renderer (`level` 0.5: curves within their FWHM, blobs above half
    their peak; lower levels take in more of the blur, for sums that hardly depend on sampling);
    pixels shared with another defect or a hot pixel are left out, and defects losing more than
    `max_overlap` of their footprint that way are skipped. The background of each state is the
    median of a ring of cells around the footprint. `states` renders only those states (the
    intensities then follow that order).
    """
    if stack is None:
        stack = renderer.render_stack(origin_px) if states is None else np.stack(
            [renderer.render(origin_px, k, frame_counter=k) for k in states])
    H, W = renderer.height, renderer.width
    h2, w2 = H // 2, W // 2
    luma = bayer_luma(stack, renderer.cfg.black_level_dn)
    full = renderer.cfg.full_scale_dn
    defects = renderer.visible_defects(origin_px)

    def cells(flat: np.ndarray) -> np.ndarray:
        return np.unique((flat // W) // 2 * w2 + (flat % W) // 2)

    touch = {d["id"]: cells(renderer.footprint(d["id"], origin_px, level=0.02)) for d in defects}
    hot = cells(renderer.hot_pixels)
    out = []
    for d in defects:
        own = cells(renderer.footprint(d["id"], origin_px, level=level))
        if len(own) < min_cells:
            continue
        others = [touch[o["id"]] for o in defects if o["id"] != d["id"]]
        blocked = np.unique(np.concatenate([hot, *others])) if others else hot
        keep = own[~np.isin(own, blocked)]
        if len(keep) < min_cells or len(keep) < (1 - max_overlap) * len(own):
            continue
        r, c = keep // w2, keep % w2
        m = 12 + int(math.sqrt(len(keep)) / 4)
        r0, r1 = max(r.min() - m, 0), min(r.max() + m + 1, h2)
        c0, c1 = max(c.min() - m, 0), min(c.max() + m + 1, w2)
        local = np.zeros((r1 - r0, c1 - c0), bool)
        local[r - r0, c - c0] = True
        excl = np.zeros_like(local)
        for arr in (touch[d["id"]], blocked):
            rr, cc = arr // w2 - r0, arr % w2 - c0
            ok = (rr >= 0) & (rr < local.shape[0]) & (cc >= 0) & (cc < local.shape[1])
            excl[rr[ok], cc[ok]] = True
        ring = ndi.binary_dilation(local | excl, iterations=m) & ~ndi.binary_dilation(
            local | excl, iterations=3)
        if ring.sum() < 16:
            continue
        crop = luma[:, r0:r1, c0:c1]
        bg = np.median(crop[:, ring], axis=1)
        sig = (crop[:, local] - bg[:, None]).sum(axis=1)
        mad = np.median(np.abs(crop[:, ring] - bg[:, None]), axis=1).max() * 1.4826
        raw_px = stack[:, (r[:, None] * 2 + np.array([0, 1]))[:, :, None],
                       (c[:, None] * 2 + np.array([0, 1]))[:, None, :]]
        best = int(np.argmax(sig))
        sat = float((raw_px[best] >= full).mean())
        out.append(DefectSignature(d["id"], d["kind"], sig, float(mad * math.sqrt(len(keep))),
                                   len(keep), sat, straight_direction(d),
                                   d["geometry"].get("params", {}).get("profile")))
    return out


def perpendicular_error_deg(sig: DefectSignature) -> float | None:
    """How far the brightest state's azimuth is from perpendicular to a straight scratch."""
    if sig.direction_deg is None:
        return None
    phi = 30.0 * sig.peak_state
    return abs((phi - sig.direction_deg) % 180.0 - 90.0)


__all__ = ["N_STATES", "DefectSignature", "bayer_luma", "measure_signatures",
           "perpendicular_error_deg", "straight_direction"]
