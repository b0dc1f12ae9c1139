"""One inspection run: scan -> recording -> detector -> sample verdict.

The GUI and the command line both use this module, so the headless and the operator paths are
the same code. Acquisition runs in the caller's thread (or the GUI's worker thread); recording and
detection run in a consumer thread fed through a bounded queue, so capturing RoI n+1 overlaps
with writing and detecting RoI n, and a slow consumer applies back-pressure instead of piling up
stacks in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.interfaces import Detector, RoiResult
from recordings import DetectedObject, RecordingError, RecordingWriter, check_sample_id
from rig.config import StationConfig
from rig.interfaces import Rig
from rig.layout import RoiGeometry, glass_edge_mask
from rig.scan import RoiCaptured, ScanError, ScanEvent, ScanFinished, ScanPlan, ScanRunner

log = logging.getLogger(__name__)

QUEUE_DEPTH = 2  # stacks waiting for the recorder/detector: ~2 x 131 MB at full size


# What a resumed recording must share with the station finishing it: the frame, the RoI grid,
# the glass and the exposure. (The simulated bench's virtual sample is not checked: `scan
# --resume --seed S` names it, and the recording keeps only the batch's series seed.)
RESUME_MUST_MATCH = (("camera", "width"), ("camera", "height"), ("scan", "columns"),
                     ("scan", "rows"), ("scan", "min_overlap_px"), ("scan", "pixel_size_mm"),
                     ("sample", "width_mm"), ("sample", "length_mm"),
                     ("camera", "exposure_us"))


def resume_mismatches(recorded: dict[str, Any], cfg: StationConfig) -> list[str]:
    """Differences between the config a recording was made with and this station's."""
    now = cfg.to_json_dict()
    out = []
    for section, key in RESUME_MUST_MATCH:
        was = recorded.get(section, {}).get(key)
        if was is not None and was != now[section][key]:
            out.append(f"{section}.{key} was {was!r}, is {now[section][key]!r}")
    return out


# -- events beyond the scan's own -------------------------------------------------------------
@dataclass(frozen=True)
class RoiRecorded:
    roi: RoiGeometry
    path: Path
    write_s: float


@dataclass(frozen=True)
class RoiDetected:
    """Per-RoI detector output as recording rows; the sample-level, de-duplicated objects
    come with SampleDone."""

    roi: RoiGeometry
    scratches: list[DetectedObject]
    contaminants: list[DetectedObject]
    probability: np.ndarray = field(repr=False)
    detect_s: float = 0.0


@dataclass(frozen=True)
class SampleResult:
    sample_id: str
    verdict: str  # PASS, FAIL, NOT-INSPECTED (--no-infer), INCOMPLETE, ABORTED
    recording: Path
    scratches: list[DetectedObject] = field(default_factory=list)
    contaminants: list[DetectedObject] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def complete(self) -> bool:
        return self.verdict in ("PASS", "FAIL", "NOT-INSPECTED")

    def summary_line(self) -> str:
        t = self.timings_s.get("total", float("nan"))
        extra = f"  ({self.error})" if self.error else ""
        return (f"{self.sample_id:<16} {self.verdict:<13} scratches {len(self.scratches):>2}  "
                f"contaminants {len(self.contaminants):>3}  {t:6.1f} s  {self.recording}{extra}")

    def to_json(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id, "verdict": self.verdict,
            "scratches": len(self.scratches), "contaminants": len(self.contaminants),
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "recording": str(self.recording), "error": self.error,
            "scratch_list": [o.to_json() for o in self.scratches],
            "contaminant_list": [o.to_json() for o in self.contaminants],
        }


@dataclass(frozen=True)
class SampleDone:
    result: SampleResult


InspectionEvent = ScanEvent | RoiRecorded | RoiDetected | SampleDone


