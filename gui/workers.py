"""Everything that may take longer than a redraw runs here, off the GUI thread.

- `InspectionBridge` runs one `InspectionRun` in a plain thread and re-emits its events as a Qt
  signal; the connection is queued, so slots run in the GUI thread and the scan never waits for
  the window (the scan thread only pays for `emit`).
- `PreviewWorker` turns raw frames and stacks into small display tiles (Bayer quad mean, block
  max, fixed levels) and reads recordings for replay. Live frames are *latest only*: if the
  window or this thread falls behind, old frames are dropped, never queued up, so the live view
  can never slow acquisition or eat memory.
- `DeviceWorker` runs rig and detector commands (build the rig, jog, light, snapshot, status
  polls) one at a time on its own thread and hands results back through a signal.

The GUI thread never calls h5py, torch or a device: it only listens and commands.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal

from gui import imaging
from gui.view_model import RecordingSummary
from recordings import Recording, RecordingError
from rig.layout import RoiGeometry

log = logging.getLogger(__name__)


# -- the inspection run in a thread ------------------------------------------------------------
class InspectionBridge(QObject):
    """Runs `InspectionRun.run()` in a worker thread; its events arrive as `event` signals.

    `taps` are called in the scan thread itself for data that must not cross the GUI thread
    (raw frames go straight to the preview worker); they must return immediately.
    """

    event = Signal(object)  # every inspection event, in order, delivered in the GUI thread
    done = Signal(object, object)  # (SampleResult | None, exception | None)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: threading.Thread | None = None
        self._run: Any = None
        self.taps: list[Callable[[Any], None]] = []

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, run: Any) -> None:
        if self.running:
            raise RuntimeError("an inspection is already running")
        self._run = run
        run.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._work, name=f"inspect-{run.sample_id}",
                                        daemon=True)
        self._thread.start()

    def _on_event(self, ev: Any) -> None:  # scan / recorder thread
        for tap in self.taps:
            try:
                tap(ev)
            except Exception:
                log.exception("GUI tap failed on %s", type(ev).__name__)
        self.event.emit(ev)

    def _work(self) -> None:
        try:
            result = self._run.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the operator, not swallowed
            log.error("inspection failed: %s\n%s", exc, traceback.format_exc())
            self.done.emit(None, exc)
        else:
            self.done.emit(result, None)

    # commands: thread-safe in InspectionRun
    def pause(self) -> None:
        if self._run is not None:
            self._run.pause()

    def resume(self) -> None:
        if self._run is not None:
            self._run.resume()

    def abort(self) -> None:
        if self._run is not None:
            self._run.abort()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True


# -- display preparation and recording reads ----------------------------------------------------
PREVIEW_NICE = 5  # the preview thread yields the CPU to the GUI and the scan (its work is droppable)


def _lower_priority(nice: int) -> None:
    """Raise this thread's nice value (Linux: per thread); a no-op where unsupported."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


@dataclass
class LoadedRoi:
    """One RoI ready to show: tiles, and the raw stack when it is in memory (signature, zoom)."""

    preview: imaging.RoiPreview
    stack: np.ndarray | None = None
    heat: tuple[np.ndarray, float] | None = None  # probability overlay, raw px per cell
    source: str = "live"  # "live" or the recording path
    request: int = 0


def summarize_recording(path: Path) -> RecordingSummary:
    """Read attributes, RoI geometry and detector results (small) from a recording."""
    from rig.config import ConfigError, parse_config
    from rig.layout import roi_layout

    with Recording(path) as rec:
        recorded = rec.roi_ids()
        planned: dict[int, RoiGeometry] = {}
        sample = (72.0, 150.0, 6.0)
        try:
            cfg = parse_config(rec.rig_config, f"{path} rig_config")
            planned = {r.index: r for r in roi_layout(cfg)}
            s = cfg.sample
            sample = (s.width_mm, s.length_mm, s.corner_radius_mm)
        except (ConfigError, ValueError, KeyError, TypeError) as exc:
            log.info("%s: rig_config not usable for the RoI layout (%s); using RoI attributes",
                     path, str(exc).splitlines()[0])
        rois: dict[int, RoiGeometry] = dict(planned)
        n_truth = 0
        for i in recorded:
            roi = rec.roi(i)
            _, h, w = roi.shape
            a = roi.attrs
            grid = planned.get(i)
            stage = tuple(float(v) for v in a.get("stage_xy_mm", (0.0, 0.0)))
            rois[i] = RoiGeometry(i, grid.row if grid else 0, grid.col if grid else 0,
                                  roi.origin_px, (int(h), int(w)), roi.pixel_size_mm, stage)
            n_truth += len(roi.defects())
        if not planned and rois:  # no layout: the glass is the bounding box of what was recorded
            ps = next(iter(rois.values())).pixel_size_mm
            w_mm = max((r.origin_px[1] + r.size_px[1]) * ps for r in rois.values())
            l_mm = max((r.origin_px[0] + r.size_px[0]) * ps for r in rois.values())
            sample = (w_mm, l_mm, 0.0)
        res = rec.results()
        return RecordingSummary(
            path=path, sample_id=rec.sample_id, status=rec.status, n_rois=rec.n_rois,
            recorded=recorded, rois=[rois[i] for i in sorted(rois)], sample_mm=sample,
            verdict=res.verdict if res else "", detector=res.detector if res else "",
            scratches=res.scratches if res else [], contaminants=res.contaminants if res else [],
            timings_s=res.timings_s if res else {}, created=str(rec.attrs.get("created", "")),
            truth_defects=n_truth)


