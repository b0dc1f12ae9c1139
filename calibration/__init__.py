"""Calibration: dark frames, flat fields per illumination state, stage/camera registration and
LED balance; versioned calibration files, and the hooks that make the rig and the detector use
them. See docs/calibration.md.

Imports `rig` and `recordings` only (never `inference` or `gui`): the detector takes the
correction through its duck-typed `raw_correction` attribute.
"""

from calibration.apply import StackCorrector, apply_to_rig, attach_to_detector, corrector_for
from calibration.store import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Calibration,
    CalibrationError,
    DarkFrame,
    FlatField,
    LedBalance,
    Registration,
    find_calibration,
    latest_calibration,
    list_calibrations,
    load_calibration,
    save_calibration,
)

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "Calibration", "CalibrationError", "DarkFrame", "FlatField",
    "LedBalance", "Registration", "StackCorrector", "apply_to_rig", "attach_to_detector",
    "corrector_for", "find_calibration", "latest_calibration", "list_calibrations",
    "load_calibration", "save_calibration",
]
