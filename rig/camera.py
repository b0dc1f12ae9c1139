"""One camera interface for the station, whatever sits behind it (Basler pylon, any GenTL
producer through harvesters, or the simulated bench camera).

Why a common base class rather than three free-standing drivers: the things that keep a scan
honest are the same for every backend and must not be re-implemented (and re-broken) per
vendor:

* every wait has a timeout, by default ``exposure + readout + margin`` for one frame;
* frame ids are checked, so a frame the transport lost is reported as `DroppedFrame`, never
  silently replaced by the next one (a stack with a missing state is not a stack);
* the illumination-state hint of a frame follows from the armed state sequence and the frame id,
  so a drop cannot shift every later frame onto the wrong state.

Backends implement a handful of small ``_methods`` (open, apply settings, start, stop, software
trigger, retrieve one raw frame); `open_camera` picks one by name from the station config. The
hardware libraries are imported only inside the backend modules (``rig/cameras/*.py``).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from errors import ConnectionLost, DeviceError, DeviceTimeout

if TYPE_CHECKING:
    from rig.config import CameraSettings

log = logging.getLogger(__name__)

FeatureValue = bool | int | float | str
TriggerSource = Literal["hardware", "software", "off"]
"""``hardware``: a pulse on the trigger line (Line1, from the ring light) starts each exposure;
``software``: `Camera.trigger` starts it; ``off``: free running (live view only)."""

# Paper / station defaults (README, station file); each is a setting.
DEFAULT_PIXEL_FORMAT = "BayerGR12"
DEFAULT_WIDTH = 3504
DEFAULT_HEIGHT = 3120
DEFAULT_EXPOSURE_US = 20000.0
DEFAULT_READOUT_S = 0.06
DEFAULT_TIMEOUT_MARGIN_S = 1.0
DEFAULT_TRIGGER_LINE = "Line1"
HEARTBEAT_NODE = "GevHeartbeatTimeout"  # SFNC, ms; pylon keeps it in its transport layer

# Backend name -> "module:Class"; imported only when chosen so nothing else needs the libraries.
BACKENDS: dict[str, str] = {
    "pylon": "rig.cameras.pylon:PylonCamera",
    "genicam": "rig.cameras.genicam:GenicamCamera",
    "sim": "rig.cameras.sim:SimCamera",
}


# -- errors --------------------------------------------------------------------------------------
class CameraError(DeviceError):
    """Any camera failure; the message names the camera and says what to check."""


class CameraNotFound(CameraError):
    """No camera matches the requested serial number / index."""


class FeatureNotSupported(CameraError):
    """The device (or its GenTL producer) lacks a feature the station needs."""

    def __init__(self, feature: str, device: str, detail: str = ""):
        self.feature = feature
        self.device = device
        msg = f"{device} does not support {feature}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class FrameTimeout(CameraError, DeviceTimeout):
    """No frame arrived within the per-frame timeout (late, never triggered, or stalled)."""


class DroppedFrame(CameraError):
    """Frames were lost: a gap in the frame ids, or a buffer the transport failed to fill.

    ``missing_ids`` are the ids that will never arrive. ``frame`` is the good frame that
    revealed the gap (None when the failed buffer itself is the report); it is handed over so
    the caller can decide, but it is *not* returned by `grab` in place of the lost one.
    """

    def __init__(self, message: str, missing_ids: Sequence[int], frame: Frame | None = None):
        super().__init__(message)
        self.missing_ids = tuple(missing_ids)
        self.frame = frame


class CameraDisconnected(CameraError, ConnectionLost):
    """The device went away (cable, power, a transport failure, emulator told to disconnect);
    the scan reopens it (`Rig.reconnect`) and takes the interrupted RoI again."""


# -- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One RAW frame. ``image`` is uint16 (H, W), read-only; copy it to modify."""

    image: np.ndarray = field(repr=False)
    frame_id: int
    timestamp_s: float  # host clock (time.time()) when the frame was received
    state: int | None = None  # illumination state, where known (armed sequence or bench)
    device_timestamp: int | None = None  # camera clock ticks; None where the device has none
    exposure_us: float | None = None
    pixel_format: str = DEFAULT_PIXEL_FORMAT
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.image.shape
        return int(h), int(w)


