"""Any GenICam camera through a GenTL producer (.cti) with harvesters.

Producers come from ``GENICAM_GENTL64_PATH`` (the standard variable the vendors' installers
set) or an explicit ``cti`` path. The ``genicam`` package bundles ``viky.cti``, a producer with
three simulated devices (serials 0, 1, 2) that CI uses. It is deliberately minimal: Mono8 and
RGBa8 only, free-running at 20 fps, no exposure, gain or trigger features, no timestamps. Every
feature a producer lacks fails with `FeatureNotSupported` naming the feature, the device and the
producer, instead of being skipped silently.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rig.camera import (
    AcquisitionSettings,
    Camera,
    CameraDisconnected,
    CameraError,
    CameraInfo,
    CameraNotFound,
    FeatureNotSupported,
    FrameTimeout,
    RawFrame,
)

log = logging.getLogger(__name__)

GENTL_ENV = "GENICAM_GENTL64_PATH"
# Single-component layouts the station can use as RAW frames (the rest, e.g. RGBa8, are not RAW).
RAW_FORMATS = ("Mono8", "Mono10", "Mono12", "Mono16", "BayerGR8", "BayerGR10", "BayerGR12",
               "BayerGR16", "BayerRG8", "BayerRG12", "BayerGB8", "BayerGB12", "BayerBG8",
               "BayerBG12")
# One harvesters instance per producer set and process: GenTL producers are process-wide
# libraries and loading the same one twice is fragile. Harvester.update() invalidates every
# ImageAcquirer it created (measured with viky.cti), so the device list is only refreshed while
# none of its cameras is open.
_HARVESTERS: dict[tuple[str, ...], Any] = {}
_OPEN: dict[tuple[str, ...], int] = {}
_HARVESTERS_LOCK = threading.Lock()


def bundled_producer() -> Path | None:
    """The viky.cti that ships inside the ``genicam`` Python package, if installed."""
    try:
        import genicam
    except ImportError:
        return None
    path = Path(genicam.__file__).parent / "viky.cti"
    return path if path.is_file() else None


def find_producers(env: str | None = None) -> list[Path]:
    """GenTL producers named by ``GENICAM_GENTL64_PATH`` (folders are searched for *.cti)."""
    value = os.environ.get(GENTL_ENV, "") if env is None else env
    found: list[Path] = []
    for entry in filter(None, value.split(os.pathsep)):
        p = Path(entry)
        if p.is_file() and p.suffix == ".cti":
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(p.glob("*.cti")))
    return list(dict.fromkeys(found))


def _key(producers: Sequence[Path]) -> tuple[str, ...]:
    return tuple(sorted(str(p) for p in producers))


def _harvester(producers: Sequence[Path]) -> Any:
    try:
        from harvesters.core import Harvester
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise CameraError(f"harvesters is not installed or cannot load ({exc}); "
                          "run scripts/setup-env.sh") from exc
    key = _key(producers)
    with _HARVESTERS_LOCK:
        h = _HARVESTERS.get(key)
        if h is None:
            h = Harvester()
            for p in key:
                h.add_file(p, check_existence=True)
            _HARVESTERS[key] = h
            h.update()
        elif not _OPEN.get(key):
            h.update()
        return h


def _resolve_producers(cti: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if cti:
        items = [cti] if isinstance(cti, str | Path) else list(cti)
        paths = [Path(p) for p in items]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CameraError(f"GenTL producer not found: {', '.join(missing)}")
        return paths
    found = find_producers()
    if not found:
        raise CameraError(
            f"no GenTL producer: set camera.cti in the station file or {GENTL_ENV} (the "
            f"camera vendor's installer does); the bundled test producer is {bundled_producer()}")
    return found


def _safe(obj: Any, name: str, default: Any = "") -> Any:
    try:
        value = getattr(obj, name)
    except Exception:  # noqa: BLE001 - GenTL "not available" comes in many types
        return default
    return default if value is None else value


def _info(d: Any, index: int, producer: str) -> CameraInfo:
    return CameraInfo(
        backend="genicam",
        serial=str(_safe(d, "serial_number")),
        model=str(_safe(d, "model")),
        vendor=str(_safe(d, "vendor")),
        name=str(_safe(d, "display_name")),
        index=index,
        extra={"id": str(_safe(d, "id_")), "tl_type": str(_safe(d, "tl_type")),
               "producer": producer},
    )


def _producer_of(d: Any, producers: Sequence[Path]) -> str:
    if len(producers) == 1:
        return producers[0].name
    try:
        return Path(d.parent.parent.parent.file_path).name  # interface -> system -> producer
    except Exception:  # noqa: BLE001
        return "+".join(p.name for p in producers)


def list_cameras(cti: str | Path | Sequence[str | Path] | None = None) -> list[CameraInfo]:
    """Devices the producers (``cti`` or ``GENICAM_GENTL64_PATH``) offer."""
    producers = _resolve_producers(cti)
    h = _harvester(producers)
    return [_info(d, i, _producer_of(d, producers)) for i, d in enumerate(h.device_info_list)]


class GenicamCamera(Camera):
    """A GenICam device through harvesters' ImageAcquirer."""

    backend = "genicam"

    def __init__(self, serial: str = "", index: int | None = None,
                 cti: str | Path | Sequence[str | Path] | None = None, num_buffers: int = 8):
        super().__init__(serial, index)
        self._cti = cti
        self._num_buffers = num_buffers
        self._ia: Any = None
        self._producer = ""
        self._key: tuple[str, ...] = ()

    def _who(self) -> str:
        who = super()._who()
        return f"{who} via {self._producer}" if self._producer else who

    # -- feature access ---------------------------------------------------------------------
    def _nm(self) -> Any:
        return self._ia.remote_device.node_map

    def _node(self, *names: str) -> Any | None:
        nm = self._nm()
        for name in names:
            if nm.has_node(name):
                return nm.get_node(name)
        return None

    def _set(self, names: Sequence[str] | str, value: Any, feature: str) -> None:
        names = (names,) if isinstance(names, str) else tuple(names)
        node = self._node(*names)
        if node is None:
            raise FeatureNotSupported(feature, self._who(),
                                      f"the device has no {' / '.join(names)} feature")
        if isinstance(value, str):
            symbolics = list(getattr(node, "symbolics", ()) or ())
            if symbolics and value not in symbolics:
                raise FeatureNotSupported(f"{feature} {value}", self._who(),
                                          f"it offers {', '.join(symbolics)}")
        try:
            node.value = value
        except Exception as exc:  # noqa: BLE001 - genicam raises several unrelated types
            raise CameraError(f"{self._who()}: setting {names[0]} = {value!r} failed: "
                              f"{exc}") from exc

    def _write_feature(self, name: str, value: Any) -> Any:
        node = self._node(name)
        if node is None:
            raise FeatureNotSupported(name, self._who(), "no such node in its node map: check "
                                      "the name against the camera's GenICam XML")
        try:
            writable = node.node.get_access_mode() in (2, 4)  # GenApi EAccessMode WO, RW
        except Exception:  # noqa: BLE001 - a node without an access mode cannot be written
            writable = False
        if not writable:
            raise CameraError(f"{self._who()}: {name} is read-only now (locked while "
                              "grabbing, by another feature, or not writable at all); remove "
                              "it from [camera.features]")
        self._set(name, value, name)
        return node.value

    # -- lifecycle ---------------------------------------------------------------------------
    def _open(self) -> CameraInfo:
        producers = _resolve_producers(self._cti)
        h = _harvester(producers)
        devices = list(h.device_info_list)
        if self.serial:
            matches = [i for i, d in enumerate(devices)
                       if self.serial in (str(_safe(d, "serial_number")), str(_safe(d, "id_")))]
        else:
            idx = self.index or 0
            matches = [idx] if idx < len(devices) else []
        names = ", ".join(f"{_safe(d, 'serial_number')} ({_safe(d, 'model')})" for d in devices)
        if not matches:
            wanted = f"serial {self.serial}" if self.serial else f"index {self.index or 0}"
            raise CameraNotFound(f"no GenTL camera with {wanted} via "
                                 f"{', '.join(p.name for p in producers)}; found: {names or 'none'}")
        i = matches[0]
        info = _info(devices[i], i, _producer_of(devices[i], producers))
        self._producer = info.extra["producer"]
        try:
            self._ia = h.create(i)
            self._ia.num_buffers = max(self._num_buffers, self._ia.min_num_buffers)
        except Exception as exc:  # noqa: BLE001
            self._ia = None
            raise CameraError(f"cannot open {info.describe()}: {exc} (in use elsewhere?)") from exc
        self._key = _key(producers)
        with _HARVESTERS_LOCK:
            _OPEN[self._key] = _OPEN.get(self._key, 0) + 1
        return info

    def _close(self) -> None:
        if self._ia is not None:
            try:
                if self._ia.is_acquiring():
                    self._ia.stop()
                self._ia.destroy()
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: close: %s", self._who(), exc)
            self._ia = None
            with _HARVESTERS_LOCK:
                _OPEN[self._key] = max(0, _OPEN.get(self._key, 0) - 1)

    # -- settings ----------------------------------------------------------------------------
    def _apply(self, s: AcquisitionSettings) -> AcquisitionSettings:
        if s.pixel_format not in RAW_FORMATS:
            raise CameraError(f"pixel format {s.pixel_format} is not a single-channel RAW "
                              f"format the station can use ({', '.join(RAW_FORMATS)})")
        self._set("PixelFormat", s.pixel_format, "pixel format")
        for name, value in (("Width", s.width), ("Height", s.height)):
            if value is None:
                continue
            node = self._node(name)
            if node is None:
                raise FeatureNotSupported(name, self._who())
            if not node.min <= value <= node.max:
                raise FeatureNotSupported(f"{name} {value}", self._who(),
                                          f"range {node.min}..{node.max}")
            self._set(name, int(value), name)
        if s.exposure_us is not None:
            auto = self._node("ExposureAuto")
            if auto is not None:
                self._set("ExposureAuto", "Off", "manual exposure")
            self._set(("ExposureTime", "ExposureTimeAbs"), float(s.exposure_us), "exposure time")
        if s.gain_db is not None:
            auto = self._node("GainAuto")
            if auto is not None:
                self._set("GainAuto", "Off", "manual gain")
            self._set(("Gain", "GainAbs"), float(s.gain_db), "gain in dB")
        if s.trigger == "off":
            if self._node("TriggerMode") is not None:
                self._set("TriggerSelector", "FrameStart", "frame start trigger")
                self._set("TriggerMode", "Off", "free-running acquisition")
        else:
            self._set("TriggerSelector", "FrameStart", f"{s.trigger} trigger (TriggerSelector)")
            self._set("TriggerMode", "On", f"{s.trigger} trigger (TriggerMode)")
            source = "Software" if s.trigger == "software" else s.trigger_line
            self._set("TriggerSource", source, f"{s.trigger} trigger (TriggerSource)")
            if s.trigger == "software" and self._node("TriggerSoftware") is None:
                raise FeatureNotSupported("software trigger (TriggerSoftware)", self._who())
        return s

    # -- acquisition -------------------------------------------------------------------------
    def _start(self) -> int | None:
        try:
            self._ia.start()
        except Exception as exc:  # noqa: BLE001
            raise CameraError(f"{self._who()}: cannot start acquisition: {exc}") from exc
        return None

    def _stop(self) -> None:
        try:
            self._ia.stop()
        except Exception as exc:  # noqa: BLE001
            raise CameraError(f"{self._who()}: stop acquisition: {exc}") from exc

    def _software_trigger(self, timeout_s: float) -> None:
        node = self._node("TriggerSoftware")
        if node is None:
            raise FeatureNotSupported("software trigger (TriggerSoftware)", self._who())
        try:
            node.execute()
        except Exception as exc:  # noqa: BLE001
            raise CameraError(f"{self._who()}: software trigger: {exc}") from exc

    def _retrieve(self, timeout_s: float) -> RawFrame | None:
        from genicam.gentl import TimeoutException

        if not self._ia.is_valid():
            raise CameraDisconnected(f"{self._who()} is no longer valid (removed?); reopen it")
        try:
            buffer = self._ia.fetch(timeout=max(timeout_s, 1e-3))
        except TimeoutException:
            return None
        except FrameTimeout:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CameraError(f"{self._who()}: fetching a frame: {exc}") from exc
        try:
            module = buffer.module
            frame_id = int(_safe(module, "frame_id", -1))
            stamp = _safe(module, "timestamp_ns", None)
            complete = bool(_safe(module, "is_complete", lambda: True)())
            if not complete:
                return RawFrame(None, frame_id, ok=False, error="incomplete buffer",
                                device_timestamp=stamp)
            component = buffer.payload.components[0]
            if component.num_components_per_pixel != 1:
                return RawFrame(None, frame_id, ok=False,
                                error=f"{component.data_format} is not a single-channel format")
            image = np.array(component.data, dtype=np.uint16).reshape(component.height,
                                                                      component.width)
            return RawFrame(image, frame_id, device_timestamp=stamp,
                            meta={"data_format": component.data_format})
        finally:
            buffer.queue()
