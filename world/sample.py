"""A virtual cover glass: its outline and its defects, in sample millimetres.

Everything is drawn deterministically from one integer seed and a `DefectMix`, so a sample can
be regenerated anywhere from (seed, mix) alone, and every defect serialises to a plain dict for
the recording's truth table (and back, `defect_from_dict`).

Photometry lives here too, but only as *what the defect is* (peak level in DN of a lit facet
pair at nominal exposure, angular response per facet); how the camera sees it (illumination
field, vignetting, colour filters, noise) is `world.optics`.

Angular model (docs/simulated-optics.md; seed paper 004 section 3 / Fig. 3): a scratch point with
tangent azimuth psi lit by a facet at azimuth phi scatters A * g(phi - psi - 90 deg). g is a sum
of Gaussian lobes (FWHM 15-40 deg) plus a small isotropic floor: "triangular" scratches have one
lobe on each side (0 and 180 deg, so the pair perpendicular to the scratch lights it), "rugged"
ones have extra lobes. Contaminants respond almost equally to every facet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from rig.geometry import DEFAULT_PIXEL_SIZE_MM, signed_inside_mm

N_FACETS = 12
FACET_AZIMUTHS_DEG = 30.0 * np.arange(N_FACETS)
"""Facet f sits at azimuth 30 f deg (sample frame, from +x towards +y); state k lights k, k+6."""

DEFAULT_WIDTH_MM = 72.0
DEFAULT_LENGTH_MM = 150.0
DEFAULT_CORNER_RADIUS_MM = 6.0

KINDS = ("scratch", "dust", "stain", "fibre")


# -- settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DefectMix:
    """How many defects of which kind, and the ranges their parameters are drawn from.

    Sizes given in px refer to `pixel_size_mm` (the nominal sample-plane pitch) and are stored
    in mm on the defects. Counts are Poisson means per whole sample (150 x 72 mm, 10 RoIs).
    """

    scratch_fraction: float = 0.30  # P(sample has >= 1 scratch): the simulated line's default
    extra_scratches_mean: float = 0.8  # scratched samples get 1 + Poisson(this) scratches
    dust_mean: float = 40.0
    stain_mean: float = 6.0
    fibre_mean: float = 2.5

    scratch_length_mm: tuple[float, float] = (0.5, 60.0)  # log-uniform
    scratch_width_px: tuple[float, float] = (1.0, 3.0)  # FWHM after blur
    scratch_amplitude_dn: tuple[float, float] = (12.0, 8000.0)  # log-uniform: faint .. deep
    scratch_lobe_fwhm_deg: tuple[float, float] = (15.0, 40.0)
    scratch_floor: tuple[float, float] = (0.005, 0.04)  # isotropic part per facet / pair peak
    scratch_shapes: tuple[float, float, float] = (0.5, 0.25, 0.25)  # straight, arc, polyline
    rugged_fraction: float = 0.3
    break_probability: float = 0.35

    dust_diameter_px: tuple[float, float] = (1.0, 30.0)  # log-uniform
    dust_amplitude_dn: tuple[float, float] = (150.0, 30000.0)  # log-uniform: ~40 % saturate
    dust_anisotropy: float = 0.03  # sd of per-facet gain: states within ~10 %

    stain_diameter_px: tuple[float, float] = (20.0, 400.0)  # log-uniform
    stain_amplitude_dn: tuple[float, float] = (4.0, 40.0)
    stain_modulation: tuple[float, float] = (0.0, 0.08)  # cos(2 phi) depth of the response

    fibre_length_mm: tuple[float, float] = (1.0, 20.0)  # log-uniform
    fibre_width_px: tuple[float, float] = (1.5, 4.0)
    fibre_amplitude_dn: tuple[float, float] = (40.0, 2500.0)  # log-uniform
    fibre_anisotropy: float = 0.03

    edge_margin_mm: float = 1.0  # defects keep this far inside the glass outline
    pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM


# -- angular responses -------------------------------------------------------------------------
def _wrap180(deg: np.ndarray) -> np.ndarray:
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0


def lobe_response(delta_deg: np.ndarray, lobes: np.ndarray, floor: float) -> np.ndarray:
    """g(delta): isotropic floor + Gaussian lobes (offset_deg, fwhm_deg, weight) per row."""
    d = np.asarray(delta_deg, dtype=np.float64)[..., None]
    off, fwhm, w = lobes[:, 0], lobes[:, 1], lobes[:, 2]
    x = _wrap180(d - off) / fwhm
    return floor + (w * np.exp(-4.0 * math.log(2.0) * x * x)).sum(axis=-1)


def _pair_peak(lobes: np.ndarray) -> float:
    d = np.arange(0.0, 180.0, 0.25)
    return float((lobe_response(d, lobes, 0.0) + lobe_response(d + 180.0, lobes, 0.0)).max())


# -- defects -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Defect:
    """Common part of every defect: an id unique within the sample and a peak level in DN."""

    kind: ClassVar[str] = ""
    id: int
    amplitude_dn: float  # peak level of a lit facet pair at nominal exposure (before optics)

    def centre_mm(self) -> tuple[float, float]:
        raise NotImplementedError

    def length_mm(self) -> float:
        raise NotImplementedError

    def bbox_mm(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of everything the defect can light (before blur)."""
        raise NotImplementedError

    def geometry(self) -> dict[str, Any]:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        skip = {"id"} | set(self.geometry_fields)
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in skip}

    geometry_fields: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: id, kind, x_mm, y_mm (centre), length_mm, geometry (+ params)."""
        x, y = self.centre_mm()
        geo = self.geometry()
        geo["params"] = self.params()
        return {"id": int(self.id), "kind": self.kind, "x_mm": float(x), "y_mm": float(y),
                "length_mm": float(self.length_mm()), "geometry": geo}


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass(frozen=True)
class CurveDefect(Defect):
    """A thin curve (scratch or fibre): shape in sample mm, FWHM width, amplitude knots."""

    shape: str = "polyline"  # straight | arc | polyline
    points_mm: tuple[tuple[float, float], ...] = ()  # straight: 2 ends; polyline: vertices
    arc: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)  # cx, cy, r, a0, sweep
    width_mm: float = 2.0 * DEFAULT_PIXEL_SIZE_MM
    amplitude_knots: tuple[float, ...] = (1.0, 1.0)  # relative depth along the length
    breaks: tuple[tuple[float, float], ...] = ()  # gaps, as fractions of the length
    taper: float = 0.05  # fraction of the length over which each end fades in

    geometry_fields: ClassVar[tuple[str, ...]] = ("shape", "points_mm", "arc", "width_mm",
                                                  "breaks")

    def _vertices(self, step_mm: float) -> np.ndarray:
        if self.shape == "arc":
            cx, cy, r, a0, sweep = self.arc
            n = max(2, int(math.ceil(abs(math.radians(sweep)) * r / step_mm)) + 1)
            a = np.radians(a0 + sweep * np.linspace(0.0, 1.0, n))
            return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)
        return np.asarray(self.points_mm, dtype=np.float64)

    def length_mm(self) -> float:
        if self.shape == "arc":
            return abs(math.radians(self.arc[4])) * self.arc[2]
        v = np.asarray(self.points_mm)
        return float(np.hypot(*np.diff(v, axis=0).T).sum())

    def centreline(self, step_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points (N, 2) mm every `step_mm` along the curve, tangent azimuth (deg), s/length."""
        v = self._vertices(min(step_mm, 0.05))
        seg = np.hypot(*np.diff(v, axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        total = cum[-1]
        n = max(2, int(math.ceil(total / step_mm)) + 1)
        s = np.linspace(0.0, total, n)
        pts = np.stack([np.interp(s, cum, v[:, 0]), np.interp(s, cum, v[:, 1])], axis=1)
        if self.shape == "arc":
            cx, cy, _, _, sweep = self.arc
            a = np.arctan2(pts[:, 1] - cy, pts[:, 0] - cx)
            psi = np.degrees(a) + math.copysign(90.0, sweep)
        else:
            k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
            d = np.diff(v, axis=0)[k]
            psi = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
        return pts, psi, s / max(total, 1e-12)

    def profile_along(self, frac: np.ndarray) -> np.ndarray:
        """Relative amplitude at fractions of the length: knots x end taper x breaks (0)."""
        knots = np.asarray(self.amplitude_knots, dtype=np.float64)
        a = np.interp(frac, np.linspace(0.0, 1.0, len(knots)), knots)
        if self.taper > 0:
            t = np.clip(np.minimum(frac, 1.0 - frac) / self.taper, 0.0, 1.0)
            a = a * (0.25 + 0.75 * t)
        for b0, b1 in self.breaks:
            a = np.where((frac >= b0) & (frac <= b1), 0.0, a)
        return a

    def centre_mm(self) -> tuple[float, float]:
        pts, _, _ = self.centreline(max(self.length_mm() / 64, 0.01))
        return float(pts[:, 0].mean()), float(pts[:, 1].mean())

    def bbox_mm(self) -> tuple[float, float, float, float]:
        pts, _, _ = self.centreline(0.05)
        return (float(pts[:, 0].min()), float(pts[:, 1].min()),
                float(pts[:, 0].max()), float(pts[:, 1].max()))

    def geometry(self) -> dict[str, Any]:
        g: dict[str, Any] = {"shape": self.shape, "width_mm": float(self.width_mm),
                             "breaks": _jsonable(self.breaks)}
        if self.shape == "arc":
            cx, cy, r, a0, sweep = self.arc
            g.update(centre_mm=[cx, cy], radius_mm=r, start_deg=a0, sweep_deg=sweep)
        else:
            g["points_mm"] = _jsonable(self.points_mm)
        return g

    def facet_response(self, psi_deg: np.ndarray) -> np.ndarray:
        """(N, 12) relative response of curve points with tangent azimuths psi to each facet."""
        raise NotImplementedError


@dataclass(frozen=True)
class Scratch(CurveDefect):
    kind: ClassVar[str] = "scratch"
    profile: str = "triangular"  # triangular | rugged
    lobes: tuple[tuple[float, float, float], ...] = ((0.0, 25.0, 0.5), (180.0, 25.0, 0.5))
    floor: float = 0.02

    def facet_response(self, psi_deg: np.ndarray) -> np.ndarray:
        delta = FACET_AZIMUTHS_DEG[None, :] - np.asarray(psi_deg)[:, None] - 90.0
        return lobe_response(delta, np.asarray(self.lobes, dtype=np.float64), self.floor)

    def pair_response(self, phi_deg: np.ndarray, psi_deg: float) -> np.ndarray:
        """Response of the pair (phi, phi + 180) for a scratch direction psi (for plots)."""
        lobes = np.asarray(self.lobes, dtype=np.float64)
        d = np.asarray(phi_deg) - psi_deg - 90.0
        return lobe_response(d, lobes, self.floor) + lobe_response(d + 180.0, lobes, self.floor)


@dataclass(frozen=True)
class Fibre(CurveDefect):
    kind: ClassVar[str] = "fibre"
    facet_gain: tuple[float, ...] = (1.0,) * N_FACETS  # nearly flat: isotropic scatterer
    taper: float = 0.02

    def facet_response(self, psi_deg: np.ndarray) -> np.ndarray:
        return np.broadcast_to(0.5 * np.asarray(self.facet_gain), (len(psi_deg), N_FACETS))


@dataclass(frozen=True)
class BlobDefect(Defect):
    """A patch (dust or stain): irregular outline from radial harmonics, isotropic response."""

    centre: tuple[float, float] = (0.0, 0.0)  # mm
    radius_mm: float = 0.1
    harmonics: tuple[tuple[float, float, float], ...] = ()  # (order, relative amplitude, phase)
    facet_gain: tuple[float, ...] = (1.0,) * N_FACETS
    geometry_fields: ClassVar[tuple[str, ...]] = ("centre", "radius_mm", "harmonics")

    def centre_mm(self) -> tuple[float, float]:
        return float(self.centre[0]), float(self.centre[1])

    def max_radius_mm(self) -> float:
        return self.radius_mm * (1.0 + sum(abs(a) for _, a, _ in self.harmonics))

    def length_mm(self) -> float:
        return 2.0 * self.radius_mm

    def bbox_mm(self) -> tuple[float, float, float, float]:
        r = self.max_radius_mm()
        x, y = self.centre
        return x - r, y - r, x + r, y + r

    def radius_at(self, theta: np.ndarray) -> np.ndarray:
        r = np.ones_like(theta)
        for k, a, ph in self.harmonics:
            r = r + a * np.cos(k * theta + ph)
        return self.radius_mm * r

    def geometry(self) -> dict[str, Any]:
        return {"shape": "blob", "centre_mm": list(self.centre), "radius_mm": self.radius_mm,
                "harmonics": _jsonable(self.harmonics)}

    def facet_vector(self) -> np.ndarray:
        """(12,) response per facet; a lit pair sums two, so 0.5 each gives ~1 per state."""
        return 0.5 * np.asarray(self.facet_gain, dtype=np.float64)


@dataclass(frozen=True)
class Dust(BlobDefect):
    kind: ClassVar[str] = "dust"
    dome: float = 0.3  # centre brighter than the rim by this fraction


@dataclass(frozen=True)
class Stain(BlobDefect):
    kind: ClassVar[str] = "stain"
    texture_seed: int = 0
    rim: float = 0.0  # coffee-ring brightening of the edge, 0..1
    texture: float = 0.5  # depth of the internal mottling, 0..1
    edge_mm: float = 0.2  # soft edge width


_KIND_CLASS: dict[str, type[Defect]] = {"scratch": Scratch, "fibre": Fibre, "dust": Dust,
                                        "stain": Stain}


def _tuplify(v: Any) -> Any:
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


def defect_from_dict(d: dict[str, Any]) -> Defect:
    """Inverse of `Defect.to_dict` (for re-rendering a truth table)."""
    cls = _KIND_CLASS[d["kind"]]
    g = dict(d["geometry"])
    kw: dict[str, Any] = {k: _tuplify(v) for k, v in g.pop("params").items()}
    kw["id"] = int(d["id"])
    if issubclass(cls, CurveDefect):
        kw["shape"] = g["shape"]
        kw["width_mm"] = g["width_mm"]
        kw["breaks"] = _tuplify(g["breaks"])
        if g["shape"] == "arc":
            kw["arc"] = (*g["centre_mm"], g["radius_mm"], g["start_deg"], g["sweep_deg"])
        else:
            kw["points_mm"] = _tuplify(g["points_mm"])
    else:
        kw["centre"] = tuple(g["centre_mm"])
        kw["radius_mm"] = g["radius_mm"]
        kw["harmonics"] = _tuplify(g["harmonics"])
    return cls(**kw)


# -- the sample --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One virtual cover glass: a rounded rectangle in the sample frame, haze and defects."""

    seed: int
    sample_id: str
    width_mm: float = DEFAULT_WIDTH_MM
    length_mm: float = DEFAULT_LENGTH_MM
    corner_radius_mm: float = DEFAULT_CORNER_RADIUS_MM
    haze_dn: float = 8.0  # surface haze per lit pair at nominal exposure, field centre
    haze_modes: tuple[tuple[float, float, float, float, float], ...] = ()  # amp, kx, phx, ky, phy
    glare_scale: float = 1.0  # edge chamfer quality: scales the border glare
    defects: tuple[Defect, ...] = field(default_factory=tuple)

    @property
    def has_scratch(self) -> bool:
        return any(d.kind == "scratch" for d in self.defects)

    def of_kind(self, kind: str) -> list[Defect]:
        return [d for d in self.defects if d.kind == kind]

    def contains_mm(self, x: np.ndarray | float, y: np.ndarray | float,
                    margin_mm: float = 0.0) -> np.ndarray:
        """True where (x, y) lies inside the rounded outline, at least `margin_mm` from it."""
        return signed_inside_mm(np.asarray(x, dtype=float), np.asarray(y, dtype=float),
                                self.width_mm, self.length_mm, self.corner_radius_mm) >= margin_mm

    def defect_dicts(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.defects]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": int(self.seed), "sample_id": self.sample_id, "width_mm": self.width_mm,
                "length_mm": self.length_mm, "corner_radius_mm": self.corner_radius_mm,
                "haze_dn": self.haze_dn, "haze_modes": _jsonable(self.haze_modes),
                "glare_scale": self.glare_scale, "defects": self.defect_dicts()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        kw = {k: v for k, v in d.items() if k != "defects"}
        kw["haze_modes"] = _tuplify(kw.get("haze_modes", []))
        return cls(**kw, defects=tuple(defect_from_dict(x) for x in d.get("defects", [])))


# -- generation --------------------------------------------------------------------------------
def _loguniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _knots(rng: np.random.Generator, length_mm: float) -> tuple[float, ...]:
    n = 2 + int(length_mm / 4.0)
    return tuple(float(v) for v in rng.uniform(0.35, 1.0, n))


def _breaks(rng: np.random.Generator, p: float) -> tuple[tuple[float, float], ...]:
    if rng.random() >= p:
        return ()
    out = []
    for c in np.sort(rng.uniform(0.15, 0.85, int(rng.integers(1, 4)))):
        half = rng.uniform(0.01, 0.05)
        out.append((float(c - half), float(c + half)))
    return tuple(out)


def _scratch_lobes(rng: np.random.Generator, mix: DefectMix, rugged: bool):
    w = _uniform(rng, mix.scratch_lobe_fwhm_deg)
    a = rng.uniform(0.4, 0.6)  # a V groove is nearly symmetric: both walls light
    lobes = [(0.0, w, a), (180.0, w * rng.uniform(0.9, 1.1), 1.0 - a)]
    if rugged:
        for _ in range(int(rng.integers(1, 3))):
            base = 0.0 if rng.random() < 0.5 else 180.0
            off = base + rng.choice([-1.0, 1.0]) * rng.uniform(35.0, 75.0)
            lobes.append((float(_wrap180(off)), _uniform(rng, (15.0, 30.0)),
                          float(rng.uniform(0.3, 0.9) * 0.5)))
    arr = np.asarray(lobes)
    arr[:, 2] /= _pair_peak(arr)  # the best-lit pair peaks at 1 (x amplitude_dn)
    return tuple(tuple(float(v) for v in row) for row in arr)


@dataclass(frozen=True)
class _Glass:
    w: float
    h: float
    r: float
    regions: tuple[tuple[float, float, float, float], ...] = ()  # where defects start (mm)


def _place_curve(rng: np.random.Generator, dims: _Glass, margin: float, make, tries: int = 40):
    """Draw curves from `make(rng, scale)` until one lies inside the glass; shrink if needed."""
    w, h, r = dims.w, dims.h, dims.r
    scale = 1.0
    for attempt in range(tries):
        c = make(rng, scale)
        pts, _, _ = c.centreline(max(c.length_mm() / 200, 0.02))
        if np.all(signed_inside_mm(pts[:, 0], pts[:, 1], w, h, r) >= margin):
            return c
        if attempt % 8 == 7:
            scale *= 0.7
    return None


def _random_point(rng: np.random.Generator, dims: _Glass, margin: float) -> tuple[float, float]:
    """Uniform on the glass (at least `margin` inside), or within `dims.regions` if given."""
    w, h, r = dims.w, dims.h, dims.r
    boxes = [(max(x0, margin), max(y0, margin), min(x1, w - margin), min(y1, h - margin))
             for x0, y0, x1, y1 in dims.regions]
    boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes])
    for _ in range(1000):
        if boxes:
            x0, y0, x1, y1 = boxes[int(rng.choice(len(boxes), p=areas / areas.sum()))]
        else:
            x0, y0, x1, y1 = margin, margin, w - margin, h - margin
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if signed_inside_mm(np.array(x), np.array(y), w, h, r) >= margin:
            return float(x), float(y)
    raise ValueError("no room for a defect: regions lie outside the glass")


