"""Running calibrations on a rig: what to light, where to move, which frames to take.

`CalibrationSession(rig, cfg).run(steps, previous)` measures the requested parts and returns a
new `Calibration` (the parts not measured are carried over from `previous`). Order for `all`:
dark (every other step subtracts it), LED balance (the flat must be taken with the levels the
scans will use), flat field, registration.

Reference targets: on the simulated bench the session puts them on the stage itself
(`world.targets`); on a real station it asks the operator through `prompt` to place the
diffuser plate or the fiducial plate and moves to `options.target_xy_mm` (default: the centre
of the sample area). The rig is left as it was found: camera settings, ring-light levels, the
sample on the simulated stage, lights off.

Progress goes to `progress(step, done, total, message)`; `cancel` (a threading.Event) stops the
session between frames with `CalibrationCancelled`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibration import leds as L
from calibration.apply import StackCorrector
from calibration.dark import DEFAULT_DARK_FRAMES, mean_frame, measure_dark
from calibration.flat import DEFAULT_FLAT_FRAMES, measure_flat, nonuniformity
from calibration.registration import (
    DEFAULT_GRID,
    DEFAULT_SPAN,
    bin2x2,
    fit_registration,
    phase_correlation,
    stage_offsets,
)
from calibration.store import Calibration, CalibrationError, LedBalance, new_calibration, now_iso

log = logging.getLogger(__name__)

STEPS = ("dark", "leds", "flat", "registration")
"""Every step, in the order `all` runs them."""
FLAT_VERIFY_FRAMES = 2
"""Fresh frames per state (not used for the flat) to measure the residual non-uniformity."""
REGISTRATION_STATE = 0

Progress = Callable[[str, int, int, str], None]
Prompt = Callable[[str], bool]


class CalibrationCancelled(CalibrationError):
    """The operator stopped the calibration; nothing was saved."""


@dataclass(frozen=True)
class CalibrationOptions:
    dark_frames: int = DEFAULT_DARK_FRAMES
    flat_frames: int = DEFAULT_FLAT_FRAMES
    led_frames: int = L.DEFAULT_LED_FRAMES
    exposures_us: tuple[float, ...] = ()  # dark exposures; empty = the station's exposure
    registration_grid: int = DEFAULT_GRID
    registration_span: float = DEFAULT_SPAN
    target_xy_mm: tuple[float, float] | None = None  # real station: where the plates lie
    fiducial_seed: int = 0  # simulated fiducial plate pattern
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def order_steps(steps: Sequence[str]) -> tuple[str, ...]:
    """`all` or any subset -> the subset in run order; unknown names raise."""
    wanted = set(STEPS) if "all" in steps else set(steps)
    unknown = wanted - set(STEPS)
    if unknown:
        raise CalibrationError(f"unknown calibration step(s) {sorted(unknown)}; "
                               f"choose from {', '.join(STEPS)} or all")
    return tuple(s for s in STEPS if s in wanted)


class CalibrationSession:
    """One calibration run on an open rig (real or simulated)."""

    def __init__(self, rig: Any, cfg: Any, options: CalibrationOptions | None = None,
                 progress: Progress | None = None, prompt: Prompt | None = None,
                 cancel: threading.Event | None = None):
        self.rig = rig
        self.cfg = cfg
        self.options = options or CalibrationOptions()
        self.progress = progress or (lambda *a: None)
        self.prompt = prompt
        self.cancel = cancel or threading.Event()
        self.exposure_us = float(cfg.camera.exposure_us)
        self.shape = (int(cfg.camera.height), int(cfg.camera.width))
        self._step = ""
        self._done = 0
        self._total = 0
        self._target: str | None = None
        self._placed: tuple[float, float] | None = None  # centre of a target the rig placed
        self._armed_exposure: float | None = None

    # -- bookkeeping ---------------------------------------------------------------------------
    def frames_needed(self, step: str) -> int:
        o = self.options
        if step == "dark":
            return o.dark_frames * len(self._exposures())
        if step == "leds":
            return o.led_frames * (L.N_FACETS + 2 * L.N_STATES) + o.led_frames * L.N_STATES
        if step == "flat":
            return (o.flat_frames + FLAT_VERIFY_FRAMES) * L.N_STATES
        if step == "registration":
            return o.registration_grid ** 2 + 1
        return 0

    def _exposures(self) -> tuple[float, ...]:
        return tuple(float(e) for e in (self.options.exposures_us or (self.exposure_us,)))

    def _begin(self, step: str, message: str) -> None:
        self._step, self._done, self._total = step, 0, self.frames_needed(step)
        self.progress(step, 0, self._total, message)

    def _tick(self, message: str = "") -> None:
        self._done += 1
        self.progress(self._step, min(self._done, self._total), self._total, message)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise CalibrationCancelled("calibration cancelled by the operator; nothing saved")

    # -- the run -------------------------------------------------------------------------------
    def run(self, steps: Sequence[str], previous: Calibration | None = None) -> Calibration:
        """Measure `steps` (see `order_steps`) and return the new calibration (not saved)."""
        todo = order_steps(steps)
        cal = new_calibration(self.cfg.station.name, self.shape, self.cfg.camera.black_level_dn,
                              previous)
        cal.notes = self.options.notes
        rig = self.rig
        cam = rig.camera
        saved_settings = cam.settings
        saved_levels = tuple(rig.light.levels())
        updated: list[str] = []
        try:
            for step in todo:
                self._check_cancel()
                getattr(self, f"_{step}")(cal, updated)
                updated.append(step)
                self.progress(step, self._total, self._total, "done")
        finally:
            with contextlib.suppress(Exception):
                rig.light.all_off()
            self._armed_exposure = None
            with contextlib.suppress(Exception):
                cam.disarm()
                cam.configure(saved_settings)
            with contextlib.suppress(Exception):
                rig.light.set_levels(list(saved_levels))
            with contextlib.suppress(Exception):
                rig.samples.remove_target()
            self._target = self._placed = None
        cal.updated = tuple(dict.fromkeys(updated))
        return cal

    # -- devices -------------------------------------------------------------------------------
    def _frames(self, n: int, exposure_us: float) -> Iterator[np.ndarray]:
        """n frames by software trigger with whatever the ring light shows now.

        The camera stays armed between calls at the same exposure, so frame ids keep counting
        (the simulated camera seeds its noise from them: re-arming would repeat the noise and
        make "fresh" verification frames copies of the calibration frames)."""
        cam = self.rig.camera
        if self._armed_exposure != exposure_us or not cam.is_armed:
            cam.disarm()
            self._armed_exposure = None
            cam.configure(exposure_us=float(exposure_us), trigger="software")
            cam.arm()
            self._armed_exposure = exposure_us
        for _ in range(n):
            self._check_cancel()
            cam.trigger()
            frame = cam.grab()
            yield frame.image
            self._tick()

    def _mean(self, n: int, exposure_us: float) -> np.ndarray:
        mean, _, _ = mean_frame(self._frames(n, exposure_us))
        return mean

    def _light_state(self, state: int, levels: Sequence[int]) -> None:
        self.rig.light.set_levels(list(levels))
        self.rig.light.select_state(state)

    def _move(self, xy: tuple[float, float]) -> None:
        st = self.cfg.stage
        (x0, x1), (y0, y1) = st.x_limits_mm, st.y_limits_mm
        if not (x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1):
            raise CalibrationError(
                f"calibration position ({xy[0]:.2f}, {xy[1]:.2f}) mm is outside the stage limits "
                f"x {st.x_limits_mm}, y {st.y_limits_mm}; set --target or a smaller span")
        self.rig.move_to(xy)
        time.sleep(st.settle_s)

    # -- reference targets ---------------------------------------------------------------------
    def field_mm(self) -> tuple[float, float]:
        pix = float(self.cfg.scan.pixel_size_mm)
        return self.shape[1] * pix, self.shape[0] * pix

    def _place_target(self, kind: str) -> tuple[float, float]:
        """Put the diffuser or fiducial plate under the camera; the stage position of its centre."""
        ox, oy = self.cfg.stage.sample_origin_mm
        if self._target != kind or self._placed is None:
            self._placed = self.rig.samples.place_target(
                kind, self.field_mm(), float(self.cfg.scan.pixel_size_mm),
                self.options.fiducial_seed)  # the simulated bench places it; a person otherwise
        if self._placed is not None:
            self._target = kind
            return self._placed
        if self._target != kind:
            name = {"diffuser": "reference diffuser plate",
                    "fiducial": "fiducial (dot) plate"}[kind]
            if self.prompt is not None and not self.prompt(
                    f"Place the {name} on the stage, centred in the sample nest, then continue."):
                raise CalibrationCancelled(f"no {name}: calibration cancelled")
            self._target = kind
        if self.options.target_xy_mm is not None:
            return tuple(self.options.target_xy_mm)  # type: ignore[return-value]
        s = self.cfg.sample
        return ox + s.width_mm / 2, oy + s.length_mm / 2

    # -- steps ---------------------------------------------------------------------------------
    def _dark_at(self, cal: Calibration, exposure_us: float, updated: list[str]):
        """The session's dark at this exposure, measured now if the calibration has none."""
        d = cal.dark_for(exposure_us)
        if d is None:
            saved = (self._step, self._done, self._total)
            self._begin("dark", f"dark frame at {exposure_us:g} us (needed by this step)")
            self.rig.light.all_off()
            d = measure_dark(self._frames(self.options.dark_frames, exposure_us), exposure_us)
            cal.dark[d.exposure_us] = d
            updated.append("dark")
            self._step, self._done, self._total = saved
        return d

    def _dark(self, cal: Calibration, updated: list[str]) -> None:
        exposures = self._exposures()
        self._begin("dark", f"dark frames, lights off, {len(exposures)} exposure(s)")
        self.rig.light.all_off()
        for e in exposures:
            cal.dark[e] = measure_dark(self._frames(self.options.dark_frames, e), e)
            log.info("dark %g us: %s", e, cal.dark[e].stats)

    def _state_means(self, levels: Sequence[int], dark: Any, valid: np.ndarray) -> np.ndarray:
        out = []
        for k in range(L.N_STATES):
            self._light_state(k, levels)
            sig = self._mean(self.options.led_frames, self.exposure_us) - dark.mean
            out.append(float(sig[valid].mean()))
        return np.asarray(out)

    def _leds(self, cal: Calibration, updated: list[str]) -> None:
        dark = self._dark_at(cal, self.exposure_us, updated)
        xy = self._place_target("diffuser")
        self._begin("leds", "LED balance on the reference diffuser")
        self._move(xy)
        valid = np.ones(dark.shape, bool)
        valid.reshape(-1)[dark.hot_pixels] = False
        before_levels = tuple(int(v) for v in self.rig.light.levels())
        before = self._state_means(before_levels, dark, valid)
        response = np.zeros(L.N_FACETS)
        for f in range(L.N_FACETS):
            levels = [0] * L.N_FACETS
            levels[f] = L.MEASURE_LEVEL
            self._light_state(f % L.N_STATES, levels)
            sig = self._mean(self.options.led_frames, self.exposure_us) - dark.mean
            response[f] = float(sig[valid].mean()) / L.MEASURE_LEVEL
        if not np.all(response > 0):
            raise CalibrationError(f"facet(s) {np.flatnonzero(response <= 0).tolist()} give no "
                                   "light on the reference: check the ring light and its cable")
        levels = L.balance_levels(response)
        after = self._state_means(levels, dark, valid)
        passes = 1
        if L.spread(after) > L.LED_TOLERANCE:
            levels = L.refine_levels(levels, after)
            after = self._state_means(levels, dark, valid)
            passes = 2
        self.rig.light.set_levels(list(levels))  # the flat that follows must use them
        cal.leds = LedBalance(
            levels, response, before, after, before_levels, now_iso(),
            f"per-facet response on the reference diffuser ({self.options.led_frames} frames "
            f"per facet at PWM {L.MEASURE_LEVEL}, partner facet off); levels = dimmest facet "
            f"at {L.LEVEL_MAX} / response; {passes} pass(es) on the state means",
            {"spread_before": round(L.spread(before), 5), "spread_after": round(L.spread(after),
                                                                                 5),
             "passes": passes, "exposure_us": self.exposure_us})

    def _flat(self, cal: Calibration, updated: list[str]) -> None:
        dark = self._dark_at(cal, self.exposure_us, updated)
        xy = self._place_target("diffuser")
        self._begin("flat", "flat field per state on the reference diffuser")
        self._move(xy)
        levels = tuple(int(v) for v in self.rig.light.levels())
        n = self.options.flat_frames

        def states() -> Iterator[np.ndarray]:
            for k in range(L.N_STATES):
                self._light_state(k, levels)
                yield self._mean(n, self.exposure_us)

        flat = measure_flat(states(), dark, levels, self.exposure_us, n)
        # residual: fresh frames of the same plate, corrected as the detector will see them
        corrector = StackCorrector(dark, flat, cal.black_level_dn)
        residual_p2p, residual_rms = [], []
        for k in range(L.N_STATES):
            self._light_state(k, levels)
            mean = self._mean(FLAT_VERIFY_FRAMES, self.exposure_us)
            fixed = corrector.correct_frame(np.rint(mean).astype(np.uint16), k)
            nu = nonuniformity(fixed.astype(np.float32) - cal.black_level_dn, dark.hot_pixels)
            residual_p2p.append(round(nu["p2p"], 5))
            residual_rms.append(round(nu["rms"], 5))
        flat.stats["residual_nonuniformity_p2p"] = residual_p2p
        flat.stats["residual_nonuniformity_rms"] = residual_rms
        cal.flat = flat

    def _registration(self, cal: Calibration, updated: list[str]) -> None:
        dark = self._dark_at(cal, self.exposure_us, updated)
        centre = self._place_target("fiducial")
        o = self.options
        offsets = stage_offsets(self.field_mm(), o.registration_grid, o.registration_span)
        self._begin("registration", f"fiducial plate at {len(offsets)} stage positions")
        levels = tuple(int(v) for v in self.rig.light.levels())
        self._light_state(REGISTRATION_STATE, levels)
        hot = dark.hot_pixels

        def grab_at(xy: tuple[float, float]) -> np.ndarray:
            self._move(xy)
            (img,) = list(self._frames(1, self.exposure_us))
            x = img.astype(np.float32) - dark.mean
            x.reshape(-1)[hot] = 0.0
            return bin2x2(x)

        ref = grab_at(centre)
        shifts, peaks = [], []
        for d in offsets:
            img = grab_at((centre[0] + d[0], centre[1] + d[1]))
            dr, dc, peak = phase_correlation(ref, img)
            shifts.append((2.0 * dc, 2.0 * dr))
            peaks.append(peak)
        self._move(centre)
        reg = fit_registration(offsets, np.asarray(shifts), float(self.cfg.scan.pixel_size_mm),
                               peaks)
        reg.stats["centre_xy_mm"] = [round(v, 4) for v in centre]
        cal.registration = reg
