"""The scan as data (a plan) and its execution (a runner that emits events).

The runner knows nothing of recordings, detectors or windows: it moves, lights, grabs and tells
subscribers what happened. Pause / resume / abort take effect at safe points (between RoIs and
between frames); on abort or error the lights go off and the stage stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from errors import ConnectionLost, DeviceError
from rig.camera import DroppedFrame, Frame, FrameTimeout
from rig.config import StationConfig
from rig.layout import RoiGeometry, roi_layout

if TYPE_CHECKING:
    from rig.interfaces import Rig

log = logging.getLogger(__name__)

AZIMUTH_STEP_DEG = 30.0


# -- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanPlan:
    """Everything the runner needs to know, fixed before the first move."""

    sample_id: str
    rois: tuple[RoiGeometry, ...]
    states: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    exposure_us: float = 20000.0
    trigger: Literal["hardware", "software"] = "hardware"
    settle_s: float = 0.05
    pixel_size_mm: float = 0.0114
    frame_timeout_s: float = 2.0
    retakes: int = 1
    """How often a RoI whose stack lost a frame (dropped, or late) is taken again."""
    reconnect_s: float = 30.0
    """How long a lost device (camera, stage or light port) may take to come back."""
    reconnects_per_roi: int = 3

    @property
    def azimuths_deg(self) -> tuple[float, ...]:
        return tuple(AZIMUTH_STEP_DEG * k for k in self.states)

    @property
    def n_frames(self) -> int:
        return len(self.rois) * len(self.states)

    @classmethod
    def from_config(cls, cfg: StationConfig, sample_id: str,
                    only_rois: Sequence[int] | None = None,
                    layout: Sequence[RoiGeometry] | None = None) -> ScanPlan:
        """The plan for a station; `layout` overrides the nominal RoI grid (calibrated)."""
        rois = tuple(layout) if layout is not None else roi_layout(cfg)
        if only_rois is not None:
            wanted = set(only_rois)
            rois = tuple(r for r in rois if r.index in wanted)
        cam = cfg.camera
        return cls(
            sample_id=sample_id,
            rois=tuple(rois),
            states=tuple(range(cfg.scan.states)),
            exposure_us=cam.exposure_us,
            trigger=cam.trigger,
            settle_s=cfg.stage.settle_s,
            pixel_size_mm=cfg.scan.pixel_size_mm,
            frame_timeout_s=cam.exposure_us * 1e-6 + cam.readout_s + cam.frame_timeout_margin_s,
            reconnect_s=cfg.scan.reconnect_s,
            reconnects_per_roi=cfg.scan.reconnects_per_roi,
        )


# -- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoiStarted:
    roi: RoiGeometry
    position: int  # 0-based place in the plan
    total: int


@dataclass(frozen=True)
class FrameCaptured:
    roi: RoiGeometry
    state: int
    frame_id: int
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class RoiCaptured:
    roi: RoiGeometry
    stack: np.ndarray = field(repr=False)  # (states, H, W) uint16
    stage_xy_mm: tuple[float, float]
    timestamps_s: tuple[float, ...]
    frame_ids: tuple[int, ...]
    move_s: float
    acquire_s: float


@dataclass(frozen=True)
class RoiRetake:
    """A frame of this RoI was lost or late: the whole stack is taken again (never patched)."""

    roi: RoiGeometry
    attempt: int  # 1 for the first retake
    error: Exception


@dataclass(frozen=True)
class DeviceReconnected:
    """A device was lost during this RoI and is back (reopened); the RoI is taken again."""

    roi: RoiGeometry
    device: str  # "camera", "stage" or "ring light"
    error: Exception
    downtime_s: float


@dataclass(frozen=True)
class ScanPaused:
    paused: bool


@dataclass(frozen=True)
class ScanError:
    roi: RoiGeometry | None
    error: Exception


@dataclass(frozen=True)
class ScanFinished:
    captured: tuple[int, ...]
    aborted: bool
    failed: bool
    elapsed_s: float


ScanEvent = (RoiStarted | FrameCaptured | RoiCaptured | RoiRetake | DeviceReconnected
             | ScanPaused | ScanError | ScanFinished)
Subscriber = Callable[[ScanEvent], None]


class ScanAborted(Exception):
    """Raised inside the runner when abort() was called; never escapes `run()`."""


# -- the runner ---------------------------------------------------------------------------------
class ScanRunner:
    """Executes a ScanPlan on a rig. `run()` blocks; the other methods are thread-safe.

    Subscribers are called synchronously in the runner's thread, in order; a slow subscriber
    slows the scan (that is the back-pressure), so heavy consumers should hand work to a bounded
    queue of their own (see inspection.py).
    """

    def __init__(self, rig: Rig, plan: ScanPlan):
        self.rig = rig
        self.plan = plan
        self._subscribers: list[Subscriber] = []
        self._abort = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def _emit(self, event: ScanEvent) -> None:
        for callback in self._subscribers:
            callback(event)

    # -- commands (any thread) -------------------------------------------------------------
    def pause(self) -> None:
        if self._running.is_set():
            self._running.clear()
            self._emit(ScanPaused(True))

    def resume(self) -> None:
        if not self._running.is_set():
            self._running.set()
            self._emit(ScanPaused(False))

    def abort(self) -> None:
        self._abort.set()
        self._running.set()  # wake a paused runner so it can stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def _safe_point(self) -> None:
        self._running.wait()
        if self._abort.is_set():
            raise ScanAborted

    # -- execution -------------------------------------------------------------------------
    def run(self) -> ScanFinished:
        start = time.monotonic()
        captured: list[int] = []
        aborted = failed = False
        current: RoiGeometry | None = None
        rois = self.plan.rois
        moving = False  # the stage is already on its way to the RoI being started
        try:
            for position, roi in enumerate(rois):
                current = roi
                self._safe_point()
                self._emit(RoiStarted(roi, position, len(rois)))
                following = rois[position + 1] if position + 1 < len(rois) else None
                moving = self._capture_roi(roi, following, moving)
                captured.append(roi.index)
                current = None
        except ScanAborted:
            aborted = True
            log.info("scan of %s aborted after %d RoIs", self.plan.sample_id, len(captured))
        except Exception as exc:  # any device error ends the scan; the rig is made safe below
            failed = True
            log.error("scan of %s failed at RoI %s: %s", self.plan.sample_id,
                      current.index if current else "-", exc)
            self._emit(ScanError(current, exc))
        finally:
            if aborted or failed:
                self.rig.make_safe()
        finished = ScanFinished(tuple(captured), aborted, failed, time.monotonic() - start)
        self._emit(finished)
        return finished

    def _capture_roi(self, roi: RoiGeometry, following: RoiGeometry | None,
                     moving: bool) -> bool:
        """Move (or finish the move already under way), settle once, take the stack. The move
        to `following` starts as soon as the last frame is exposed and its LEDs are off, so
        readout, transfer and recording overlap it. Returns whether that move was started."""
        plan = self.plan
        started: list[RoiGeometry] = []  # the move to `following`, once started

        def on_exposed() -> None:
            if following is not None and not self._abort.is_set() \
                    and self._running.is_set():  # paused: stay here until resumed
                self.rig.start_move(following.stage_xy_mm)
                started.append(following)

        taken: list[int] = []  # states of this attempt's frames so far

        def on_frame(frame: Frame) -> None:
            state = plan.states[len(taken)] if frame.state is None else frame.state
            taken.append(state)
            self._emit(FrameCaptured(roi, state, frame.frame_id, frame.image))
            if self._abort.is_set():
                raise ScanAborted

        retakes = reconnects = 0
        while True:
            t0 = time.monotonic()
            started.clear()
            taken.clear()
            try:
                if moving:
                    self.rig.wait_moved()
                else:  # its timeout follows from distance, speed and acceleration
                    self.rig.move_to(roi.stage_xy_mm)
                time.sleep(plan.settle_s)  # the only settle: the stage driver does not add one
                t1 = time.monotonic()
                self._safe_point()
                frames = self.rig.acquire_stack(plan.states, plan.exposure_us, plan.trigger,
                                                plan.frame_timeout_s, on_frame=on_frame,
                                                on_exposed=on_exposed)
            except (DroppedFrame, FrameTimeout) as exc:
                if retakes == plan.retakes:
                    raise
                retakes += 1
                log.warning("RoI %02d: %s; taking it again", roi.index, exc)
                self._emit(RoiRetake(roi, retakes + reconnects, exc))
                if started:  # on its way to the next RoI: let it arrive, then come back
                    self.rig.wait_moved()
                moving = False
                continue
            except ConnectionLost as exc:
                if reconnects >= plan.reconnects_per_roi or plan.reconnect_s <= 0:
                    raise
                reconnects += 1
                lost_at = time.monotonic()
                log.warning("RoI %02d: %s; reconnecting (up to %g s)", roi.index, exc,
                            plan.reconnect_s)
                if moving or started:  # a move under way ends by itself; let it, if it can
                    with contextlib.suppress(DeviceError):
                        self.rig.wait_moved()
                device = self.rig.reconnect(exc, plan.reconnect_s)
                self._emit(DeviceReconnected(roi, device, exc, time.monotonic() - lost_at))
                self._emit(RoiRetake(roi, retakes + reconnects, exc))
                moving = False
                continue
            stack = np.stack([f.image for f in frames])
            self._emit(RoiCaptured(
                roi=roi, stack=stack, stage_xy_mm=roi.stage_xy_mm,
                timestamps_s=tuple(f.timestamp_s for f in frames),
                frame_ids=tuple(f.frame_id for f in frames),
                move_s=t1 - t0, acquire_s=time.monotonic() - t1,
            ))
            return bool(started)