def _make_scratch(rng: np.random.Generator, mix: DefectMix, did: int,
                  dims: _Glass) -> Scratch | None:
    length = _loguniform(rng, mix.scratch_length_mm)
    shape = str(rng.choice(["straight", "arc", "polyline"], p=np.asarray(mix.scratch_shapes)
                           / sum(mix.scratch_shapes)))
    rugged = rng.random() < mix.rugged_fraction
    common = dict(
        id=did,
        amplitude_dn=_loguniform(rng, mix.scratch_amplitude_dn),
        width_mm=_uniform(rng, mix.scratch_width_px) * mix.pixel_size_mm,
        breaks=_breaks(rng, mix.break_probability),
        profile="rugged" if rugged else "triangular",
        lobes=_scratch_lobes(rng, mix, rugged),
        floor=_uniform(rng, mix.scratch_floor),
    )
    turn = rng.uniform(0.2, 1.5) * rng.choice([-1.0, 1.0])  # arc: total turn (rad)
    n_seg = int(rng.integers(2, 5))
    turns = rng.uniform(10.0, 45.0, n_seg - 1) * rng.choice([-1.0, 1.0], n_seg - 1)
    parts = rng.dirichlet(np.full(n_seg, 3.0))

    def make(g: np.random.Generator, scale: float) -> Scratch:
        L = length * scale
        x0, y0 = _random_point(g, dims, mix.edge_margin_mm)
        heading = g.uniform(0.0, 360.0)
        knots = _knots(g, L)
        if shape == "straight":
            a = math.radians(heading)
            pts = ((x0, y0), (x0 + L * math.cos(a), y0 + L * math.sin(a)))
            return Scratch(shape=shape, points_mm=pts, amplitude_knots=knots, **common)
        if shape == "arc":
            radius = L / abs(turn)
            sign = math.copysign(1.0, turn)
            a_c = math.radians(heading + 90.0 * sign)  # centre is to the left/right of heading
            cx, cy = x0 + radius * math.cos(a_c), y0 + radius * math.sin(a_c)
            a0 = math.degrees(math.atan2(y0 - cy, x0 - cx))
            return Scratch(shape=shape, arc=(cx, cy, radius, a0, math.degrees(turn)),
                           amplitude_knots=knots, **common)
        pts = [(x0, y0)]
        hd = heading
        for i in range(n_seg):
            a = math.radians(hd)
            x, y = pts[-1]
            pts.append((x + L * parts[i] * math.cos(a), y + L * parts[i] * math.sin(a)))
            if i < n_seg - 1:
                hd += turns[i]
        return Scratch(shape=shape, points_mm=tuple(pts), amplitude_knots=knots, **common)

    return _place_curve(rng, dims, mix.edge_margin_mm, make)


