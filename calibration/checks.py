"""Acceptance checks of a new calibration: what is wrong with the parts measured now, and
parts that no longer fit together. Used by `calibrate` and the GUI's calibration panel."""

from __future__ import annotations

from typing import Any

FLAT_RESIDUAL_LIMIT = 0.02
"""Largest acceptable residual shading of the reference after correction (p2p, any state)."""
LED_SPREAD_LIMIT = 0.02
"""Largest acceptable (max - min) / mean of the state means after balancing."""
REGISTRATION_RESIDUAL_LIMIT_PX = 0.25
"""Largest acceptable RMS misfit of the registration (px)."""


def checks(cal: Any, steps: tuple[str, ...]) -> list[str]:
    """What is wrong with the parts measured now (empty: all good)."""
    bad = []
    if "flat" in steps and cal.flat is not None:
        res = cal.flat.stats.get("residual_nonuniformity_p2p", [])
        worst = max(res) if res else 0.0
        if worst > FLAT_RESIDUAL_LIMIT:
            bad.append(f"flat: residual shading {100 * worst:.2f} % > "
                       f"{100 * FLAT_RESIDUAL_LIMIT:.0f} % (is the diffuser clean and flat?)")
    if "leds" in steps and cal.leds is not None and cal.leds.spread_after > LED_SPREAD_LIMIT:
        bad.append(f"leds: state means still differ by {100 * cal.leds.spread_after:.2f} % > "
                   f"{100 * LED_SPREAD_LIMIT:.0f} % (a facet at its limit? check the ring light)")
    if "registration" in steps and cal.registration is not None and \
            cal.registration.residual_px > REGISTRATION_RESIDUAL_LIMIT_PX:
        bad.append(f"registration: fit residual {cal.registration.residual_px:.3f} px > "
                   f"{REGISTRATION_RESIDUAL_LIMIT_PX} px (stage backlash or a moving plate?)")
    return bad


def notes(cal: Any) -> list[str]:
    """Parts that no longer fit together (not an error: the operator decides)."""
    out = []
    if cal.flat is not None and cal.leds is not None and \
            tuple(cal.flat.facet_levels) != tuple(cal.leds.levels):
        out.append("the flat field was taken with other LED levels than the current balance; "
                   "run `calibrate flat` (or `all`)")
    if cal.flat is not None and cal.dark and cal.dark_for(cal.flat.exposure_us) is None:
        out.append(f"no dark frame at the flat's exposure {cal.flat.exposure_us:g} us")
    return out
