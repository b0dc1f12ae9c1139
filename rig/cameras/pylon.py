"""Basler cameras through pypylon, and Basler's camera emulator (``PYLON_CAMEMU=N``).

The emulator is what CI and the bench use: it offers BayerGR12, software trigger, honours the
exposure time, can force failed buffers, and can serve prepared images (``ImageFilename``).
Measured facts about that last feature (pypylon 26.9, see tests/test_camera_pylon.py):

* A folder is served in sorted file-name order, cycling; its listing is read once at
  ``StartGrabbing`` (files added later are ignored) and ``ImageFilename`` is not writable while
  grabbing, so a new batch of images means stop -> set folder -> start (`serve_frames` does it).
* A 16-bit grey file is read as 16-bit and converted to BayerGR12 by dropping the 4 low bits,
  i.e. 12-bit data must be written MSB-aligned (value << 4). pylon's own writer does exactly
  that for ``PixelType_Mono12`` and writes a big-endian TIFF the emulator loads; Pillow's
  little-endian 16-bit TIFF fails to load ("Failed to load image file"), 16-bit PNG works but
  compresses slowly. So frames are written with pylon's writer as uncompressed TIFF: lossless
  round trip of all 12 bits (tested), ~22 MB and ~0.1 s per 3504 x 3120 frame.
* The file's size wins over Width/Height: a wrong-size file yields a wrong-size frame, which
  the base class reports as an error.
* BlockID restarts at 0 on every ``StartGrabbing``; TimeStamp is 0 (no device clock).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rig.camera import (
    HEARTBEAT_NODE,
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

EMULATOR_DEVICE_CLASS = "BaslerCamEmu"
EMULATOR_ENV = "PYLON_CAMEMU"


def _pylon() -> Any:
    """pypylon.pylon, imported on first use so the rest of the station imports without it."""
    try:
        from pypylon import pylon
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise CameraError(f"pypylon is not installed or cannot load ({exc}); "
                          "run scripts/setup-env.sh") from exc
    return pylon


def _genicam() -> Any:
    from pypylon import genicam
    return genicam


def _describe(exc: Exception) -> str:
    """A genicam exception's text (some subclasses lack GetDescription)."""
    describe = getattr(exc, "GetDescription", None)
    return str(describe() if callable(describe) else exc).strip()


def _bits(pixel_format: str) -> int:
    digits = "".join(ch for ch in pixel_format if ch.isdigit())
    return int(digits) if digits else 8


def list_cameras(emulated: int | None = None) -> list[CameraInfo]:
    """Basler devices pylon sees (including emulated ones when ``PYLON_CAMEMU`` is set, or
    ``emulated`` asks for that many)."""
    pylon = _pylon()
    if emulated is not None:
        os.environ[EMULATOR_ENV] = str(emulated)
    out = []
    for i, d in enumerate(pylon.TlFactory.GetInstance().EnumerateDevices()):
        out.append(_info(d, i))
    return out


def _info(d: Any, index: int | None) -> CameraInfo:
    return CameraInfo(
        backend="pylon",
        serial=d.GetSerialNumber(),
        model=d.GetModelName(),
        vendor=d.GetVendorName(),
        name=d.GetFriendlyName(),
        index=index,
        extra={"device_class": d.GetDeviceClass(), "full_name": d.GetFullName()},
    )


def write_emulator_frames(folder: str | Path, frames: Iterable[np.ndarray],
                          pixel_format: str = "BayerGR12") -> list[Path]:
    """Write frames as files the pylon emulator serves losslessly in ``pixel_format``.

    Files are ``000000.tiff``, ``000001.tiff``, ... (served in that order). 12-bit values are
    MSB-aligned by pylon's writer; values above the format's range are an error, not clipped.
    """
    pylon = _pylon()
    bits = _bits(pixel_format)
    pixel_type = {8: pylon.PixelType_Mono8, 10: pylon.PixelType_Mono10,
                  12: pylon.PixelType_Mono12}.get(bits, pylon.PixelType_Mono16)
    dtype = np.uint8 if bits == 8 else np.uint16
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        a = np.asarray(frame)
        if a.ndim != 2:
            raise ValueError(f"frame {i}: expected a 2-D RAW frame, got shape {a.shape}")
        if a.size and int(a.max()) >= 1 << bits:
            raise ValueError(f"frame {i}: value {int(a.max())} exceeds {bits}-bit {pixel_format}")
        a = np.ascontiguousarray(a, dtype=dtype)
        path = folder / f"{i:06d}.tiff"
        image = pylon.PylonImage()
        image.AttachArray(a, pixel_type)
        image.Save(pylon.ImageFileFormat_Tiff, str(path))
        image.Release()
        paths.append(path)
    return paths