def _make_fibre(rng: np.random.Generator, mix: DefectMix, did: int, dims: _Glass) -> Fibre | None:
    length = _loguniform(rng, mix.fibre_length_mm)
    gain = tuple(float(v) for v in np.clip(1.0 + rng.normal(0.0, mix.fibre_anisotropy, N_FACETS),
                                           0.85, 1.15))
    common = dict(id=did, amplitude_dn=_loguniform(rng, mix.fibre_amplitude_dn),
                  width_mm=_uniform(rng, mix.fibre_width_px) * mix.pixel_size_mm,
                  facet_gain=gain)
    wiggle = rng.uniform(0.02, 0.12)  # rad per 0.1 mm step: lint curls

    def make(g: np.random.Generator, scale: float) -> Fibre:
        L = length * scale
        step = 0.1
        n = max(2, int(L / step) + 1)
        curv = np.convolve(g.normal(0.0, wiggle, n + 8), np.ones(9) / 3.0, mode="valid")[:n]
        hd = math.radians(g.uniform(0.0, 360.0)) + np.cumsum(curv)
        x0, y0 = _random_point(g, dims, mix.edge_margin_mm)
        xs = x0 + np.concatenate([[0.0], np.cumsum(step * np.cos(hd[:-1]))])
        ys = y0 + np.concatenate([[0.0], np.cumsum(step * np.sin(hd[:-1]))])
        pts = tuple((float(a), float(b)) for a, b in zip(xs, ys, strict=True))
        return Fibre(shape="polyline", points_mm=pts, amplitude_knots=_knots(g, L), **common)

    return _place_curve(rng, dims, mix.edge_margin_mm, make)


