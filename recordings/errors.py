"""Re-exported from the station's one error hierarchy (errors.py)."""

from errors import RecordingError

__all__ = ["RecordingError"]
