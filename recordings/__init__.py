"""The on-disk recording format: the contract between rig, inference and the GUI.

Imports nothing from the station's other packages. See docs/recording-format.md.
"""

from recordings.errors import RecordingError
from recordings.reader import Recording, Roi, damage_reported, open_recording
from recordings.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    DetectedObject,
    DetectionResults,
    RoiTruth,
    check_sample_id,
    verdict_of,
)
from recordings.verify import VerifyReport, verify_recording
from recordings.writer import RecordingWriter, add_results

__all__ = [
    "check_sample_id", "FORMAT_NAME", "FORMAT_VERSION", "DetectedObject", "DetectionResults", "Recording",
    "RecordingError", "RecordingWriter", "Roi", "RoiTruth", "VerifyReport", "add_results",
    "damage_reported", "open_recording", "verdict_of", "verify_recording",
]
