"""Mechanical and optical imperfections of the simulated bench, for calibration to recover.

The station config holds *nominal* values (pixel size, square stage); a real station is a little
off. The simulated bench keeps the *true* values here, and the simulated camera renders with
them, so `calibration` has something real to measure:

* the stage axes are rotated by `stage_rotation_deg` relative to the sensor axes (angle of the
  stage's +x travel in the sensor frame, from the column axis towards the row axis, like the
  facet azimuths). The glass nest is modelled as aligned to the camera, so a stage move along
  +x also moves the image along the rows: an uncalibrated RoI grid drifts sideways;
* the sample-plane pixel pitch is `nominal * (1 + pixel_size_error)` (lens magnification and
  working-distance tolerance), so a stage move of d mm shifts the image by d / true pitch px.

The per-facet brightness differences of the ring light already live in
`world.optics.OpticsConfig.facet_balance_sd`.

Why only the stage mapping carries the rotation: the renderer draws axis-aligned frames in the
sample pixel frame (that is what makes it fast), so a rotated *image* cannot be rendered; a
rotated *stage travel* is exactly what stage/camera registration measures, and it is what makes
an uncalibrated RoI grid land in the wrong place.

Sub-pixel frame positions are rendered by translating the sample by the fractional part (see
`translate_sample`), so registration can be accurate to a small fraction of a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from world.sample import BlobDefect, CurveDefect, Defect, Sample

DEFAULT_STAGE_ROTATION_DEG = 0.3
"""Stage travel vs sensor axes: a typical mounting error of a camera bracket (fraction of a deg)."""
DEFAULT_PIXEL_SIZE_ERROR = 0.004
"""True pixel pitch / nominal - 1: +0.4 %, a typical magnification tolerance of a fixed lens."""
SUBPIXEL_STEP_PX = 1.0 / 32.0
"""Fractional frame positions are rendered to this step (1/64 px worst-case error)."""


@dataclass(frozen=True)
class BenchImperfections:
    """True geometry of the simulated bench (config values are nominal)."""

    stage_rotation_deg: float = DEFAULT_STAGE_ROTATION_DEG
    pixel_size_error: float = DEFAULT_PIXEL_SIZE_ERROR

    def pixel_size_mm(self, nominal_mm: float) -> float:
        """True sample-plane pixel pitch for a nominal one."""
        return float(nominal_mm) * (1.0 + self.pixel_size_error)

    def frame_origin(self, stage_xy_mm: tuple[float, float], shape: tuple[int, int],
                     sample_origin_mm: tuple[float, float],
                     nominal_pixel_size_mm: float) -> tuple[float, float]:
        """(row, col) of the frame's top-left in the *true* sample pixel frame, fractional.

        `sample_origin_mm` is the stage position that puts the sample corner on the optical
        axis (the rotation pivots there, so that position stays exact); a stage displacement d
        moves the sample under the camera by R(rotation) d.
        """
        dx = stage_xy_mm[0] - sample_origin_mm[0]
        dy = stage_xy_mm[1] - sample_origin_mm[1]
        t = math.radians(self.stage_rotation_deg)
        cx = math.cos(t) * dx - math.sin(t) * dy
        cy = math.sin(t) * dx + math.cos(t) * dy
        pix = self.pixel_size_mm(nominal_pixel_size_mm)
        h, w = shape
        return cy / pix - h / 2, cx / pix - w / 2


IDEAL = BenchImperfections(0.0, 0.0)


def split_origin(origin: tuple[float, float]) -> tuple[tuple[int, int], tuple[float, float]]:
    """Fractional origin -> (even integer origin, sub-pixel remainder in [-1, 1), quantised)."""
    whole, frac = [], []
    for v in origin:
        even = int(2 * round(v / 2))
        rest = round((v - even) / SUBPIXEL_STEP_PX) * SUBPIXEL_STEP_PX
        if rest >= 1.0:  # rounding can reach the next even origin
            even, rest = even + 2, rest - 2.0
        whole.append(even)
        frac.append(float(rest))
    return (whole[0], whole[1]), (frac[0], frac[1])


def _move_defect(d: Defect, dx: float, dy: float) -> Defect:
    if isinstance(d, CurveDefect):
        pts = tuple((x + dx, y + dy) for x, y in d.points_mm)
        cx, cy, r, a0, sweep = d.arc
        return replace(d, points_mm=pts, arc=(cx + dx, cy + dy, r, a0, sweep))
    if isinstance(d, BlobDefect):
        return replace(d, centre=(d.centre[0] + dx, d.centre[1] + dy))
    raise TypeError(f"cannot translate a {type(d).__name__}")


def translate_sample(sample: Sample, dx_mm: float, dy_mm: float) -> Sample:
    """The same glass moved by (dx, dy) mm in the sample frame: defects and haze texture.

    The outline stays where it is (the renderer puts it at the frame origin); moves here are
    sub-pixel, so the border is off by less than a pixel.
    """
    if dx_mm == 0 and dy_mm == 0:
        return sample
    modes = tuple((amp, kx, phx - 2 * math.pi * kx * dx_mm / sample.width_mm,
                   ky, phy - 2 * math.pi * ky * dy_mm / sample.length_mm)
                  for amp, kx, phx, ky, phy in sample.haze_modes)
    return replace(sample, haze_modes=modes,
                   defects=tuple(_move_defect(d, dx_mm, dy_mm) for d in sample.defects))
