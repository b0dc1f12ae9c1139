"""Using a calibration: correct RAW stacks, set up the rig, hook the detector.

`StackCorrector` is the detector's preprocessing hook: a plain callable (6, H, W) uint16 ->
(6, H, W) uint16 that returns RAW DN again,

    corrected_k = black + (raw_k - dark) / flat_k,   hot pixels from their same-colour neighbours

so the detector's own input scaling (black level 64, 12-bit white) is untouched and a model
trained on uncorrected frames still sees frames of the same kind. `inference` never imports
this package: the detector only calls whatever is in its `raw_correction` attribute.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from calibration.dark import scale_dark
from calibration.store import Calibration, CalibrationError, DarkFrame, FlatField

log = logging.getLogger(__name__)

WHITE_LEVEL_DN = 4095


class StackCorrector:
    """Dark subtraction, flat-field division and hot-pixel repair, in the RAW DN domain.

    Gain maps are expanded from the stored grid on first use and kept (float32, 44 MB per state
    at 3504 x 3120). Thread-safe for concurrent calls once built (it only reads its arrays).
    """

    def __init__(self, dark: DarkFrame | None, flat: FlatField | None, black_level_dn: float,
                 calibration_id: str = "", states: tuple[int, ...] = (0, 1, 2, 3, 4, 5)):
        if dark is None and flat is None:
            raise CalibrationError("nothing to correct with: the calibration has neither a "
                                   "dark frame nor a flat field")
        shapes = {tuple(x.shape) for x in (dark, flat) if x is not None}
        if len(shapes) != 1:
            raise CalibrationError(f"dark frame and flat field sizes differ: {sorted(shapes)}")
        self.shape: tuple[int, int] = shapes.pop()  # type: ignore[assignment]
        self.dark = dark
        self.flat = flat
        self.black = np.float32(black_level_dn)
        self.calibration_id = calibration_id
        self.states = states
        self._inv_gain: dict[int, np.ndarray] = {}
        h, w = self.shape
        self._hot = _hot_repair_plan(dark.hot_pixels if dark is not None else np.zeros(0, int),
                                     h, w)

    def _inverse_gain(self, state: int) -> np.ndarray | None:
        if self.flat is None:
            return None
        g = self._inv_gain.get(state)
        if g is None:
            if not 0 <= state < self.flat.n_states:
                raise CalibrationError(f"the flat field has no state {state}")
            g = (1.0 / np.maximum(self.flat.gain(state), 1e-3)).astype(np.float32)
            self._inv_gain[state] = g
        return g

    def correct_frame(self, raw: np.ndarray, state: int) -> np.ndarray:
        """One RAW frame (H, W) of illumination state `state` -> corrected uint16."""
        if raw.shape != self.shape:
            raise CalibrationError(
                f"frame {raw.shape} does not match the calibration's sensor {self.shape}; "
                "calibrate this camera size (main.py calibrate all)")
        x = raw.astype(np.float32)
        x -= self.dark.mean if self.dark is not None else self.black
        inv = self._inverse_gain(state)
        if inv is not None:
            x *= inv
        x += self.black
        _repair(x, self._hot)
        np.clip(x, 0, WHITE_LEVEL_DN, out=x)
        np.rint(x, out=x)
        return x.astype(np.uint16)

    def __call__(self, stack: np.ndarray) -> np.ndarray:
        """(S, H, W) stack, axis 0 = states `self.states` (default 0..5) -> corrected stack."""
        stack = np.asarray(stack)
        if stack.ndim != 3:
            raise CalibrationError(f"expected a (states, H, W) stack, got {stack.shape}")
        out = np.empty(stack.shape, np.uint16)
        for i in range(stack.shape[0]):
            out[i] = self.correct_frame(stack[i], self.states[i])
        return out


def _hot_repair_plan(hot: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(hot flat indices, (n, 4) flat indices of same-colour neighbours at +-2 px, clamped
    inside the frame and never themselves hot where avoidable)."""
    hot = np.asarray(hot, dtype=np.int64)
    if not len(hot):
        return hot, np.zeros((0, 4), np.int64)
    r, c = hot // w, hot % w
    nb = []
    for dr, dc in ((-2, 0), (2, 0), (0, -2), (0, 2)):
        rr, cc = r + dr, c + dc
        rr = np.where((rr < 0) | (rr >= h), r - dr, rr)  # mirror at the edges (same colour)
        cc = np.where((cc < 0) | (cc >= w), c - dc, cc)
        nb.append(rr * w + cc)
    return hot, np.stack(nb, axis=1)


def _repair(x: np.ndarray, plan: tuple[np.ndarray, np.ndarray]) -> None:
    hot, nb = plan
    if not len(hot):
        return
    flat = x.reshape(-1)
    flat[hot] = np.median(flat[nb], axis=1)


def corrector_for(cal: Calibration, exposure_us: float) -> StackCorrector | None:
    """The detector hook for frames taken at `exposure_us`, or None when the calibration has
    neither dark nor flat. A dark at another exposure is scaled (logged); a flat taken at
    another exposure is fine (it is a relative gain)."""
    dark = cal.dark_for(exposure_us)
    if dark is None and cal.dark:
        nearest = min(cal.dark.values(), key=lambda d: abs(d.exposure_us - exposure_us))
        log.warning("calibration %s has no dark frame at %g us; scaling the %g us one "
                    "(run `main.py calibrate dark` at this exposure)", cal.calibration_id,
                    exposure_us, nearest.exposure_us)
        dark = scale_dark(nearest, exposure_us)
    if dark is None and cal.flat is None:
        return None
    return StackCorrector(dark, cal.flat, cal.black_level_dn, cal.calibration_id)


def attach_to_detector(detector: Any, cal: Calibration | None, exposure_us: float) -> bool:
    """Set the detector's `raw_correction` hook from a calibration (None clears it).

    Returns True when a correction is now active. Duck-typed: any detector with a
    `raw_correction` attribute (inference.detector.Detector has one)."""
    corrector = corrector_for(cal, exposure_us) if cal is not None else None
    detector.raw_correction = corrector
    return corrector is not None


def apply_to_rig(rig: Any, cal: Calibration) -> None:
    """Make the rig use a calibration: LED levels from the balance (if any), the RoI layout in
    measured pixels from the registration (if any) and the id that every recording made with
    this rig will carry (`Rig.calibration_id`)."""
    layout = None
    if cal.registration is not None:
        from calibration.registration import calibrated_roi_layout

        layout = calibrated_roi_layout(rig.cfg, cal.registration)
    rig.use_calibration(cal.calibration_id, layout=layout,
                        led_levels=cal.leds.levels if cal.leds is not None else None)


def station_calibration(cfg: Any) -> Calibration | None:
    """The calibration the station config asks for (`[calibration] use`), or None."""
    from calibration.store import find_calibration, latest_calibration

    use = cfg.calibration.use
    if not use:
        return None
    if use == "latest":
        return latest_calibration(cfg.paths.calibrations, cfg.station.name)
    return find_calibration(cfg.paths.calibrations, use)