def _harmonics(rng: np.random.Generator, orders: range, amp: float):
    return tuple((float(k), float(rng.uniform(0.0, amp) / k ** 0.5), float(rng.uniform(0, 2 * math.pi)))
                 for k in orders)


def _make_dust(rng: np.random.Generator, mix: DefectMix, did: int, dims: _Glass) -> Dust:
    radius = 0.5 * _loguniform(rng, mix.dust_diameter_px) * mix.pixel_size_mm
    gain = np.clip(1.0 + rng.normal(0.0, mix.dust_anisotropy, N_FACETS), 0.9, 1.1)
    return Dust(id=did, amplitude_dn=_loguniform(rng, mix.dust_amplitude_dn),
                centre=_random_point(rng, dims, mix.edge_margin_mm), radius_mm=radius,
                harmonics=_harmonics(rng, range(2, 4), 0.25),
                facet_gain=tuple(float(v) for v in gain), dome=float(rng.uniform(0.0, 0.5)))


def _make_stain(rng: np.random.Generator, mix: DefectMix, did: int, dims: _Glass) -> Stain:
    radius = 0.5 * _loguniform(rng, mix.stain_diameter_px) * mix.pixel_size_mm
    m = _uniform(rng, mix.stain_modulation)
    th = rng.uniform(0.0, 2 * math.pi)
    phi = np.radians(FACET_AZIMUTHS_DEG)
    gain = 1.0 + m * np.cos(2 * (phi - th)) + rng.normal(0.0, 0.015, N_FACETS)
    return Stain(id=did, amplitude_dn=_uniform(rng, mix.stain_amplitude_dn),
                 centre=_random_point(rng, dims, mix.edge_margin_mm + radius),
                 radius_mm=radius, harmonics=_harmonics(rng, range(1, 6), 0.3),
                 facet_gain=tuple(float(v) for v in gain),
                 texture_seed=int(rng.integers(0, 2**31 - 1)),
                 rim=float(rng.uniform(0.0, 1.0) if rng.random() < 0.4 else 0.0),
                 texture=float(rng.uniform(0.2, 0.7)),
                 edge_mm=float(radius * rng.uniform(0.1, 0.4)))