class PreviewWorker(QObject):
    """One thread that prepares display tiles and reads recordings, newest request first."""

    frame_ready = Signal(int, int, object, int, object)  # roi, state, uint8 tile, factor, (H, W)
    heat_ready = Signal(str, int, object)  # sample key, roi, (RGBA overlay, raw px per cell)
    roi_ready = Signal(object)  # LoadedRoi
    detail_ready = Signal(int, object, object)  # request, (r0, c0, r1, c1), tiles
    summary_ready = Signal(object, object)  # RecordingSummary | None, error message | None
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None, levels: str = imaging.DEFAULT_LEVELS):
        super().__init__(parent)
        self.levels = levels
        self._cond = threading.Condition()
        self._frames: dict[int, tuple] = {}  # state -> newest (roi, state, frame_id, image)
        self._jobs: list[tuple[str, tuple]] = []  # stacks (never dropped), loads, detail
        self._cache: dict[int, tuple[int, int, np.ndarray]] = {}  # state -> (roi, fid, preview)
        self._recordings: dict[Path, Recording] = {}
        self._stop = False
        self._requests = itertools.count(1)
        self.dropped_frames = 0
        self._thread = threading.Thread(target=self._loop, name="gui-preview", daemon=True)
        self._thread.start()

    # -- requests (any thread) -----------------------------------------------------------------
    def submit_frame(self, roi: int, state: int, frame_id: int, image: np.ndarray) -> None:
        with self._cond:
            if state in self._frames:
                self.dropped_frames += 1
            self._frames[state] = (roi, state, frame_id, image)
            self._cond.notify()

    def submit_stack(self, roi: int, stack: np.ndarray, frame_ids: tuple[int, ...],
                     keep_stack: bool = True) -> None:
        self._put("stack", (roi, stack, tuple(frame_ids), keep_stack))

    def load_roi(self, path: Path, roi: int) -> int:
        """Read one RoI (and its probability map) from a recording; returns the request id."""
        req = next(self._requests)
        self._put("load", (Path(path), roi, req), supersede=("load", "detail"))
        return req

    def relevel(self, preview: imaging.RoiPreview, levels: str, stack: np.ndarray | None,
                heat: tuple[np.ndarray, float] | None, source: str) -> int:
        req = next(self._requests)
        self._put("relevel", (preview, levels, stack, heat, source, req), supersede=("relevel",))
        return req

    def heat(self, key: str, roi: int, probability: np.ndarray, scale: float) -> None:
        """Overlay of a live RoI's probability map (emitted as `heat_ready`)."""
        self._put("heat", (key, roi, probability, scale))

    def detail(self, stack: np.ndarray, box: tuple[int, int, int, int]) -> int:
        req = next(self._requests)
        self._put("detail", (stack, box, req), supersede=("detail",))
        return req

    def summarize(self, path: Path) -> None:
        self._put("summary", (Path(path),))

    def forget(self, path: Path) -> None:
        """Close a cached read handle (before a writer opens the same file)."""
        self._put("forget", (Path(path),))

    def _put(self, kind: str, args: tuple, supersede: tuple[str, ...] = ()) -> None:
        with self._cond:
            if supersede:
                self._jobs = [j for j in self._jobs if j[0] not in supersede]
            self._jobs.append((kind, args))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)
        for rec in self._recordings.values():
            rec.close()
        self._recordings.clear()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._jobs and not self._frames and not self._busy

    _busy = False

    # -- the thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        _lower_priority(PREVIEW_NICE)
        while True:
            with self._cond:
                while not self._stop and not self._jobs and not self._frames:
                    self._busy = False
                    self._cond.wait()
                if self._stop:
                    return
                self._busy = True
                if self._jobs:
                    kind, args = self._jobs.pop(0)
                else:  # oldest pending state first
                    state = min(self._frames, key=lambda s: self._frames[s][2])
                    kind, args = "frame", self._frames.pop(state)
            try:
                getattr(self, f"_do_{kind}")(*args)
            except Exception as exc:  # a bad file must not kill the live view
                log.exception("preview job %s failed", kind)
                self.failed.emit(f"{type(exc).__name__}: {exc}")

    def _do_frame(self, roi: int, state: int, frame_id: int, image: np.ndarray) -> None:
        shape = (int(image.shape[0]), int(image.shape[1]))
        f = imaging.overview_factor(shape)
        small = imaging.downsample(image, f)
        self._cache[state] = (roi, frame_id, small)
        tile = imaging.to_display(small, imaging.LEVEL_PRESETS[self.levels].lut())
        self.frame_ready.emit(roi, state, tile, f, shape)

    def _do_stack(self, roi: int, stack: np.ndarray, frame_ids: tuple[int, ...],
                  keep_stack: bool) -> None:
        shape = (int(stack.shape[1]), int(stack.shape[2]))
        f = imaging.overview_factor(shape)
        states = []
        for k in range(stack.shape[0]):
            cached = self._cache.get(k)
            fid = frame_ids[k] if k < len(frame_ids) else -1
            if cached and cached[0] == roi and cached[1] == fid \
                    and cached[2].shape == (shape[0] // f, shape[1] // f):
                states.append(cached[2])
            else:
                states.append(imaging.downsample(stack[k], f))
        preview = imaging.make_preview(roi, np.stack(states), shape, f, self.levels)
        self.roi_ready.emit(LoadedRoi(preview, stack if keep_stack else None))

    def _recording(self, path: Path) -> Recording:
        rec = self._recordings.get(path)
        if rec is None:
            for other in self._recordings.values():
                other.close()
            self._recordings = {path: (rec := Recording(path))}
        return rec

    def _do_forget(self, path: Path) -> None:
        rec = self._recordings.pop(path, None)
        if rec is not None:
            rec.close()

    def _do_load(self, path: Path, roi: int, req: int) -> None:
        try:
            rec = self._recording(path)
            stack = rec.roi(roi).raw[()]
            heat = None
            res = rec.results() if rec.has_results else None
            if res is not None and roi in res.probability_maps:
                prob = res.probability_maps[roi][()].astype(np.float32)
                heat = imaging.heat_overlay(prob, res.probability_scale)
        except (RecordingError, OSError, KeyError) as exc:
            self._do_forget(path)
            self.failed.emit(f"cannot read RoI {roi} of {path.name}: {exc}")
            return
        preview = imaging.preview_from_stack(roi, stack, self.levels)
        self.roi_ready.emit(LoadedRoi(preview, stack, heat, str(path), req))

    def _do_relevel(self, preview: imaging.RoiPreview, levels: str, stack: np.ndarray | None,
                    heat: tuple[np.ndarray, float] | None, source: str, req: int) -> None:
        new = imaging.make_preview(preview.roi, preview.states_dn, preview.shape, preview.factor,
                                   levels)
        self.roi_ready.emit(LoadedRoi(new, stack, heat, source, req))

    def _do_heat(self, key: str, roi: int, probability: np.ndarray, scale: float) -> None:
        self.heat_ready.emit(key, roi, imaging.heat_overlay(probability, scale))

    def _do_detail(self, stack: np.ndarray, box: tuple[int, int, int, int], req: int) -> None:
        r0, c0, r1, c1 = box
        tiles = imaging.crop_tiles(stack, r0, r1, c0, c1, self.levels)
        h, w = tiles["max"].shape
        self.detail_ready.emit(req, (r0 // 2 * 2, c0 // 2 * 2, r0 // 2 * 2 + 2 * h,
                                     c0 // 2 * 2 + 2 * w), tiles)

    def _do_summary(self, path: Path) -> None:
        try:
            self._do_forget(path)
            summary = summarize_recording(path)
        except (RecordingError, OSError) as exc:
            self.summary_ready.emit(None, str(exc))
            return
        self.summary_ready.emit(summary, None)


# -- device commands ---------------------------------------------------------------------------
class DeviceWorker(QObject):
    """Runs rig / detector calls one at a time in a worker thread; results come back as signals.

    `submit(fn, ..., on_done=cb)` -> cb(result, error) is called in the GUI thread.
    """

    _finished = Signal(object, object, object)  # callback, result, exception

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gui-device")
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._pending > 0

    def submit(self, fn: Callable[..., Any], *args: Any,
               on_done: Callable[[Any, BaseException | None], None] | None = None,
               **kwargs: Any) -> Future:
        with self._lock:
            self._pending += 1
        fut = self._pool.submit(fn, *args, **kwargs)

        def _report(f: Future) -> None:
            with self._lock:
                self._pending -= 1
            if f.cancelled():  # shutting down
                return
            exc = f.exception()
            if exc is not None:
                log.warning("device command %s failed: %s", getattr(fn, "__name__", fn), exc)
            self._finished.emit(on_done, None if exc else f.result(), exc)

        fut.add_done_callback(_report)
        return fut

    @staticmethod
    def _deliver(callback: Any, result: Any, exc: Any) -> None:
        if callback is not None:
            callback(result, exc)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
