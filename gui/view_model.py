"""What the operator window shows, kept without Qt: RoI states, detections, the banner, progress
and the shift history, updated from inspection events.

The window owns one `StationView`, feeds it every event of the live inspection (and the replays
the operator opens), and renders the `Update` each call returns. All decisions about what the
operator sees (which state a RoI is in, what the banner says while paused or aborting, what goes
into the shift history) are made here, so they are unit-tested without a display
(tests/test_gui_view_model.py); the widgets only draw and send commands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gui.errors import plain_error
from gui.imaging import AZIMUTH_STEP_DEG
from inspection import RoiDetected, RoiRecorded, SampleResult
from recordings import DetectedObject
from rig.layout import RoiGeometry
from rig.scan import (
    DeviceReconnected,
    FrameCaptured,
    RoiCaptured,
    RoiRetake,
    RoiStarted,
    ScanError,
    ScanFinished,
    ScanPaused,
)

if TYPE_CHECKING:
    from gui.workers import LoadedRoi

@dataclass(frozen=True)
class Banner:
    """The big state label: READY, SCANNING, PAUSED, ABORTING, a verdict, ERROR, or REPLAY
    (a recording opened from disk: never mistaken for the live sample's verdict)."""

    state: str = "READY"
    sample_id: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Progress:
    done: int = 0
    total: int = 0
    text: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    time: str
    sample_id: str
    verdict: str
    scratches: int
    contaminants: int
    cycle_s: float
    path: str = ""


@dataclass
class ShiftHistory:
    """Every sample of this session, newest last."""

    entries: list[HistoryEntry] = field(default_factory=list)

    def add(self, result: SampleResult) -> HistoryEntry:
        entry = HistoryEntry(time.strftime("%H:%M:%S"), result.sample_id, result.verdict,
                             len(result.scratches), len(result.contaminants),
                             result.timings_s.get("total", 0.0), str(result.recording))
        self.entries.append(entry)
        return entry

    def summary(self) -> str:
        n = len(self.entries)
        if not n:
            return "shift: no samples yet"
        n_pass = sum(e.verdict == "PASS" for e in self.entries)
        n_fail = sum(e.verdict == "FAIL" for e in self.entries)
        other = n - n_pass - n_fail
        done = [e.cycle_s for e in self.entries if e.verdict in ("PASS", "FAIL")]
        mean = f", mean cycle {sum(done) / len(done):.1f} s" if done else ""
        return (f"shift: {n} samples · {n_pass} PASS · {n_fail} FAIL"
                + (f" · {other} other" if other else "") + mean)


@dataclass
class RecordingSummary:
    """What the window needs to know about a recording, read once off the GUI thread."""

    path: Path
    sample_id: str
    status: str
    n_rois: int
    recorded: list[int]
    rois: list[RoiGeometry]  # every planned RoI (recorded ones from their attributes)
    sample_mm: tuple[float, float, float]  # width, length, corner radius
    verdict: str = ""
    detector: str = ""
    scratches: list[DetectedObject] = field(default_factory=list)
    contaminants: list[DetectedObject] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    created: str = ""
    truth_defects: int = 0


def counts_text(scratches: int, contaminants: int, cycle_s: float | None = None) -> str:
    text = f"{scratches} scratch(es) · {contaminants} contaminant(s)"
    return text + (f" · cycle {cycle_s:.1f} s" if cycle_s else "")


@dataclass
class SampleState:
    """One sample as the window knows it (the live one, or a replayed recording)."""

    sample_id: str
    rois: dict[int, RoiGeometry]
    sample_mm: tuple[float, float, float]
    path: Path | None = None
    live: bool = True
    scanning: bool = False
    paused: bool = False
    aborting: bool = False
    banner: Banner = field(default_factory=Banner)
    states: dict[int, str] = field(default_factory=dict)
    detections: dict[int, RoiDetected] = field(default_factory=dict)
    scratches: list[DetectedObject] | None = None  # merged sample result, once known
    contaminants: list[DetectedObject] | None = None
    recorded: set[int] = field(default_factory=set)
    frames: int = 0
    capturing: int | None = None  # RoI being captured now
    result: SampleResult | None = None
    # display caches filled by the preview thread (not decisions, just what was rendered)
    previews: dict[int, LoadedRoi] = field(default_factory=dict)
    heat: dict[int, Any] = field(default_factory=dict)  # probability overlays per RoI

    @property
    def merged(self) -> bool:
        return self.scratches is not None

    def objects(self) -> tuple[list[DetectedObject], list[DetectedObject]]:
        """Merged results when the sample is done, else the per-RoI results so far."""
        if self.scratches is not None:
            return self.scratches, self.contaminants or []
        s: list[DetectedObject] = []
        c: list[DetectedObject] = []
        for i in sorted(self.detections):
            s += self.detections[i].scratches
            c += self.detections[i].contaminants
        return s, c

    def objects_in(self, roi: int) -> list[tuple[str, DetectedObject]]:
        s, c = self.objects()
        return [("scratch", o) for o in s if o.roi == roi] + \
               [("contaminant", o) for o in c if o.roi == roi]

    @property
    def objects_note(self) -> str:
        return "per RoI until the sample is merged" if self.detections and not self.merged \
            else ""


@dataclass
class Update:
    """What one call changed, for the window to render. Empty means nothing to redraw."""

    roi_states: dict[int, str] = field(default_factory=dict)  # of the sample on screen
    objects: bool = False  # the detections of the sample on screen
    banner: bool = False
    progress: bool = False
    status: dict[str, str] = field(default_factory=dict)  # device status lines
    frame: tuple[int, int] | None = None  # (frame id, state) of a captured frame
    detected: RoiDetected | None = None  # a RoI's detections (its heat map to render)
    history: HistoryEntry | None = None
    error: BaseException | str | None = None
    message: str = ""  # one line for the status bar


class StationView:
    """The station as the operator sees it: the live sample, the one on screen, the shift."""

    def __init__(self, rois: dict[int, RoiGeometry], sample_mm: tuple[float, float, float],
                 states_per_roi: int = 6):
        self.rois = dict(rois)
        self.sample_mm = sample_mm
        self.states_per_roi = states_per_roi
        self.has_detector = False
        self.live: SampleState | None = None  # the sample of the station's last scan
        self.shown = self.idle_sample()
        self.progress = Progress(0, len(self.rois), "")
        self.history = ShiftHistory()
        self.last_result: SampleResult | None = None

    def idle_sample(self) -> SampleState:
        return SampleState("", dict(self.rois), self.sample_mm, live=True)

    @property
    def scanning(self) -> bool:
        return self.live is not None and self.live.scanning

    @property
    def showing_live(self) -> bool:
        return self.live is not None and self.shown is self.live

    # -- the live sample ----------------------------------------------------------------------
    def begin_sample(self, sample_id: str, path: Path, *, resuming: bool = False) -> Update:
        s = SampleState(sample_id, dict(self.rois), self.sample_mm, path=path, live=True,
                        scanning=True)
        s.banner = Banner("SCANNING", sample_id,
                          "resuming the interrupted recording" if resuming else "")
        self.live = self.shown = s
        self.progress = Progress(0, len(s.rois), "starting…")
        return Update(objects=True, banner=True, progress=True)

    def on_event(self, ev: Any) -> Update:
        """One inspection event of the live sample."""
        s = self.live
        u = Update()
        if s is None:
            return u
        if isinstance(ev, FrameCaptured):
            s.frames += 1
            u.frame = (ev.frame_id, ev.state)
            x, y = ev.roi.stage_xy_mm  # a frame is in: the stage is there, not moving
            u.status["stage"] = f"at ({x:.2f}, {y:.2f}) mm, RoI {ev.roi.index:02d}: capturing"
            az = AZIMUTH_STEP_DEG * ev.state
            u.status["lights"] = f"state {ev.state} ({az:.0f}°/{az + 180:.0f}°) triggered"
            total = len(s.rois) * self.states_per_roi
            self._progress(u, self._finished(s),
                           f"RoI {ev.roi.index:02d} · frame {s.frames}/{total}")
        elif isinstance(ev, RoiStarted):
            self._set_state(u, s, ev.roi.index, "capturing")
            x, y = ev.roi.stage_xy_mm
            u.status["stage"] = f"moving to ({x:.2f}, {y:.2f}) mm for RoI {ev.roi.index:02d}"
            s.capturing = ev.roi.index  # the view follows once its first frame is ready
        elif isinstance(ev, RoiCaptured):
            s.recorded.add(ev.roi.index)
            if s.states.get(ev.roi.index) == "capturing":
                self._set_state(u, s, ev.roi.index,
                                "captured" if self.has_detector else "recorded")
            self._progress(u, self._finished(s), self._progress_text(s))
        elif isinstance(ev, RoiRecorded):
            u.status["recording"] = (f"{ev.path.name}: RoI {ev.roi.index:02d} written "
                                     f"in {ev.write_s:.2f} s")
        elif isinstance(ev, RoiDetected):
            s.detections[ev.roi.index] = ev
            u.detected = ev
            self._set_state(u, s, ev.roi.index, "scratch" if ev.scratches else "clean")
            sc, co = s.objects()
            self._banner(u, s, "SCANNING" if not s.paused else "PAUSED",
                         ("SCRATCH FOUND so far: " if sc else "so far: ")
                         + counts_text(len(sc), len(co)))
            self._progress(u, self._finished(s), self._progress_text(s))
            u.objects = s is self.shown
        elif isinstance(ev, ScanPaused):
            s.paused = ev.paused
            if not s.aborting:
                self._banner(u, s, "PAUSED" if ev.paused else "SCANNING",
                             "paused at a safe point: Resume continues, Abort stops"
                             if ev.paused else "")
            self._progress(u, self.progress.done, "paused" if ev.paused else "resumed")
        elif isinstance(ev, DeviceReconnected):
            key = {"camera": "camera", "stage": "stage"}.get(ev.device, "lights")
            u.status[key] = (f"{ev.device} lost during RoI {ev.roi.index:02d} and reconnected "
                             f"after {ev.downtime_s:.1f} s")
        elif isinstance(ev, RoiRetake):
            u.status["camera"] = (f"RoI {ev.roi.index:02d}: {plain_error(ev.error).headline} "
                                  f"Taking its stack again (retake {ev.attempt}).")
        elif isinstance(ev, ScanError):
            if ev.roi is not None:
                self._set_state(u, s, ev.roi.index, "error")
            u.error = ev.error
        elif isinstance(ev, ScanFinished):
            u.status["lights"] = "off"
        return u

    def request_abort(self) -> Update:
        """The operator pressed Abort: say so until the run has stopped."""
        s = self.live
        u = Update()
        if s is None or not s.scanning:
            return u
        s.aborting = True
        self._banner(u, s, "ABORTING", "stopping at the next safe point; what was recorded "
                                       "is kept")
        self._progress(u, self.progress.done, "aborting…")
        return u

    def preparation_failed(self, exc: BaseException) -> Update:
        """The sample could not be put under the camera: nothing was scanned."""
        s = self.live
        u = Update(error=exc)
        if s is not None:
            s.scanning = False
            self._banner(u, s, "ERROR", "the sample could not be prepared")
        return u

    def finish(self, result: SampleResult | None, exc: BaseException | None) -> Update:
        """The inspection ended, with a result (any verdict) or an exception."""
        s = self.live
        u = Update()
        if s is None:
            return u
        s.scanning = s.paused = s.aborting = False
        s.capturing = None
        if exc is not None or result is None:
            u.error = exc or "the inspection ended without a result"
            for i in s.rois:  # the RoI being captured when it failed is not left "capturing"
                if s.states.get(i) == "capturing":
                    self._set_state(u, s, i, "pending")
            self._banner(u, s, "ERROR", plain_error(u.error).headline)
            return u
        self.last_result = s.result = result
        if result.verdict in ("PASS", "FAIL"):
            s.scratches = list(result.scratches)
            s.contaminants = list(result.contaminants)
            for i in s.rois:
                if s.states.get(i) != "error":
                    has = any(o.roi == i for o in s.scratches)
                    self._set_state(u, s, i, "scratch" if has else "clean")
        else:  # aborted or incomplete: what was not inspected says so
            for i in s.rois:
                if s.states.get(i) in (None, "capturing"):
                    self._set_state(u, s, i, "pending")
        u.objects = s is self.shown
        self._banner(u, s, result.verdict, self.result_detail(result, s))
        u.history = self.history.add(result)
        self._progress(u, len(s.recorded), result.verdict.lower())
        state = "complete" if result.complete else "incomplete"
        u.status["recording"] = f"{result.recording} ({state})"
        u.message = result.summary_line()
        return u

    @staticmethod
    def result_detail(result: SampleResult, s: SampleState) -> str:
        """Counts as the table lists them: merged for a verdict, per RoI so far otherwise."""
        sc, co = s.objects()
        text = ("" if s.merged or not s.detections else "inspected so far: ") + counts_text(
            len(sc), len(co), result.timings_s.get("total", 0.0))
        if result.verdict in ("ABORTED", "INCOMPLETE"):
            text += (f"\nnot a verdict on the glass: start sample {result.sample_id} again to "
                     "finish its recording")
        elif result.verdict == "NOT-INSPECTED":
            text += "\nno detector loaded: the recording can be inspected later (infer)"
        if result.error:
            text += f"\n{plain_error(result.error).detail}"
        return text

    # -- replays ------------------------------------------------------------------------------
    def show_replay(self, summary: RecordingSummary) -> SampleState:
        """A recording the operator opened; the live sample goes on in the background."""
        with_scratch = {o.roi for o in summary.scratches}
        states = {}
        for r in summary.rois:
            if r.index not in summary.recorded:
                states[r.index] = "pending"
            elif not summary.verdict:
                states[r.index] = "recorded"
            else:
                states[r.index] = "scratch" if r.index in with_scratch else "clean"
        verdict = summary.verdict or ("NOT-INSPECTED" if summary.status == "complete"
                                      else "INCOMPLETE")
        total = summary.timings_s.get("total")
        detail = (f"recorded verdict {verdict} · {summary.path.name} · {summary.status} · "
                  f"{len(summary.recorded)}/{summary.n_rois} RoIs\n"
                  + counts_text(len(summary.scratches), len(summary.contaminants), total))
        s = SampleState(summary.sample_id, {r.index: r for r in summary.rois},
                        summary.sample_mm, path=summary.path, live=False, states=states,
                        recorded=set(summary.recorded),
                        banner=Banner("REPLAY", summary.sample_id, detail))
        if summary.verdict:
            s.scratches, s.contaminants = summary.scratches, summary.contaminants
        self.shown = s
        return s

    def back_to_live(self) -> SampleState:
        self.shown = self.live or self.idle_sample()
        return self.shown

    # -- helpers ------------------------------------------------------------------------------
    def _set_state(self, u: Update, s: SampleState, index: int, state: str) -> None:
        s.states[index] = state
        if s is self.shown:
            u.roi_states[index] = state

    def _banner(self, u: Update, s: SampleState, state: str, detail: str = "") -> None:
        s.banner = Banner(state, s.sample_id, detail)
        u.banner = u.banner or s is self.shown

    def _finished(self, s: SampleState) -> int:
        """RoIs done with: recorded, and inspected too when there is a detector (the bar
        reaches its end only when the last RoI's detection has)."""
        return len(s.detections) if self.has_detector else len(s.recorded)

    def _progress_text(self, s: SampleState) -> str:
        n = len(s.rois)
        text = f"{len(s.recorded)}/{n} RoIs captured"
        if self.has_detector:
            text += f" · {len(s.detections)}/{n} inspected"
        return text

    def _progress(self, u: Update, done: int, text: str) -> None:
        self.progress = Progress(done, len(self.live.rois) if self.live else 0, text)
        u.progress = True