def make_sample(
    seed: int,
    mix: DefectMix | None = None,
    *,
    sample_id: str | None = None,
    width_mm: float = DEFAULT_WIDTH_MM,
    length_mm: float = DEFAULT_LENGTH_MM,
    corner_radius_mm: float = DEFAULT_CORNER_RADIUS_MM,
    regions_mm: Sequence[tuple[float, float, float, float]] | None = None,
) -> Sample:
    """Draw one virtual cover glass from `seed` (same seed and mix -> identical sample).

    `regions_mm` (x0, y0, x1, y1 boxes, e.g. the RoIs of a small test sensor that leave gaps)
    confines where defects are placed (curves start there), so test data shows them.
    """
    mix = mix or DefectMix()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A3D1E]))
    dims = _Glass(width_mm, length_mm, corner_radius_mm,
                  tuple(tuple(float(v) for v in b) for b in (regions_mm or ())))
    scratched = rng.random() < mix.scratch_fraction
    n_scratch = 1 + int(rng.poisson(mix.extra_scratches_mean)) if scratched else 0
    counts = [("scratch", n_scratch), ("dust", int(rng.poisson(mix.dust_mean))),
              ("stain", int(rng.poisson(mix.stain_mean))),
              ("fibre", int(rng.poisson(mix.fibre_mean)))]
    makers = {"scratch": _make_scratch, "dust": _make_dust, "stain": _make_stain,
              "fibre": _make_fibre}
    defects: list[Defect] = []
    for kind, n in counts:
        for _ in range(n):
            # one child generator per defect: changing one kind's parameters leaves the others
            d = makers[kind](np.random.default_rng(rng.integers(0, 2**63)), mix, len(defects), dims)
            if d is None and kind == "scratch":  # never lose the "scratched" label
                d = _make_scratch(np.random.default_rng(rng.integers(0, 2**63)),
                                  DefectMix(**{**asdict(mix), "scratch_length_mm": (0.5, 3.0)}),
                                  len(defects), dims)
            if d is not None:
                defects.append(d)
    modes = tuple((float(rng.uniform(0.03, 0.2)), float(rng.uniform(0.3, 3.0)),
                   float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.3, 3.0)),
                   float(rng.uniform(0, 2 * math.pi))) for _ in range(2))
    return Sample(seed=int(seed), sample_id=sample_id or f"SIM-{int(seed):010d}",
                  width_mm=width_mm, length_mm=length_mm, corner_radius_mm=corner_radius_mm,
                  haze_dn=float(rng.uniform(4.0, 12.0)), haze_modes=modes,
                  glare_scale=float(rng.uniform(0.5, 1.5)), defects=tuple(defects))