class InspectionRun:
    """Inspect one sample on a rig and record it. Create one per sample; `run()` blocks."""

    def __init__(self, cfg: StationConfig, rig: Rig, detector: Detector | None, out_dir: Path,
                 sample_id: str, resume: Path | None = None):
        self.cfg = cfg
        self.rig = rig
        self.detector = detector
        self.sample_id = sample_id if resume is not None else check_sample_id(sample_id)
        self.path = resume if resume is not None else Path(out_dir) / f"{sample_id}.h5"
        self.resume_path = resume
        self._subscribers: list[Callable[[InspectionEvent], None]] = []
        self._runner: ScanRunner | None = None
        self._abort_requested = threading.Event()

    def subscribe(self, callback: Callable[[InspectionEvent], None]) -> None:
        self._subscribers.append(callback)

    def _emit(self, event: InspectionEvent) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:  # a broken listener must not lose the sample
                log.exception("event subscriber failed on %s", type(event).__name__)

    # -- commands (any thread) ---------------------------------------------------------------
    def pause(self) -> None:
        if self._runner:
            self._runner.pause()

    def resume(self) -> None:
        if self._runner:
            self._runner.resume()

    def abort(self) -> None:
        self._abort_requested.set()
        if self._runner:
            self._runner.abort()

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> SampleResult:
        t_start = time.monotonic()
        layout = {r.index: r for r in self.rig.layout}
        if self.resume_path is not None:
            writer = RecordingWriter.resume(self.resume_path)
            problems = resume_mismatches(writer.rig_config, self.cfg)
            if problems:
                writer.close()
                raise RecordingError(
                    f"{self.resume_path} was recorded with another station setup, so the "
                    "missing RoIs would not fit the recorded ones: " + "; ".join(problems)
                    + ". Resume it with the config it was recorded with")
            self.sample_id = writer.sample_id
            log.info("resuming %s: RoIs %s still to capture", self.path, writer.missing_rois())
        else:
            writer = RecordingWriter.create(
                self.path, sample_id=self.sample_id, rig_config=self.cfg.to_json_dict(),
                n_rois=len(layout), calibration_id=self.rig.calibration_id)
        plan = ScanPlan.from_config(self.cfg, self.sample_id, only_rois=writer.missing_rois(),
                                    layout=self.rig.layout)
        self._runner = runner = ScanRunner(self.rig, plan)
        if self._abort_requested.is_set():
            runner.abort()
        detections: dict[int, RoiResult] = {}
        timings = {"move": 0.0, "acquire": 0.0, "write": 0.0, "detect": 0.0}
        consumer_error: list[BaseException] = []
        work: queue.Queue[RoiCaptured | None] = queue.Queue(maxsize=QUEUE_DEPTH)

        def consume() -> None:
            while (event := work.get()) is not None:
                if consumer_error:
                    continue  # drain so the runner never blocks on a dead consumer
                try:
                    self._record(writer, event, timings)
                    if self.detector is not None:
                        detections[event.roi.index] = self._detect(self.detector, event.roi,
                                                                   event.stack,
                                                                   timings)
                except BaseException as exc:  # disk full, detector failure: stop the scan
                    consumer_error.append(exc)
                    log.error("recording/detection of RoI %d failed: %s", event.roi.index, exc)
                    runner.abort()

        consumer = threading.Thread(target=consume, name=f"record-{self.sample_id}", daemon=True)
        consumer.start()

        scan_error: list[BaseException] = []

        def on_scan_event(event: ScanEvent) -> None:
            if isinstance(event, ScanError):
                scan_error.append(event.error)
            if isinstance(event, RoiCaptured):
                timings["move"] += event.move_s
                timings["acquire"] += event.acquire_s
                work.put(event)  # blocks while the consumer is QUEUE_DEPTH stacks behind
            self._emit(event)

        runner.subscribe(on_scan_event)
        try:
            finished: ScanFinished = runner.run()
        finally:
            work.put(None)
            consumer.join()

        error = str(consumer_error[0]) if consumer_error else ""
        if not error and finished.failed:
            error = str(scan_error[0]) if scan_error else "device error during the scan (see log)"
        complete = not (finished.aborted or finished.failed or consumer_error)
        result_kwargs: dict[str, Any] = {}
        try:  # whatever happens below, what was recorded stays closed and readable
            if complete and self.detector is not None:
                detector = self.detector
                # RoIs recorded before an interruption are detected now, from the file.
                for index in sorted(set(layout) - set(detections)):
                    stack = writer.read_raw(index)
                    detections[index] = self._detect(detector, layout[index], stack, timings)
                timings["total"] = time.monotonic() - t_start
                results = detector.sample_results(detections.values(), timings)
                writer.write_results(results)
                verdict = results.verdict
                result_kwargs = {"scratches": results.scratches,
                                 "contaminants": results.contaminants}
            elif complete:
                verdict = "NOT-INSPECTED"
            else:
                verdict = "ABORTED" if finished.aborted and not consumer_error else "INCOMPLETE"
        finally:
            writer.close()
        timings["total"] = time.monotonic() - t_start
        result = SampleResult(self.sample_id, verdict, self.path, timings_s=timings, error=error,
                              **result_kwargs)
        self._emit(SampleDone(result))
        return result

    def _record(self, writer: RecordingWriter, ev: RoiCaptured, timings: dict[str, float]) -> None:
        t0 = time.monotonic()
        writer.write_roi(ev.roi.index, ev.stack, stage_xy_mm=ev.stage_xy_mm,
                         origin_px=ev.roi.origin_px, pixel_size_mm=ev.roi.pixel_size_mm,
                         exposure_us=self.cfg.camera.exposure_us, timestamps_s=ev.timestamps_s,
                         frame_ids=ev.frame_ids, truth=self.rig.samples.truth(ev.roi))
        dt = time.monotonic() - t0
        timings["write"] += dt
        self._emit(RoiRecorded(ev.roi, self.path, dt))

    def _edge_mask(self, roi: RoiGeometry, scale: int) -> np.ndarray | None:
        band = self.cfg.detector.edge_band_mm
        if band <= 0:
            return None
        return glass_edge_mask(roi.origin_px, roi.size_px, roi.pixel_size_mm, self.cfg.sample,
                               band, scale)

    def _detect(self, detector: Detector, roi: RoiGeometry, stack: np.ndarray,
                timings: dict[str, float]) -> RoiResult:
        t0 = time.monotonic()
        det = detector.detect_roi(stack, roi.index, roi.origin_px, roi.pixel_size_mm,
                                  edge_mask=self._edge_mask(roi, detector.probability_scale))
        dt = time.monotonic() - t0
        timings["detect"] += dt
        scratches, contaminants = det.detected_objects()
        self._emit(RoiDetected(roi, scratches, contaminants, det.probability, dt))
        return det
