"""The composition root: from a station config to the rig, its calibration and the detector.

Every command that needs any of these (`scan`, `gui`, `calibrate`, `infer`) builds them here,
so a recording made by `scan` and inspected again by `infer` meets the same detector settings
and the same dark / flat correction. Nothing else wires config -> rig -> calibration -> detector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.apply import apply_to_rig, attach_to_detector, station_calibration
from calibration.store import Calibration, CalibrationError, find_calibration
from rig.config import ConfigError, StationConfig, load_config, parse_config

log = logging.getLogger(__name__)


def load_station_config(path: str | Path | None = None, *, sim: bool = False,
                        seed: int | None = None) -> StationConfig:
    """The station file (default: the bundled sim profile), optionally switched to the
    simulated devices and given the seed of the first virtual sample."""
    cfg = load_config(path)
    if sim:
        cfg = cfg.simulated()
    if seed is not None:
        cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"seed": seed})})
    return cfg


def open_rig(cfg: StationConfig, calibration: Calibration | None) -> Any:
    """Open every device of the station and make it use the calibration (LED levels, RoI
    layout in measured pixels, the id every recording carries). Close it (or use `with`)."""
    from rig.rig import build_rig

    rig = build_rig(cfg)
    try:
        if calibration is not None:
            apply_to_rig(rig, calibration)
            log.info("rig uses calibration %s", calibration.calibration_id)
    except BaseException:
        rig.close()
        raise
    return rig


def build_detector(cfg: StationConfig, calibration: Calibration | None,
                   model: str | Path | None = None, **engine: Any) -> Any:
    """The detector with the station's `[detector]` settings and the calibration's dark /
    flat correction for the configured exposure. `engine` options go to the Detector
    (device, amp_dtype, channels_last, compile)."""
    from inference.detector import Detector

    detector = Detector.from_settings(cfg.detector, model_path=model, **engine)
    if calibration is not None and attach_to_detector(detector, calibration,
                                                      cfg.camera.exposure_us):
        log.info("detector corrects frames with calibration %s", calibration.calibration_id)
    return detector


@dataclass(frozen=True)
class RecordedStation:
    """What a recording says it was made with, resolved for inspecting it again."""

    cfg: StationConfig
    calibration: Calibration | None
    note: str  # one line for the user: which settings and correction are used

    @property
    def key(self) -> tuple[str, str]:
        """Recordings with equal keys can share one detector."""
        cal = self.calibration.calibration_id if self.calibration is not None else ""
        return (self.cfg.model_dump_json(include={"detector", "camera"}), cal)


def recorded_station(rig_config: dict[str, Any], calibration_id: str,
                     calibrations_dir: Path | None = None) -> RecordedStation:
    """The station config stored in a recording and the calibration it names.

    A recording whose config no longer parses, or whose calibration is not in the
    calibrations folder, is inspected with the bundled defaults / without correction, and
    `note` says so (it is printed), so a re-inference never differs from the scan silently.
    """
    notes = []
    try:
        cfg = parse_config(rig_config, "the recording's rig_config")
    except ConfigError as exc:
        cfg = load_config()
        notes.append(f"its station settings do not parse ({exc}); using the bundled defaults")
    calibration = None
    if calibration_id:
        folder = calibrations_dir or cfg.paths.calibrations
        try:
            calibration = find_calibration(folder, calibration_id)
        except CalibrationError:
            notes.append(f"calibration {calibration_id} is not in {folder}: no dark/flat "
                         "correction (pass --calibrations DIR)")
    used = f"calibration {calibration_id}" if calibration is not None else "no calibration"
    return RecordedStation(cfg, calibration, "; ".join(notes) or
                           f"recorded [detector] settings, {used}")


__all__ = ["RecordedStation", "build_detector", "load_station_config", "open_rig",
           "recorded_station", "station_calibration"]