class PylonCamera(Camera):
    """A Basler camera (GigE, USB3 or the emulator) through pypylon's InstantCamera."""

    backend = "pylon"

    def __init__(self, serial: str = "", index: int | None = None, emulated: int | None = None,
                 num_buffers: int = 16):
        super().__init__(serial, index)
        self._emulated = emulated
        self._num_buffers = num_buffers
        self._cam: Any = None
        self._serve_root: Path | None = None
        self._serve_batch = 0
        self._serving: Path | None = None

    # -- helpers -------------------------------------------------------------------------------
    def _node(self, *names: str) -> Any | None:
        """The first of ``names`` the device has and can read, else None."""
        genicam = _genicam()
        nm = self._cam.GetNodeMap()
        for name in names:
            node = nm.GetNode(name)
            if node is not None and genicam.IsAvailable(node):
                return node
        return None

    def _set(self, names: Sequence[str] | str, value: Any, feature: str) -> Any:
        names = (names,) if isinstance(names, str) else tuple(names)
        node = self._node(*names)
        if node is None:
            raise FeatureNotSupported(feature, self._who(), f"no {' / '.join(names)} node")
        genicam = _genicam()
        try:
            if isinstance(value, str):
                symbolics = list(node.GetSymbolics()) if hasattr(node, "GetSymbolics") else []
                if symbolics and value not in symbolics:
                    raise FeatureNotSupported(
                        f"{feature} {value}", self._who(), f"offers {', '.join(symbolics)}")
                node.FromString(value)
            else:
                node.SetValue(value)
            return node.GetValue()
        except genicam.GenericException as exc:
            raise CameraError(f"{self._who()}: setting {node.GetNode().GetName()} = {value!r} "
                              f"failed: {_describe(exc)}") from exc

    def _write_feature(self, name: str, value: Any) -> Any:
        genicam = _genicam()
        def valid(node: Any) -> bool:  # pypylon returns a placeholder for a missing node
            return node is not None and node.IsValid()

        node = self._cam.GetNodeMap().GetNode(name)
        if not valid(node) and name == HEARTBEAT_NODE:  # pylon: a GigE transport-layer node
            node = self._cam.GetTLNodeMap().GetNode("HeartbeatTimeout")
        if not valid(node):
            raise FeatureNotSupported(
                name, self._who(), "no such node in its node map: check the name in pylon "
                "Viewer (Features, expert view); GigE-only nodes do not exist on USB cameras")
        if not genicam.IsWritable(node):
            raise CameraError(f"{self._who()}: {name} is read-only now (locked while "
                              "grabbing, by another feature, or not writable at all); remove "
                              f"it from [camera.features]")
        try:
            if isinstance(value, str):
                node.FromString(value)
            else:
                node.SetValue(value)
            return node.GetValue()
        except genicam.GenericException as exc:
            raise CameraError(f"{self._who()}: setting {name} = {value!r} failed: "
                              f"{_describe(exc)}") from exc

    @property
    def is_emulator(self) -> bool:
        return bool(self._info and self._info.extra.get("device_class") == EMULATOR_DEVICE_CLASS)

    # -- lifecycle -------------------------------------------------------------------------------
    def _open(self) -> CameraInfo:
        pylon = _pylon()
        genicam = _genicam()
        if self._emulated is not None:
            os.environ[EMULATOR_ENV] = str(self._emulated)
        devices = list(pylon.TlFactory.GetInstance().EnumerateDevices())
        if self.serial:
            chosen = [i for i, d in enumerate(devices) if d.GetSerialNumber() == self.serial]
        else:
            idx = self.index or 0
            chosen = [idx] if idx < len(devices) else []
        if not chosen:
            seen = ", ".join(f"{d.GetSerialNumber()} ({d.GetModelName()})" for d in devices)
            wanted = f"serial {self.serial}" if self.serial else f"index {self.index or 0}"
            raise CameraNotFound(
                f"no pylon camera with {wanted}; pylon sees: {seen or 'none'}. Check cable and power, or set "
                f"{EMULATOR_ENV}=1 for the Basler emulator")
        i = chosen[0]
        try:
            self._cam = pylon.InstantCamera(pylon.TlFactory.GetInstance().CreateDevice(devices[i]))
            self._cam.Open()
            self._cam.MaxNumBuffer.Value = self._num_buffers
        except genicam.GenericException as exc:
            self._cam = None
            raise CameraError(f"cannot open pylon camera {devices[i].GetFriendlyName()}: "
                              f"{_describe(exc)} (in use by another program?)") from exc
        return _info(devices[i], i)

    def _close(self) -> None:
        if self._cam is not None:
            try:
                if self._cam.IsGrabbing():
                    self._cam.StopGrabbing()
                self._cam.Close()
                self._cam.DestroyDevice()
            except _genicam().GenericException as exc:
                log.warning("%s: close: %s", self._who(), _describe(exc))
            self._cam = None
        if self._serve_root is not None:
            shutil.rmtree(self._serve_root, ignore_errors=True)
            self._serve_root = None
            self._serving = None

    # -- settings -------------------------------------------------------------------------------
    def _apply(self, s: AcquisitionSettings) -> AcquisitionSettings:
        self._set("PixelFormat", s.pixel_format, "pixel format")
        if s.width is not None or s.height is not None:
            for off in ("OffsetX", "OffsetY"):
                node = self._node(off)
                if node is not None and _genicam().IsWritable(node):
                    node.SetValue(0)
            for name, value in (("Width", s.width), ("Height", s.height)):
                if value is None:
                    continue
                node = self._node(name)
                if node is None or value > node.GetMax():
                    limit = node.GetMax() if node is not None else "?"
                    raise FeatureNotSupported(f"{name} {value}", self._who(), f"maximum {limit}")
                self._set(name, int(value), name)
        for auto in ("ExposureAuto", "GainAuto"):
            node = self._node(auto)
            if node is not None and _genicam().IsWritable(node):
                node.FromString("Off")
        if s.exposure_us is not None:
            mode = self._node("ExposureMode")
            if mode is not None and _genicam().IsWritable(mode):
                mode.FromString("Timed")
            self._set(("ExposureTime", "ExposureTimeAbs"), float(s.exposure_us), "exposure time")
        if s.gain_db is not None:
            if self._node("Gain", "GainAbs") is not None:
                self._set(("Gain", "GainAbs"), float(s.gain_db), "gain in dB")
            elif s.gain_db == 0 and (raw := self._node("GainRaw")) is not None:
                raw.SetValue(raw.GetMin())
            else:
                raise FeatureNotSupported("gain in dB", self._who(), "only raw gain units")
        self._set("AcquisitionMode", "Continuous", "continuous acquisition")
        selector = self._node("TriggerSelector")
        symbolics = list(selector.GetSymbolics()) if selector is not None else []
        for other in ("AcquisitionStart", "FrameBurstStart"):  # must not gate FrameStart
            if selector is not None and other in symbolics:
                selector.FromString(other)
                self._set("TriggerMode", "Off", f"{other} trigger off")
        self._set("TriggerSelector", "FrameStart", "frame start trigger")
        if s.trigger == "off":
            self._set("TriggerMode", "Off", "free-running acquisition")
        else:
            source = "Software" if s.trigger == "software" else s.trigger_line
            self._set("TriggerMode", "On", "triggered acquisition")
            self._set("TriggerSource", source, "trigger source")
            if s.trigger == "hardware" and self._node("TriggerActivation") is not None:
                self._set("TriggerActivation", "RisingEdge", "rising-edge trigger")
        return s

    # -- emulator image serving ------------------------------------------------------------------
    def serve_frames(self, frames: Sequence[np.ndarray]) -> Path:
        """Emulator only: the next ``len(frames)`` frames the camera delivers are these, in
        order (then they repeat). Re-arms if armed (frame ids restart). Returns the folder."""
        if not self.is_emulator:
            raise CameraError(f"{self._who()}: serving prepared images needs the Basler "
                              f"emulator ({EMULATOR_ENV}=1), not a real camera")
        s = self._settings
        for i, f in enumerate(frames):
            if s.width and s.height and np.shape(f) != (s.height, s.width):
                raise ValueError(f"frame {i} has shape {np.shape(f)}, camera is configured "
                                 f"for {(s.height, s.width)}")
        if self._serve_root is None:
            self._serve_root = Path(tempfile.mkdtemp(prefix="pylon-emu-"))
        self._serve_batch += 1
        folder = self._serve_root / f"batch{self._serve_batch:06d}"
        write_emulator_frames(folder, frames, s.pixel_format)
        self.use_image_folder(folder)
        return folder

    def use_image_folder(self, folder: str | Path | None) -> None:
        """Emulator only: serve the images in ``folder`` (sorted by name; None = test pattern)."""
        was_armed, states = self.is_armed, self._states
        if was_armed:
            self.disarm()
        previous = self._serving
        if folder is None:
            self._set("ImageFileMode", "Off", "image files")
            self._set("TestImageSelector", "Testimage1", "test images")
        else:
            self._set("TestImageSelector", "Off", "test images")
            self._set("ImageFileMode", "On", "image files (emulator)")
            self._set("ImageFilename", str(folder), "image files (emulator)")
        self._serving = Path(folder) if folder is not None else None
        if (previous is not None and self._serve_root is not None and previous != self._serving
                and previous.parent == self._serve_root):
            shutil.rmtree(previous, ignore_errors=True)
        if was_armed:
            self.arm(states)

    def force_failed_buffers(self, count: int = 1) -> None:
        """Emulator only (fault injection): the next ``count`` buffers fail in transfer."""
        if not self.is_emulator:
            raise CameraError(f"{self._who()}: failed buffers can only be forced on the emulator")
        self._set("ForceFailedBufferCount", int(count), "forced failed buffers (emulator)")
        node = self._node("ForceFailedBuffer")
        if node is None:
            raise FeatureNotSupported("forced failed buffers", self._who())
        node.Execute()

    # -- acquisition -------------------------------------------------------------------------
    def impose_stream_error(self, text: str = "stream lost (imposed)") -> None:
        """Emulator test hook: the next RetrieveResult throws a RuntimeException, as a real
        transport does when the link goes (the stream grabber's ImposedError node)."""
        node = self._cam.GetStreamGrabberNodeMap().GetNode("ImposedError")
        if node is None or not node.IsValid():
            raise FeatureNotSupported("ImposedError", self._who(), "not an emulator stream")
        node.SetValue(text)

    def _start(self) -> int | None:
        pylon = _pylon()
        try:
            self._cam.StartGrabbing(pylon.GrabStrategy_OneByOne)
        except _genicam().GenericException as exc:
            raise CameraError(f"{self._who()}: cannot start grabbing: "
                              f"{_describe(exc)}") from exc
        # BlockID restarts at 0 on the emulator (measured). Real cameras: not assumed, the
        # first frame after arming sets the base.
        return 0 if self.is_emulator else None

    def _stop(self) -> None:
        try:
            self._cam.StopGrabbing()
        except _genicam().GenericException as exc:
            raise CameraError(f"{self._who()}: stop grabbing: {_describe(exc)}") from exc

    def _check_connected(self) -> None:
        if self._cam.IsCameraDeviceRemoved():
            raise CameraDisconnected(f"{self._who()} was removed (cable or power); reopen it")

    def _software_trigger(self, timeout_s: float) -> None:
        pylon = _pylon()
        self._check_connected()
        try:
            ready = self._cam.WaitForFrameTriggerReady(int(timeout_s * 1000),
                                                       pylon.TimeoutHandling_Return)
            if not ready:
                raise FrameTimeout(f"{self._who()}: not ready for a trigger within "
                                   f"{timeout_s:.3f} s (previous frame still exposing/reading out)")
            self._cam.ExecuteSoftwareTrigger()
        except _genicam().GenericException as exc:
            raise CameraError(f"{self._who()}: software trigger: "
                              f"{_describe(exc)}") from exc

    def _retrieve(self, timeout_s: float) -> RawFrame | None:
        pylon = _pylon()
        genicam = _genicam()
        self._check_connected()
        try:
            result = self._cam.RetrieveResult(max(1, int(timeout_s * 1000)),
                                              pylon.TimeoutHandling_Return)
        except genicam.GenericException as exc:
            self._check_connected()
            # the stream itself failed (GigE heartbeat or USB link lost, driver error): only a
            # reopen brings it back, so it is reported as a lost link
            raise CameraDisconnected(f"{self._who()}: the frame stream failed "
                                     f"({_describe(exc)}); reopening the camera") from exc
        if result is None or not result.IsValid():
            self._check_connected()
            return None
        try:
            frame_id = int(result.BlockID)
            stamp = int(result.TimeStamp) or None
            if not result.GrabSucceeded():
                return RawFrame(None, frame_id, ok=False, device_timestamp=stamp,
                                error=f"{result.ErrorDescription} (0x{result.ErrorCode:x})")
            image = result.Array  # a copy owned by numpy (read-only)
            return RawFrame(image, frame_id, device_timestamp=stamp)
        finally:
            result.Release()
