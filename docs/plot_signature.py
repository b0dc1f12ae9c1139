"""Intensity versus illumination azimuth for rendered defects (cf. seed paper 004, Fig. 3).

    .venv/bin/python docs/plot_signature.py [--out docs/signature.png]

Everything is measured on rendered RAW frames (world.signature: background-subtracted mean
over the defect's footprint, 2x2 Bayer cells), not read from the model's parameters:

Intensities are sums over a wide footprint divided by the footprint size of the defect as
generated (so rotating a curve across the pixel grid does not change the scale).

* lines: the paper's experiment (rotate the illumination around the defect in 2 deg steps),
  done by rotating the defect under the lit facet pair of state 0; x is the azimuth of the
  lit pair relative to the defect as generated;
* markers: the station's 6 real states of the defect as generated (each pair lights phi and
  phi + 180, so each state appears twice);
* last panel: the modulation (max / min over the 6 states) of many rendered defects per kind.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from world.optics import DarkFieldRenderer
from world.sample import (
    BlobDefect,
    CurveDefect,
    Defect,
    DefectMix,
    Sample,
    make_sample,
)
from world.signature import measure_signatures

PIX = 0.0114
CROP = 192


def _rotated(d: Defect, alpha_deg: float, centre: tuple[float, float]) -> Defect:
    """The defect rotated by alpha about `centre` (sample frame, +x towards +y)."""
    a = math.radians(alpha_deg)
    ca, sa = math.cos(a), math.sin(a)
    cx, cy = centre

    def rot(p):
        x, y = p[0] - cx, p[1] - cy
        return (cx + ca * x - sa * y, cy + sa * x + ca * y)

    if isinstance(d, CurveDefect):
        return replace(d, id=0, points_mm=tuple(rot(p) for p in d.points_mm))
    assert isinstance(d, BlobDefect)
    return replace(d, id=0, harmonics=tuple((k, amp, ph + k * a) for k, amp, ph in d.harmonics))


def _short_straight(d: CurveDefect, half_mm: float = 0.8) -> CurveDefect:
    """A piece of the curve around its centre, straight, no breaks (fits the small crop)."""
    x, y = d.centre_mm()
    pts, psi, _ = d.centreline(0.05)
    k = int(np.argmin(np.hypot(pts[:, 0] - x, pts[:, 1] - y)))
    a = math.radians(psi[k])
    p0 = (x - half_mm * math.cos(a), y - half_mm * math.sin(a))
    p1 = (x + half_mm * math.cos(a), y + half_mm * math.sin(a))
    return replace(d, shape="straight", points_mm=(p0, p1), breaks=(), taper=0.0,
                   amplitude_knots=(1.0, 1.0))


def _measure(defect: Defect, haze_dn: float, states):
    """(summed intensities per state, footprint cells) of a lone defect in a small crop."""
    sample = Sample(seed=11, sample_id="SIG", haze_dn=haze_dn, defects=(replace(defect, id=0),))
    x, y = defect.centre_mm()
    origin = (int(y / PIX - CROP / 2) // 2 * 2, int(x / PIX - CROP / 2) // 2 * 2)
    r = DarkFieldRenderer(sample, (CROP, CROP), PIX, cache_rois=1)
    # a wide footprint: its sum barely depends on how the rotated defect meets the pixel grid
    sig = measure_signatures(r, origin, states=states, level=0.1)
    return (sig[0].intensities, sig[0].n_cells) if sig else (None, 0)


def _pick(kind: str, test, seeds=range(200)):
    mix = replace(DefectMix(), scratch_fraction=1.0)
    for seed in seeds:
        s = make_sample(seed, mix)
        for d in s.defects:
            if d.kind == kind and test(d):
                return s, d
    raise LookupError(kind)


def sweep(defect: Defect, haze_dn: float, step: float = 2.0):
    az = np.arange(0.0, 360.0, step)
    centre = defect.centre_mm()
    states, n = _measure(defect, haze_dn, states=range(6))
    vals = []
    for a in az:
        v, _ = _measure(_rotated(defect, -a, centre), haze_dn, states=[0])
        vals.append(np.nan if v is None else v[0] / n)
    return az, np.asarray(vals), None if states is None else states / n


def modulation_survey(n_samples: int = 12) -> dict[str, list[float]]:
    mix = replace(DefectMix(), scratch_fraction=1.0, dust_mean=8, stain_mean=4, fibre_mean=3)
    out: dict[str, list[float]] = {"scratch": [], "dust": [], "stain": [], "fibre": []}
    size = 320
    for seed in range(300, 300 + n_samples):
        sample = make_sample(seed, mix)
        r = DarkFieldRenderer(sample, (size, size), PIX, cache_rois=1)
        for d in sample.defects:
            x, y = d.centre_mm()
            origin = (int(y / PIX - size / 2) // 2 * 2, int(x / PIX - size / 2) // 2 * 2)
            for s in measure_signatures(r, origin):
                if s.id == d.id and s.snr > 10:
                    out[s.kind].append(min(s.modulation, 1e3))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("signature.png"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [
        ("scratch, triangular profile", *_pick("scratch", lambda d: d.profile == "triangular"
                                               and 300 < d.amplitude_dn < 1500)),
        ("scratch, rugged profile", *_pick("scratch", lambda d: d.profile == "rugged"
                                           and 300 < d.amplitude_dn < 1500 and len(d.lobes) > 3)),
        ("dust (saturated)", *_pick("dust", lambda d: d.amplitude_dn > 8000
                                    and d.radius_mm > 4 * PIX)),
        ("dust", *_pick("dust", lambda d: 400 < d.amplitude_dn < 1500 and d.radius_mm > 3 * PIX)),
        ("fibre", *_pick("fibre", lambda d: 150 < d.amplitude_dn < 1000)),
        ("stain", *_pick("stain", lambda d: d.amplitude_dn > 20 and d.radius_mm < 80 * PIX)),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5), dpi=110)
    flat = list(axes.flat)
    for ax, (title, sample, d) in zip(flat, picks, strict=False):
        if isinstance(d, CurveDefect):
            d = _short_straight(d)
        az, vals, states = sweep(d, sample.haze_dn)
        if d.kind == "scratch":
            (x0, y0), (x1, y1) = d.points_mm
            psi = math.degrees(math.atan2(y1 - y0, x1 - x0)) % 180.0
            for i, perp in enumerate(((psi + 90.0) % 180.0, (psi + 90.0) % 180.0 + 180.0)):
                ax.axvline(perp, color="tab:green", ls="--", lw=1,
                           label="lit perpendicular to the scratch" if i == 0 else None)
            title = title.replace(" profile", "") + f", direction {psi:.0f} deg"
        ax.plot(az, vals, "-", lw=1.4, color="tab:blue", label="rotated illumination (2 deg)")
        if states is not None:
            st = np.arange(6) * 30.0
            ax.plot(np.r_[st, st + 180], np.r_[states, states], "o", color="tab:red", ms=5,
                    label="the 6 ring-light states")
            mod = states.max() / states.min() if states.min() > 0 else math.inf
            title += f"\nmodulation over 6 states: {mod:.2f}"
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 360)
        ax.set_xticks(range(0, 361, 60))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("illumination azimuth (deg)")
        ax.set_ylabel("intensity above background (DN, per px)")
        ax.grid(alpha=0.3)
    flat[0].legend(fontsize=8, loc="upper right")
    survey = modulation_survey()
    ax = flat[len(picks)]
    bins = np.logspace(0, 3, 40)
    for kind, color in (("scratch", "tab:red"), ("dust", "tab:gray"), ("stain", "tab:olive"),
                        ("fibre", "tab:blue")):
        ax.hist(survey[kind], bins=bins, histtype="step", lw=1.6, color=color,
                label=f"{kind} (n={len(survey[kind])}, median {np.median(survey[kind]):.2f})")
    for x, ls in ((1.3, ":"), (4.0, "--")):
        ax.axvline(x, color="k", ls=ls, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("modulation: max / min over the 6 states (capped at 1000)")
    ax.set_ylabel("defects")
    ax.set_title("modulation of rendered defects", fontsize=10)
    ax.legend(fontsize=8)
    flat[-1].axis("off")
    fig.suptitle("Simulated dark-field bench: scattered intensity vs illumination azimuth, "
                 "measured on rendered RAW frames (cf. seed paper 004, Fig. 3)", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    for k, v in survey.items():
        v = np.asarray(v)
        print(f"{k:8s} n={len(v):4d} median modulation {np.median(v):7.2f}  "
              f">4: {np.mean(v > 4):.0%}  <1.3: {np.mean(v < 1.3):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