@dataclass(frozen=True)
class CameraInfo:
    """What `list_cameras` and `Camera.info` report about a device."""

    backend: str
    serial: str
    model: str = ""
    vendor: str = ""
    name: str = ""
    index: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        label = self.name or f"{self.vendor} {self.model}".strip() or "camera"
        if self.serial and self.serial not in label:
            label += f" serial={self.serial}"
        return f"[{self.backend}] {label}"


@dataclass(frozen=True)
class AcquisitionSettings:
    """What `Camera.configure` pushes to the device. ``None`` leaves a feature as the device has
    it (needed for producers such as viky.cti that have no exposure or gain at all)."""

    pixel_format: str = DEFAULT_PIXEL_FORMAT
    width: int | None = DEFAULT_WIDTH
    height: int | None = DEFAULT_HEIGHT
    exposure_us: float | None = DEFAULT_EXPOSURE_US
    gain_db: float | None = 0.0
    trigger: TriggerSource = "hardware"
    trigger_line: str = DEFAULT_TRIGGER_LINE
    readout_s: float = DEFAULT_READOUT_S
    timeout_margin_s: float = DEFAULT_TIMEOUT_MARGIN_S
    features: tuple[tuple[str, FeatureValue], ...] = ()
    """GenICam node = value, written in order after the settings above (transport settings
    first, then ``[camera.features]``)."""

    def __post_init__(self) -> None:
        if self.trigger not in ("hardware", "software", "off"):
            raise ValueError(f"trigger must be hardware, software or off, not {self.trigger!r}")
        if self.exposure_us is not None and self.exposure_us <= 0:
            raise ValueError(f"exposure_us must be positive, not {self.exposure_us}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and (v <= 0 or v % 2):
                raise ValueError(f"{name} must be a positive even number (Bayer phase), not {v}")
        if self.readout_s < 0 or self.timeout_margin_s < 0:
            raise ValueError("readout_s and timeout_margin_s must not be negative")

    @property
    def frame_timeout_s(self) -> float:
        """Longest honest wait for one triggered frame: exposure + readout + margin."""
        return (self.exposure_us or 0.0) * 1e-6 + self.readout_s + self.timeout_margin_s

    @classmethod
    def from_config(cls, cam: CameraSettings) -> AcquisitionSettings:
        """From the station file's ``[camera]`` section (rig.config.CameraSettings)."""
        return cls(
            pixel_format=cam.pixel_format,
            width=cam.width,
            height=cam.height,
            exposure_us=cam.exposure_us,
            gain_db=cam.gain_db,
            trigger=cam.trigger,
            trigger_line=getattr(cam, "trigger_line", DEFAULT_TRIGGER_LINE),
            readout_s=getattr(cam, "readout_s", DEFAULT_READOUT_S),
            timeout_margin_s=getattr(cam, "frame_timeout_margin_s", DEFAULT_TIMEOUT_MARGIN_S),
            features=(*transport_features(cam), *dict(getattr(cam, "features", {})).items()),
        )


def transport_features(cam: Any) -> list[tuple[str, FeatureValue]]:
    """The ``[camera]`` transport settings as the SFNC nodes that carry them (unset: none)."""
    out: list[tuple[str, FeatureValue]] = []
    for key, node in (("heartbeat_timeout_ms", HEARTBEAT_NODE),
                      ("packet_size_bytes", "GevSCPSPacketSize"),
                      ("inter_packet_delay_ticks", "GevSCPD")):
        if (value := getattr(cam, key, None)) is not None:
            out.append((node, int(value)))
    if (limit := getattr(cam, "throughput_limit_bytes_s", None)) is not None:
        out += [("DeviceLinkThroughputLimitMode", "On"), ("DeviceLinkThroughputLimit", int(limit))]
    return out


@dataclass(frozen=True)
class RawFrame:
    """What a backend hands to the base class: one buffer as the device delivered it."""

    image: np.ndarray | None
    frame_id: int
    ok: bool = True
    error: str = ""
    device_timestamp: int | None = None
    state: int | None = None  # known to the backend (the simulated bench knows what was lit)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class CameraStats:
    """Counters since `open`, for the device panel and the scan report."""

    frames: int = 0
    dropped_ids: list[int] = field(default_factory=list)
    timeouts: int = 0
    triggers: int = 0
    arms: int = 0


class FrameIdTracker:
    """Detects gaps in a stream of frame ids (reset at every arm).

    ``first_id`` is the id the device gives the first frame after start, where the backend knows
    it; then even a lost first frame is detected. Otherwise the first frame sets the base.
    """

    def __init__(self, first_id: int | None = None):
        self.first_id = first_id
        self.expected = first_id

    def check(self, frame_id: int) -> list[int]:
        """Ids missing before ``frame_id`` (empty when in sequence)."""
        if self.expected is None:
            self.first_id = self.expected = frame_id
        missing: list[int] = []
        if frame_id > self.expected:
            missing = list(range(self.expected, frame_id))
        elif frame_id < self.expected:
            raise CameraError(
                f"frame id went backwards ({frame_id} after {self.expected - 1}): the device "
                "restarted its acquisition without being re-armed"
            )
        self.expected = frame_id + 1
        return missing

    def slot(self, frame_id: int) -> int | None:
        """Position of ``frame_id`` in the armed sequence (0 = first frame after arm)."""
        return None if self.first_id is None else frame_id - self.first_id


# -- the interface -------------------------------------------------------------------------------
class Camera(ABC):
    """Lifecycle: ``open`` -> ``configure`` -> ``arm`` -> (``trigger``) ``grab`` ... ->
    ``disarm`` -> ``close``; also a context manager (``with open_camera(cfg) as cam``).

    Thread use: one thread drives the camera; `trigger` may come from another thread. Backends
    fill in the ``_methods``.
    """

    backend: ClassVar[str] = ""

    def __init__(self, serial: str = "", index: int | None = None):
        if serial and index is not None:
            raise ValueError("open a camera by serial or by index, not both")
        self.serial = serial
        self.index = index
        self._info: CameraInfo | None = None
        self._settings = AcquisitionSettings()
        self._armed = False
        self._configured = False
        self._states: tuple[int, ...] = ()
        self._tracker = FrameIdTracker()
        self._lock = threading.RLock()
        self.stats = CameraStats()

    # -- backend hooks -----------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> CameraInfo: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _apply(self, settings: AcquisitionSettings) -> AcquisitionSettings:
        """Push settings to the device; return them as the device took them."""

    @abstractmethod
    def _start(self) -> int | None:
        """Start acquisition; return the id the first frame will carry, if known."""

    @abstractmethod
    def _stop(self) -> None: ...

    @abstractmethod
    def _software_trigger(self, timeout_s: float) -> None: ...

    @abstractmethod
    def _retrieve(self, timeout_s: float) -> RawFrame | None:
        """One buffer, or None when nothing arrived within ``timeout_s``."""

    def _write_feature(self, name: str, value: FeatureValue) -> FeatureValue:
        """Write one GenICam node; return the value the device took. Unknown node:
        `FeatureNotSupported`; read-only or refused value: `CameraError`."""
        raise FeatureNotSupported(name, self._who(), "this backend has no node map")

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._info is not None

    @property
    def is_armed(self) -> bool:
        return self._armed

    @property
    def info(self) -> CameraInfo:
        if self._info is None:
            raise CameraError(f"{self.backend} camera {self._who()} is not open")
        return self._info

    @property
    def settings(self) -> AcquisitionSettings:
        return self._settings

    @property
    def frame_timeout_s(self) -> float:
        return self._settings.frame_timeout_s

    def _who(self) -> str:
        if self._info is not None:
            return self._info.describe()
        if self.serial:
            return f"[{self.backend}] serial={self.serial}"
        return f"[{self.backend}] index={self.index or 0}"

    def open(self) -> Camera:
        with self._lock:
            if self._info is None:
                self._info = self._open()
                self._configured = False
                self.stats = CameraStats()
                log.info("opened %s", self._info.describe())
        return self

    def close(self) -> None:
        """Disarm and release the device; safe to call twice and after errors."""
        with self._lock:
            if self._info is None:
                return
            try:
                if self._armed:
                    self.disarm()
            except CameraError as exc:
                log.warning("%s: disarm on close failed: %s", self._who(), exc)
            finally:
                self._armed = False
                try:
                    self._close()
                finally:
                    log.info("closed %s", self._info.describe())
                    self._info = None

    def __enter__(self) -> Camera:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; `close` is the contract
        try:
            if getattr(self, "_info", None) is not None:
                self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    # -- configuration -----------------------------------------------------------------------
    def configure(self, settings: AcquisitionSettings | None = None,
                  **changes: Any) -> AcquisitionSettings:
        """Apply ``settings`` (or the current ones with ``changes``) to the device."""
        new = replace(settings or self._settings, **changes)
        with self._lock:
            self._require_open()
            if self._armed:
                raise CameraError(f"{self._who()}: disarm before changing settings")
            self._configured = False
            applied = self._apply(new)
            for name, value in new.features:
                self._write_feature(name, value)
            self._settings = replace(applied, features=new.features)
            self._configured = True
            log.debug("%s configured: %s", self._who(), self._settings)
            return self._settings

    # -- acquisition -------------------------------------------------------------------------
    def arm(self, states: Sequence[int] | None = None) -> None:
        """Start acquisition and wait for triggers. ``states``: the illumination states the
        next frames belong to, in order (they repeat), so frames carry a state hint."""
        with self._lock:
            self._require_open()
            if not self._configured:
                raise CameraError(f"{self._who()}: configure() before arm(), so the device "
                                  "and the timeouts agree on exposure and trigger")
            if self._armed:
                self.disarm()
            self._states = tuple(states) if states is not None else ()
            first = self._start()
            self._tracker = FrameIdTracker(first)
            self._armed = True
            self.stats.arms += 1

    def disarm(self) -> None:
        with self._lock:
            if self._armed:
                self._armed = False
                self._stop()

    def trigger(self) -> None:
        """Software trigger of one frame (trigger source must be ``software``)."""
        self._require_armed()
        if self._settings.trigger != "software":
            raise CameraError(
                f"{self._who()}: software trigger while the trigger source is "
                f"{self._settings.trigger!r}; configure(trigger='software') first"
            )
        self._software_trigger(self.frame_timeout_s)
        self.stats.triggers += 1

    def grab(self, timeout: float | None = None) -> Frame:
        """The next frame. Raises `FrameTimeout` after ``timeout`` (default: the per-frame
        timeout), `DroppedFrame` when frames were lost before this one."""
        self._require_armed()
        wait = self.frame_timeout_s if timeout is None else timeout
        raw = self._retrieve(wait)
        if raw is None:
            self.stats.timeouts += 1
            s = self._settings
            budget = (f"exposure {(s.exposure_us or 0) / 1000:.1f} ms + readout "
                      f"{s.readout_s:.3f} s + margin {s.timeout_margin_s:.3f} s")
            raise FrameTimeout(
                f"{self._who()}: no frame within {wait:.3f} s "
                f"({budget if timeout is None else 'timeout given by the caller'}); "
                f"trigger source {s.trigger}"
                + (f" on {s.trigger_line}: check the trigger cable and that the ring light "
                   "sequence is armed" if s.trigger == "hardware" else "")
            )
        missing = self._tracker.check(raw.frame_id)
        if not raw.ok:
            lost = [*missing, raw.frame_id]
            self.stats.dropped_ids.extend(lost)
            raise DroppedFrame(
                f"{self._who()}: frame {raw.frame_id} failed in transfer ({raw.error or 'no reason'})"
                + (f"; also missing ids {missing}" if missing else ""), lost)
        frame = self._make_frame(raw)
        self.stats.frames += 1
        if missing:
            self.stats.dropped_ids.extend(missing)
            raise DroppedFrame(
                f"{self._who()}: {len(missing)} frame(s) dropped before frame {raw.frame_id} "
                f"(missing ids {missing}); the frame that arrived is attached, not substituted",
                missing, frame)
        return frame

    def grab_sequence(self, count: int, timeout: float | None = None,
                      software_trigger: bool | None = None) -> list[Frame]:
        """``count`` frames, firing a software trigger before each one when the trigger source
        is software (or ``software_trigger`` says so). Any drop or timeout raises."""
        fire = self._settings.trigger == "software" if software_trigger is None else software_trigger
        frames = []
        for _ in range(count):
            if fire:
                self.trigger()
            frames.append(self.grab(timeout))
        return frames

    def _make_frame(self, raw: RawFrame) -> Frame:
        assert raw.image is not None
        image = raw.image
        s = self._settings
        if s.width is not None and s.height is not None and image.shape != (s.height, s.width):
            raise CameraError(f"{self._who()}: frame {raw.frame_id} has shape {image.shape}, "
                              f"expected {(s.height, s.width)}")
        if image.dtype != np.uint16:
            image = image.astype(np.uint16)
        if image.flags.writeable:
            image.flags.writeable = False
        state = raw.state
        if state is None and self._states:
            slot = self._tracker.slot(raw.frame_id)
            if slot is not None:
                state = self._states[slot % len(self._states)]
        return Frame(
            image=image,
            frame_id=raw.frame_id,
            timestamp_s=time.time(),
            state=state,
            device_timestamp=raw.device_timestamp,
            exposure_us=self._settings.exposure_us,
            pixel_format=self._settings.pixel_format,
            meta=MappingProxyType(dict(raw.meta)),
        )

    def _require_open(self) -> None:
        if self._info is None:
            raise CameraError(f"{self._who()} is not open")

    def _require_armed(self) -> None:
        self._require_open()
        if not self._armed:
            raise CameraError(f"{self._who()} is not armed; call arm() first")


# -- factory -------------------------------------------------------------------------------------
def camera_class(backend: str) -> type[Camera]:
    """The Camera subclass for a backend name (imports its hardware library)."""
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise CameraError(
            f"unknown camera backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        ) from None
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CameraError(f"camera backend {backend!r} cannot load: {exc}") from exc
    return getattr(module, cls_name)


def open_camera(settings: CameraSettings, *, index: int | None = None,
                configure: bool = True, **backend_options: Any) -> Camera:
    """Open (and configure) the camera a station's ``[camera]`` section describes.

    ``settings.backend`` picks the backend; ``settings.serial`` (empty: first camera, or
    ``index``) picks the device. ``backend_options`` go to the backend (e.g. ``bench=`` for sim,
    ``cti=`` for genicam). The camera is returned open; use it as a context manager.
    """
    cls = camera_class(settings.backend)
    serial = settings.serial or ""
    options = dict(backend_options)
    if settings.backend == "genicam" and settings.cti and "cti" not in options:
        options["cti"] = settings.cti
    cam = cls(serial=serial, index=None if serial else index, **options)
    cam.open()
    if configure:
        try:
            cam.configure(AcquisitionSettings.from_config(settings))
        except BaseException:
            cam.close()
            raise
    return cam


def list_cameras(backend: str, **options: Any) -> list[CameraInfo]:
    """Cameras a backend can see now (empty list when none)."""
    module_name = BACKENDS[backend].split(":")[0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CameraError(f"camera backend {backend!r} cannot load: {exc}") from exc
    return module.list_cameras(**options)
