"""Reference targets the simulated bench offers for calibration.

Both are `Sample`s, so the renderer shows them through the same optics as a cover glass:

* `diffuser_plate`: a flat, uniform scatterer (opal glass) much larger than the field, with no
  defects, no haze texture and no edge glare. Under one lit facet pair a frame of it is
  black + exposure x vignetting x CFA x (illumination gradient of the pair x facet balance),
  which is exactly the gain map a flat field must remove.
* `fiducial_plate`: a dark plate with a random pattern of small bright dots (a speckle target).
  The dots are isotropic scatterers that never saturate, so a frame of them can be
  phase-correlated with one taken at another stage position to sub-pixel precision.
"""

from __future__ import annotations

import math

import numpy as np

from rig.geometry import DEFAULT_PIXEL_SIZE_MM
from world.sample import N_FACETS, Dust, Sample

DIFFUSER_LEVEL_DN = 900.0
"""Diffuser brightness per lit facet pair at nominal exposure (green ~1800 DN at the centre)."""
DIFFUSER_SIZE_MM = (150.0, 150.0)
FIDUCIAL_SIZE_MM = (150.0, 150.0)
FIDUCIAL_DOTS_PER_FIELD = 150
"""Dots a frame sees: enough texture for correlation, sparse enough to stay dark-field."""
FIDUCIAL_DOT_DIAMETER_PX = (3.0, 7.0)
FIDUCIAL_DOT_DN = (600.0, 1600.0)
FIDUCIAL_PATTERN_SCALE = 2.2
"""The dotted area spans this many fields around the plate centre (room for stage offsets)."""


def diffuser_plate(size_mm: tuple[float, float] = DIFFUSER_SIZE_MM,
                   level_dn: float = DIFFUSER_LEVEL_DN) -> Sample:
    """A uniform reference diffuser; its centre is at `plate_centre_mm`."""
    return Sample(seed=0, sample_id="REFERENCE-DIFFUSER", width_mm=size_mm[0],
                  length_mm=size_mm[1], corner_radius_mm=0.0, haze_dn=float(level_dn),
                  haze_modes=(), glare_scale=0.0, defects=())


def fiducial_plate(field_mm: tuple[float, float], seed: int = 0,
                   size_mm: tuple[float, float] = FIDUCIAL_SIZE_MM,
                   pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM,
                   dots_per_field: int = FIDUCIAL_DOTS_PER_FIELD,
                   pattern_scale: float = FIDUCIAL_PATTERN_SCALE) -> Sample:
    """A random-dot target for a camera whose field is `field_mm` (w, h) wide.

    The dots cover `pattern_scale` fields around the plate centre at a density of
    `dots_per_field` per field; sizes are given in (nominal) pixels so the pattern suits the
    camera it is made for, as a real target is chosen for its optics.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF1D0]))
    fw, fh = field_mm
    pw, ph = fw * pattern_scale, fh * pattern_scale
    cx, cy = size_mm[0] / 2, size_mm[1] / 2
    n = int(round(dots_per_field * pattern_scale**2))
    xs = rng.uniform(cx - pw / 2, cx + pw / 2, n)
    ys = rng.uniform(cy - ph / 2, cy + ph / 2, n)
    lo, hi = FIDUCIAL_DOT_DIAMETER_PX
    radii = 0.5 * np.exp(rng.uniform(math.log(lo), math.log(hi), n)) * pixel_size_mm
    amps = rng.uniform(*FIDUCIAL_DOT_DN, n)
    dots = tuple(Dust(id=i, amplitude_dn=float(amps[i]), centre=(float(xs[i]), float(ys[i])),
                      radius_mm=float(radii[i]), harmonics=(), facet_gain=(1.0,) * N_FACETS,
                      dome=0.3) for i in range(n))
    return Sample(seed=int(seed), sample_id="REFERENCE-FIDUCIAL", width_mm=size_mm[0],
                  length_mm=size_mm[1], corner_radius_mm=0.0, haze_dn=0.0, haze_modes=(),
                  glare_scale=0.0, defects=dots)


def plate_centre_mm(plate: Sample) -> tuple[float, float]:
    """Sample-frame (x, y) of the plate centre: put it on the optical axis for calibration."""
    return plate.width_mm / 2, plate.length_mm / 2
