"""The station's one error hierarchy and its exit codes.

Every error meant for the user derives from `StationError`; its message names what failed and
what to do. `main.py` turns any of them into one line on stderr and `EXIT_ERROR`. Device errors
say which kind of failure it was, whatever the device: the connection was lost, a reply did not
come in time, a reply made no sense, or the device raised an alarm. Each driver keeps its own
subclasses (`StageTimeoutError` is a `DeviceTimeout`), so callers can catch either.

This module imports nothing: every package may use it.
"""

from __future__ import annotations

EXIT_OK = 0  # success: every sample PASS, every check passed
EXIT_FAIL = 1  # a FAIL verdict or a failed check
EXIT_ERROR = 2  # an error: bad config or file, device fault, incomplete sample
EXIT_INTERNAL = 3  # a bug: an exception nobody anticipated (details in the log file)


class StationError(Exception):
    """Base of every error meant for the user (one line, no traceback)."""


class ConfigError(StationError):
    """A station file or option that cannot be used."""


class RecordingError(StationError):
    """A recording that cannot be read or written as asked."""


class ModelError(StationError):
    """A detector or classifier model that cannot be loaded or used."""


class DatasetError(StationError):
    """A folder of labelled images (or simulated crops) that cannot be used for training."""


class CalibrationError(StationError):
    """A calibration that cannot be made, read or used."""


class DeviceError(StationError):
    """Any failure of the stage, the ring light or the camera."""


class ConnectionLost(DeviceError):
    """The device cannot be reached: port or camera missing, cable pulled, device reset."""


class DeviceTimeout(DeviceError):
    """No reply, frame or completed move within the time it should have taken."""


class ProtocolError(DeviceError):
    """The device answered, but not in a way the driver understands."""


class DeviceAlarm(DeviceError):
    """The device reported an alarm or fault state and refuses to continue."""


def describe_validation_error(error: dict, root: str = "(file)", unknown_hint: str = "",
                              max_value_chars: int | None = None) -> str:
    """One line for one pydantic error (an ErrorDetails dict): the key, the bad value, why."""
    key = ".".join(str(p) for p in error["loc"]) or root
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key{unknown_hint}"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    value = repr(error.get("input"))
    return f"{key} = {value[:max_value_chars] if max_value_chars else value}: {error['msg']}"
