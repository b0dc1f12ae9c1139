"""What a calibration measured and what changed against the previous one, as table rows.

Used by the command line (rich table) and the GUI panel (plain text); the numbers are the ones
an engineer compares day to day: black level and hot pixels, shading before and after the flat,
pixel size and rotation, LED levels and how equal the states are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.store import Calibration


@dataclass(frozen=True)
class Row:
    part: str
    quantity: str
    previous: str
    now: str
    change: str = ""
    measured: bool = True  # measured in this calibration (else carried over)


def _pct(v: float, digits: int = 2) -> str:
    return f"{100 * v:.{digits}f} %"


def _levels(lv: tuple[int, ...] | None) -> str:
    return " ".join(str(v) for v in lv) if lv else "-"


def summarize(cal: Calibration, previous: Calibration | None = None) -> list[Row]:
    """Rows for every part of `cal`, compared with `previous` where it has the same part."""
    rows: list[Row] = []
    upd = set(cal.updated)
    prev = previous

    for e, d in sorted(cal.dark.items()):
        p = prev.dark_for(e) if prev is not None else None
        part = f"dark {e:g} us"
        m = "dark" in upd
        rows.append(Row(part, "black level", f"{p.stats.get('black_dn', float('nan')):.2f} DN"
                        if p else "-", f"{d.stats.get('black_dn', float('nan')):.2f} DN",
                        _delta(p.stats.get("black_dn") if p else None, d.stats.get("black_dn"),
                               " DN"), m))
        rows.append(Row(part, "read noise", f"{p.stats.get('read_noise_dn', 0):.2f} DN" if p
                        else "-", f"{d.stats.get('read_noise_dn', 0):.2f} DN", "", m))
        change = ""
        if p is not None and p.shape == d.shape:
            new = len(np.setdiff1d(d.hot_pixels, p.hot_pixels))
            gone = len(np.setdiff1d(p.hot_pixels, d.hot_pixels))
            change = f"+{new} new, -{gone} gone"
        rows.append(Row(part, "hot pixels", str(len(p.hot_pixels)) if p else "-",
                        str(len(d.hot_pixels)), change, m))

    if cal.flat is not None:
        f = cal.flat
        pf = prev.flat if prev is not None else None
        m = "flat" in upd
        raw = f.stats.get("raw_nonuniformity_p2p", [])
        res = f.stats.get("residual_nonuniformity_p2p", [])
        for k in range(f.n_states):
            rows.append(Row("flat", f"shading, state {k}",
                            _pct(pf.stats["residual_nonuniformity_p2p"][k])
                            if pf is not None and len(pf.stats.get(
                                "residual_nonuniformity_p2p", [])) > k else "-",
                            (f"raw {_pct(raw[k], 1)} -> {_pct(res[k])}" if k < len(res) and
                             k < len(raw) else "-"), "", m))
        if pf is not None and pf.grid.shape == f.grid.shape:
            diff = float(np.max(np.abs(f.grid / np.maximum(pf.grid, 1e-6) - 1.0)))
            rows.append(Row("flat", "largest gain change", "", "", _pct(diff), m))
        rows.append(Row("flat", "gain range", f"{pf.stats.get('gain_min', 0):.3f}.."
                        f"{pf.stats.get('gain_max', 0):.3f}" if pf else "-",
                        f"{f.stats.get('gain_min', 0):.3f}..{f.stats.get('gain_max', 0):.3f}",
                        "", m))

    if cal.registration is not None:
        r = cal.registration
        pr = prev.registration if prev is not None else None
        m = "registration" in upd
        rows.append(Row("registration", "pixel size",
                        f"{pr.pixel_size_mm * 1000:.4f} um" if pr else
                        f"{r.nominal_pixel_size_mm * 1000:.4f} um (nominal)",
                        f"{r.pixel_size_mm * 1000:.4f} um ({100 * r.pixel_size_error:+.3f} % "
                        "vs nominal)",
                        f"{1e6 * (r.pixel_size_mm / pr.pixel_size_mm - 1):+.0f} ppm" if pr
                        else "", m))
        rows.append(Row("registration", "stage rotation",
                        f"{pr.rotation_deg:+.4f} deg" if pr else "-",
                        f"{r.rotation_deg:+.4f} deg",
                        f"{r.rotation_deg - pr.rotation_deg:+.4f} deg" if pr else "", m))
        rows.append(Row("registration", "fit residual (RMS)",
                        f"{pr.residual_px:.3f} px" if pr else "-", f"{r.residual_px:.3f} px "
                        f"({r.n_positions} positions)", "", m))

    if cal.leds is not None:
        led = cal.leds
        pl = prev.leds if prev is not None else None
        m = "leds" in upd
        rows.append(Row("leds", "facet levels", _levels(pl.levels if pl else led.levels_before),
                        _levels(led.levels),
                        ("max " + f"{max(abs(a - b) for a, b in zip(led.levels, pl.levels, strict=True))}"
                         " PWM") if pl else "", m))
        rows.append(Row("leds", "state mean spread", _pct(led.spread_before),
                        _pct(led.spread_after), "", m))
    return rows


def _delta(a: float | None, b: float | None, unit: str) -> str:
    if a is None or b is None:
        return ""
    return f"{b - a:+.2f}{unit}"


def format_summary(cal: Calibration, previous: Calibration | None = None) -> str:
    """Plain-text summary (GUI panel, logs)."""
    head = [f"calibration {cal.calibration_id}  station {cal.station}  {cal.created}",
            f"parent {cal.parent_id or '-'}   measured now: {', '.join(cal.updated) or '-'}   "
            f"carried over: {', '.join(p for p in cal.parts if p not in cal.updated) or '-'}"]
    rows = summarize(cal, previous)
    w0 = max([len(r.part) for r in rows] + [4])
    w1 = max([len(r.quantity) for r in rows] + [8])
    lines = [f"{r.part:<{w0}}  {r.quantity:<{w1}}  {r.previous:>18} -> {r.now}"
             + (f"  [{r.change}]" if r.change else "") + ("" if r.measured else "  (carried over)")
             for r in rows]
    return "\n".join(head + [""] + lines)
