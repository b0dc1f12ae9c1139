"""Turn exceptions into words an operator can act on: what happened, and what to do now.

Matching is by exception class name along the MRO, so the window needs no import of every
driver (and keeps working when a new controller brings its own subclasses). The driver's own
message is kept under the headline: the drivers already say where (port, RoI, frame id).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlainError:
    headline: str
    detail: str
    action: str

    def text(self) -> str:
        return f"{self.headline}\n{self.detail}\nWhat to do: {self.action}"


# class name -> (headline, action); the first match along the MRO wins.
_KNOWN: dict[str, tuple[str, str]] = {
    "StageConnectionError": ("The XY stage does not answer.",
                             "check the stage controller's USB cable and power, then press Start "
                             "again (the recording so far is kept and can be resumed)."),
    "StageTimeoutError": ("The XY stage did not reach its position in time.",
                          "make sure nothing blocks the stage, then press Start again."),
    "StageAlarmError": ("The XY stage went into alarm (limit switch or emergency stop).",
                        "clear the cause, check the glass is seated, then press Start again; "
                        "the stage re-homes first."),
    "StageLimitError": ("A move was outside the stage's safe travel.",
                        "check [stage] sample_origin_mm and the limits in the station file."),
    "StageCommandError": ("The stage controller rejected a command.",
                          "restart the station software; if it repeats, call maintenance."),
    "StageMotionError": ("The stage stopped before reaching its position.",
                         "check for a feed hold or obstruction, then press Start again."),
    "StageError": ("The XY stage reported a fault.", "check the stage, then press Start again."),
    "FrameTimeout": ("The camera delivered no image in time.",
                     "check the camera cable and the trigger cable from the ring light, then "
                     "press Start again."),
    "DroppedFrame": ("The camera lost an image; the RoI was not recorded.",
                     "press Start again to re-capture it; if it repeats, check the camera's "
                     "network or USB link."),
    "CameraDisconnected": ("The camera disconnected.",
                           "check the camera's cable and power; during a scan the station "
                           "reopens it by itself for [scan] reconnect_s, then press Start to "
                           "finish the sample (what was recorded is kept)."),
    "CameraNotFound": ("No camera was found.",
                       "check the camera is powered and connected, and [camera] serial in the "
                       "station file."),
    "FeatureNotSupported": ("The camera lacks a feature the station needs.",
                            "check the camera model and the [camera] settings."),
    "CameraError": ("The camera reported a fault.", "check the camera, then press Start again."),
    "RingLightError": ("The ring light reported a fault.",
                       "check the ring-light controller's cable and power, then press Start."),
    "LightError": ("The ring light reported a fault.",
                   "check the ring-light controller's cable and power, then press Start."),
    "ConnectionLost": ("A device was lost and did not come back.",
                       "check the named device's cable and power, then press Start: the "
                       "sample resumes where it stopped."),
    "DeviceTimeout": ("A device did not answer in time.", "check cables and power, then retry."),
    "ProtocolError": ("A device answered something the station does not understand.",
                      "check the firmware version and the port in the station file."),
    "DeviceAlarm": ("A device is in an alarm state.", "clear the cause, then press Start."),
    "ModelError": ("The detector model cannot be used.",
                   "check [detector] model in the station file, or reinstall the bundled "
                   "model; the log names the file and the problem."),
    "CalibrationError": ("The calibration cannot be used.",
                         "run the calibration again from the Calibration tab, or set "
                         "[calibration] use = \"\" to scan without one."),
    "DatasetError": ("The image folder cannot be used for training.",
                     "fix the named file or folder and try again."),
    "RecordingError": ("The recording could not be written or read.",
                       "check free disk space and the recordings folder, then try again."),
    "ConfigError": ("The station file is not valid.", "correct the named key and restart."),
    "OSError": ("A file or device could not be used.",
                "check disk space, cables and permissions, then try again."),
    "TimeoutError": ("A device did not answer in time.", "check cables and power, then retry."),
    "MemoryError": ("The computer ran out of memory.", "close other programs and restart."),
}


def plain_error(exc: BaseException | str) -> PlainError:
    if isinstance(exc, str):
        return PlainError("The inspection stopped with an error.", exc,
                          "check the devices and the log (logs/station.log), then try again.")
    detail = str(exc) or type(exc).__name__
    for cls in type(exc).__mro__:
        if cls.__name__ in _KNOWN:
            headline, action = _KNOWN[cls.__name__]
            return PlainError(headline, detail, action)
    return PlainError("Something went wrong.", f"{type(exc).__name__}: {detail}",
                      "note the time, check logs/station.log and call maintenance if it repeats.")
