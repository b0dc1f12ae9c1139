"""The operator's main window: it listens to the inspection and commands it, nothing more.

Threads (see gui/workers.py): the inspection runs in its own thread (`InspectionBridge`), raw
frames go from the scan thread straight to the preview thread (`PreviewWorker`) and come back
as small tiles, device commands run on the device thread (`DeviceWorker`). Every slot here does
a few milliseconds of bookkeeping and widget updates; nothing in the GUI thread touches a
device, h5py, torch or a full-size frame.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

from errors import StationError
from gui import devices, imaging
from gui.calibration_panel import CalibrationPanel
from gui.errors import plain_error
from gui.panels import (
    ControlPanel,
    DetectionsTable,
    DeviceStatus,
    ErrorPanel,
    ManualPanel,
    VerdictPanel,
)
from gui.sample_map import SampleMap
from gui.signature_plot import SignaturePlot
from gui.stack_view import StackView
from gui.view_model import RecordingSummary, SampleState, StationView, Update
from gui.workers import DeviceWorker, InspectionBridge, LoadedRoi, PreviewWorker
from inference.interfaces import Detector
from inspection import InspectionRun, SampleResult
from recordings import DetectedObject, check_sample_id
from rig.camera import Frame
from rig.config import StationConfig
from rig.interfaces import Rig
from rig.layout import roi_layout
from rig.scan import FrameCaptured, RoiCaptured

log = logging.getLogger(__name__)

KEEP_RAW_STACKS = 2  # full-resolution stacks kept in memory during a scan (signature, zoom)
STATUS_POLL_MS = 1000
MAP_MIN_PX = QtCore.QSize(150, 210)  # the sample map's least size: RoI labels stay legible


def settings_path() -> Path:
    """Where the window remembers its geometry and dividers (DARKFIELD_GUI_SETTINGS, default
    ~/.config/darkfield-station/gui.ini)."""
    return Path(os.environ.get("DARKFIELD_GUI_SETTINGS")
                or Path.home() / ".config" / "darkfield-station" / "gui.ini")


def _scrolled(widget: QtWidgets.QWidget) -> QtWidgets.QScrollArea:
    """A panel that scrolls on a short screen instead of making the window taller."""
    area = QtWidgets.QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


def _settings() -> QtCore.QSettings:
    return QtCore.QSettings(str(settings_path()), QtCore.QSettings.Format.IniFormat)


def sample_mm_of(cfg: StationConfig) -> tuple[float, float, float]:
    s = cfg.sample
    return s.width_mm, s.length_mm, s.corner_radius_mm


def auto_sample_id(out_dir: Path) -> str:
    base = time.strftime("S%Y%m%d-%H%M%S")
    sid, n = base, 1
    while (out_dir / f"{sid}.h5").exists():
        n += 1
        sid = f"{base}-{n}"
    return sid


class MainWindow(QtWidgets.QMainWindow):
    """Operator window. Give it a rig and detector, or factories run on the device thread."""

    def __init__(self, cfg: StationConfig, *, rig: Rig | None = None,
                 detector: Detector | None = None,
                 rig_factory: Callable[[], Rig] | None = None,
                 detector_factory: Callable[[], Detector] | None = None,
                 out_dir: Path | None = None, max_fps: float = 8.0):
        super().__init__()
        self.remember_layout = False  # restore_layout() turns it on
        self.cfg = cfg
        self.rig = rig
        self._owns_rig = rig is None  # a rig handed in is closed by whoever made it
        self.detector_pending = False  # a detector is being loaded: Start waits for it
        self.detector = detector
        self.out_dir = Path(out_dir) if out_dir is not None else Path(cfg.paths.recordings)
        self.layout_rois = {r.index: r for r in roi_layout(cfg)}
        self.vm = StationView(self.layout_rois, sample_mm_of(cfg), cfg.scan.states)
        self.vm.has_detector = detector is not None
        self.displayed: int | None = None
        self._load_req = 0
        self._pending_select: tuple[str, DetectedObject] | None = None
        self._closing = False
        self.rig_error = ""
        self.setWindowTitle(f"Dark-field inspection · {cfg.station.name}")
        # Closing deletes the window and every child on the Qt side, deterministically: nothing
        # is left for Python's cyclic GC to destroy later at an unsafe moment (gui/lifetime.py).
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        # workers
        self.preview = PreviewWorker(self)
        self.devices = DeviceWorker(self)
        self.bridge = InspectionBridge(self)
        self.bridge.taps.append(self._tap)
        q = Qt.ConnectionType.QueuedConnection
        self.bridge.event.connect(self._on_event, q)
        self.bridge.done.connect(self._on_done, q)
        self.preview.frame_ready.connect(self._on_frame_ready, q)
        self.preview.roi_ready.connect(self._on_roi_ready, q)
        self.preview.heat_ready.connect(self._on_heat_ready, q)
        self.preview.summary_ready.connect(self._on_summary, q)
        self.preview.failed.connect(lambda msg: self.statusBar().showMessage(msg, 8000), q)

        # widgets
        profile = f"station: {cfg.station.name} · {cfg.source or 'defaults'} · camera " \
                  f"{cfg.camera.backend} {cfg.camera.width}x{cfg.camera.height}"
        self.controls = ControlPanel(profile)
        self.stack = StackView(self.preview, max_fps=max_fps)
        self.map = SampleMap()
        self.table = DetectionsTable()
        self.signature = SignaturePlot()
        self.verdict = VerdictPanel()
        self.manual = ManualPanel()
        self.status = DeviceStatus()
        self.error_panel = ErrorPanel()
        self.calibration = CalibrationPanel(cfg, rig=rig)
        self._build_layout()
        self._build_menu()

        # wiring
        self.controls.start_requested.connect(self.start_inspection)
        self.controls.pause_requested.connect(self._on_pause)
        self.controls.abort_requested.connect(self.abort_inspection)
        self.map.roi_clicked.connect(self._on_map_roi)
        self.map.object_clicked.connect(lambda kind, o: self.select_object(kind, o))
        self.table.object_selected.connect(self.select_object)
        self.stack.pixel_clicked.connect(self.show_signature)
        self.stack.roi_step.connect(self._step_roi)
        self.stack.follow_changed.connect(self._on_follow)
        self.stack.levels_changed.connect(self._on_levels)
        self.verdict.history_activated.connect(lambda p: self.open_recording(Path(p)))
        self.manual.jog_requested.connect(self._jog)
        self.manual.jog_hold_started.connect(
            lambda ux, uy: self._rig_call(devices.jog_hold, ux, uy))
        self.manual.jog_hold_released.connect(lambda: self._rig_call(devices.jog_release))
        self.manual.home_requested.connect(self._home)
        self.manual.goto_roi_requested.connect(self._goto_roi)
        self.manual.light_requested.connect(self._light)
        self.manual.snapshot_requested.connect(self._snapshot)
        self.calibration.run_button.clicked.connect(self._update_controls)
        self.calibration.calibration_saved.connect(self._on_calibration_saved)
        self.calibration.failed.connect(lambda _msg: self._update_controls())

        self._poll = QtCore.QTimer(self)
        self._poll.setInterval(STATUS_POLL_MS)
        self._poll.timeout.connect(self._poll_status)
        self._poll.start()

        self._display_sample(self.vm.shown)
        self.status.set("recording", str(self.out_dir))
        cam = cfg.camera
        self.status.set("camera", f"{cam.backend} {cam.width}x{cam.height} {cam.pixel_format}, "
                                  f"{cam.exposure_us / 1000:.0f} ms, {cam.trigger} trigger")
        self.status.set("detector", "built in" if detector is not None else "-")
        self._update_controls()
        if rig is None and rig_factory is not None:
            self.status.set("rig", "connecting…")
            self.devices.submit(rig_factory, on_done=self._on_rig_built)
        elif rig is not None:
            self.status.set("rig", type(rig).__name__ + " ready")
        else:
            self.status.set("rig", "none (replay only)")
            self.stack.follow.setChecked(False)  # nothing live to follow
            self.stack.follow.setEnabled(False)
        self.detector_pending = detector is None and detector_factory is not None
        if self.detector_pending:
            self.status.set("detector", "loading…")
            self.devices.submit(detector_factory, on_done=self._on_detector_loaded)
        elif detector is not None:
            self.status.set("detector", detector.name)
        self._update_controls()

    # -- layout -------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        bottom = QtWidgets.QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.table)
        bottom.addWidget(self.signature)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        left = QtWidgets.QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.stack)
        left.addWidget(bottom)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 2)
        dev = QtWidgets.QWidget()
        dev_lay = QtWidgets.QVBoxLayout(dev)
        dev_lay.setContentsMargins(2, 2, 2, 2)
        dev_lay.addWidget(self.status)
        dev_lay.addWidget(self.manual)
        dev_lay.addStretch(1)
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(_scrolled(dev), "Devices && manual")
        self.tabs.addTab(self.verdict.table, "Shift history")
        self.tabs.addTab(_scrolled(self.calibration), "Calibration")
        right_top = QtWidgets.QWidget()
        rt = QtWidgets.QVBoxLayout(right_top)
        rt.setContentsMargins(0, 0, 0, 0)
        rt.addWidget(self.verdict)
        rt.addWidget(self.map, 1)
        self.map.setMinimumSize(MAP_MIN_PX)  # RoIs large enough to read and click
        right = QtWidgets.QSplitter(Qt.Orientation.Vertical)
        right.addWidget(right_top)
        right.addWidget(self.tabs)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        main = QtWidgets.QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setStretchFactor(0, 3)
        main.setStretchFactor(1, 1)
        central = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addWidget(self.controls)
        lay.addWidget(self.error_panel)
        lay.addWidget(main, 1)
        self.setCentralWidget(central)
        self.splitters = (main, left, right, bottom)
        for splitter in self.splitters:
            splitter.setChildrenCollapsible(False)  # no panel dragged away to nothing
        self.resize(1600, 1000)
        main.setSizes([1180, 420])
        left.setSizes([600, 330])
        right.setSizes([560, 390])
        bottom.setSizes([700, 480])

    def restore_layout(self) -> None:
        """Window geometry and dividers as the operator left them (`settings_path`); from
        now on they are saved again when the window closes (`main.py gui` does this)."""
        self.remember_layout = True
        settings = _settings()
        geometry = settings.value("window/geometry")
        if isinstance(geometry, QtCore.QByteArray):
            self.restoreGeometry(geometry)
        for i, splitter in enumerate(self.splitters):
            state = settings.value(f"window/splitter{i}")
            if isinstance(state, QtCore.QByteArray):
                splitter.restoreState(state)

    def save_layout(self) -> None:
        settings = _settings()
        settings.setValue("window/geometry", self.saveGeometry())
        for i, splitter in enumerate(self.splitters):
            settings.setValue(f"window/splitter{i}", splitter.saveState())

    def _build_menu(self) -> None:
        file = self.menuBar().addMenu("&File")
        act = QtGui.QAction("&Open recording…", self)
        act.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        act.triggered.connect(self._ask_recording)
        file.addAction(act)
        self.live_action = QtGui.QAction("Back to &live", self)
        self.live_action.triggered.connect(self.back_to_live)
        file.addAction(self.live_action)
        file.addSeparator()
        quit_act = QtGui.QAction("&Quit", self)
        quit_act.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        quit_act.triggered.connect(self.close)
        file.addAction(quit_act)

    # -- state helpers ------------------------------------------------------------------------
    @property
    def sample(self) -> SampleState:
        """The sample on screen (live or replayed)."""
        return self.vm.shown

    @property
    def live_sample(self) -> SampleState | None:
        return self.vm.live

    @property
    def last_result(self) -> SampleResult | None:
        return self.vm.last_result

    @property
    def scanning(self) -> bool:
        return self.bridge.running or self.vm.scanning

    def _display_sample(self, state: SampleState) -> None:
        """Draw a sample from scratch (a new one, a replay, back to live)."""
        self.displayed = None
        self._pending_select = None
        self.map.set_layout(state.rois.values(), state.sample_mm, state.states)
        self.map.set_current(None)
        self._render_objects(state)
        self._render_banner(state)
        self._clear_selection()

    def _clear_selection(self) -> None:
        """A detection picked on one RoI or sample never stays outlined on another image."""
        self.stack.clear_selection()
        self.map.select_object(None)
        self.table.clear_selection()
        self.signature.clear()

    def _render(self, u: Update) -> None:
        """Draw what one view-model call changed."""
        for index, roi_state in u.roi_states.items():
            self.map.set_state(index, roi_state)
        if u.detected is not None:
            ev = u.detected
            prob = ev.probability
            if prob is not None and prob.ndim == 2 and prob.shape[0]:
                self.preview.heat(self.vm.live.sample_id if self.vm.live else "", ev.roi.index,
                                  prob, ev.roi.size_px[0] / prob.shape[0])
        if u.objects:
            self._render_objects(self.sample)
            if self.displayed is not None:
                self._apply_overlays()
        if u.banner:
            self._render_banner(self.sample)
        if u.progress:
            p = self.vm.progress
            self.controls.set_progress(p.done, p.total, p.text)
        for key, text in u.status.items():
            self.status.set(key, text)
        if u.frame is not None:
            self.status.frame(*u.frame)
        if u.history is not None:
            self.verdict.add_history(u.history, self.vm.history.summary())
        if u.error is not None:
            self._report_error(u.error)
        if u.message:
            self.statusBar().showMessage(u.message, 15000)

    def _render_objects(self, state: SampleState) -> None:
        sc, co = state.objects()
        self.map.set_objects(sc, co)
        self.table.set_objects(sc, co, note=state.objects_note)

    def _render_banner(self, state: SampleState) -> None:
        b = state.banner
        self.verdict.set_state(b.state, b.sample_id, b.detail)

    @property
    def ready(self) -> bool:
        """A sample can be started: rig up, the detector loaded (or known to be missing), and
        no calibration using the devices."""
        return self.rig is not None and not self.detector_pending \
            and not self.calibration.running

    def _update_controls(self) -> None:
        running = self.scanning
        ready = self.ready
        calibrating = self.calibration.running
        live = self.vm.live
        self.controls.set_running(running, can_start=ready,
                                  stopping=live is not None and live.aborting)
        self.manual.setEnabled(self.rig is not None and not running and not calibrating)
        self.calibration.setEnabled(self.rig is not None and not running)
        self.live_action.setEnabled(not self.sample.live)

    def roi_label(self, index: int, extra: str = "") -> str:
        r = self.sample.rois.get(index)
        if r is None:
            return f"RoI {index:02d}"
        cx, cy = r.center_mm
        src = "live" if self.sample.live else (self.sample.path.name if self.sample.path else "")
        text = f"RoI {index:02d} (r{r.row} c{r.col}) · ({cx:.1f}, {cy:.1f}) mm · {src}"
        return f"{text} {extra}".strip()

    # -- inspection ---------------------------------------------------------------------------
    def start_inspection(self, sample_id: str = "") -> None:
        if self.scanning or not self.ready:
            return
        sid = sample_id.strip() or auto_sample_id(self.out_dir)
        try:
            check_sample_id(sid)
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except (StationError, OSError) as exc:
            self._report_error(exc)
            return
        path = self.out_dir / f"{sid}.h5"
        resume = None
        if path.exists():
            resume = path  # an interrupted recording of this sample: finish it
        self.error_panel.clear()
        run = InspectionRun(self.cfg, self.rig, self.detector, self.out_dir, sid, resume=resume)
        update = self.vm.begin_sample(sid, run.path, resuming=resume is not None)
        self._display_sample(self.vm.shown)
        self._render(update)
        self.preview.forget(run.path)
        self.stack.follow.setChecked(True)
        self.manual.light.setCurrentIndex(0)  # the scan leaves every light off
        self.status.set("lights", "sequenced by the scan")
        # the sample under the camera: loaded by the operator, or the next virtual one
        self.devices.submit(self.rig.samples.load_sample, sid,
                            on_done=lambda _r, exc: self._launch(run, exc))
        self._update_controls()

    def _launch(self, run: InspectionRun, exc: BaseException | None) -> None:
        if exc is not None:
            self._render(self.vm.preparation_failed(exc))
            self._update_controls()
            return
        try:
            self.bridge.start(run)
        except RuntimeError as err:
            self._report_error(err)
        self._update_controls()

    def abort_inspection(self) -> None:
        if self.bridge.running:
            self.bridge.abort()
            self._render(self.vm.request_abort())
            self._update_controls()

    def _on_pause(self, pause: bool) -> None:
        if pause:
            self.bridge.pause()
        else:
            self.bridge.resume()

    def _tap(self, ev: Any) -> None:
        """Scan thread: hand raw data to the preview thread without passing the GUI."""
        if isinstance(ev, FrameCaptured):
            self.preview.submit_frame(ev.roi.index, ev.state, ev.frame_id, ev.image)
        elif isinstance(ev, RoiCaptured):
            self.preview.submit_stack(ev.roi.index, ev.stack, ev.frame_ids)

    def _on_event(self, ev: Any) -> None:
        self._render(self.vm.on_event(ev))

    def _on_done(self, result: SampleResult | None, exc: BaseException | None) -> None:
        self._render(self.vm.finish(result, exc))
        self._update_controls()

    def _report_error(self, exc: BaseException | str) -> None:
        pe = plain_error(exc)
        self.error_panel.show_error(pe.headline, pe.detail, pe.action)
        self.statusBar().showMessage(pe.headline, 15000)
        log.warning("operator shown: %s (%s)", pe.headline, pe.detail)

    # -- what the stack view shows ------------------------------------------------------------
    def _on_frame_ready(self, roi: int, state: int, tile: np.ndarray, factor: int,
                        shape: tuple[int, int]) -> None:
        ls = self.live_sample
        if roi != -1 and ls is not None and self.sample is ls and ls.scanning \
                and self.stack.follow.isChecked() and roi == ls.capturing \
                and self.displayed != roi:
            # follow: switch to the new RoI at its first frame, so the previous RoI (with its
            # max and modulation tiles) stays on screen while the stage moves
            self.displayed = roi
            self.map.set_current(roi)
            self.stack.begin_roi(roi, shape, self.roi_label(roi, "· capturing"), keep=True)
        if self.displayed == roi and self.stack.current is None \
                and (roi == -1 or self.sample is self.live_sample):
            self.stack.show_frame(roi, state, tile, factor, shape)

    def _on_roi_ready(self, loaded: LoadedRoi) -> None:
        s = self.sample
        i = loaded.preview.roi
        if loaded.source == "live":
            ls = self.live_sample
            if ls is None:
                return
            ls.previews[i] = loaded
            kept = [k for k, v in ls.previews.items() if v.stack is not None]
            for k in kept[:-KEEP_RAW_STACKS]:
                ls.previews[k].stack = None  # keep memory bounded; the file has the raw data
            if s is ls and self.displayed == i:
                self._show_loaded(loaded)
        else:
            if loaded.request != self._load_req or s.path is None \
                    or loaded.source != str(s.path):
                return
            s.previews[i] = loaded
            if loaded.heat is not None:
                s.heat[i] = loaded.heat
            if self.displayed == i:
                self._show_loaded(loaded)

    def _on_heat_ready(self, key: str, roi: int, heat: tuple[np.ndarray, float]) -> None:
        ls = self.live_sample
        if ls is None or ls.sample_id != key:
            return
        ls.heat[roi] = heat
        if self.sample is ls and self.displayed == roi:
            self._apply_overlays()

    def _show_loaded(self, loaded: LoadedRoi) -> None:
        self.stack.show_roi(loaded, self.roi_label(loaded.preview.roi))
        if loaded.preview.levels != self.preview.levels:  # stored before the levels changed
            self._on_levels(self.preview.levels)
        self._apply_overlays()
        if self._pending_select is not None and self._pending_select[1].roi == loaded.preview.roi:
            kind, obj = self._pending_select
            self._pending_select = None
            self.stack.select_box(obj.box_px)

    def _apply_overlays(self) -> None:
        s, i = self.sample, self.displayed
        if i is None:
            return
        heat = s.heat.get(i)
        if heat is None and i in s.previews:
            heat = s.previews[i].heat
        self.stack.set_overlays(s.objects_in(i), heat)

    def show_roi(self, index: int) -> None:
        """Show one RoI of the current sample: from memory, or read from its recording."""
        s = self.sample
        if index not in s.rois:
            return
        if index != self.displayed and self._pending_select is None:
            self._clear_selection()
        self.displayed = index
        self.map.set_current(index)
        loaded = s.previews.get(index)
        if s.live and s.scanning and index == s.capturing and loaded is None:
            r = s.rois[index]  # its frames fill the tiles as they arrive
            self.stack.begin_roi(index, r.size_px, self.roi_label(index, "· capturing"))
            return
        if loaded is not None and (loaded.stack is not None or s.scanning or s.path is None):
            self._show_loaded(loaded)
        elif s.path is not None and not s.scanning and index in s.recorded:
            if loaded is not None:
                self._show_loaded(loaded)  # preview now, full stack when read
            else:
                r = s.rois[index]
                self.stack.begin_roi(index, r.size_px, self.roi_label(index, "· loading…"))
            self._load_req = self.preview.load_roi(s.path, index)
        elif loaded is not None:
            self._show_loaded(loaded)
        else:
            r = s.rois[index]
            self.stack.begin_roi(index, r.size_px, self.roi_label(index, "· not captured"))

    def _on_map_roi(self, index: int) -> None:
        s = self.sample
        if s.scanning and self.stack.follow.isChecked():
            self.stack.follow.setChecked(False)  # the operator wants to look at this one
        self.show_roi(index)

    def _step_roi(self, step: int) -> None:
        s = self.sample
        if not s.rois:
            return
        ids = sorted(s.rois)
        cur = self.displayed if self.displayed in ids else ids[0] - step
        nxt = ids[(ids.index(cur) + step) % len(ids)] if cur in ids else ids[0]
        self._on_map_roi(nxt)

    def _on_follow(self, on: bool) -> None:
        s = self.sample
        if on and s.scanning and s.previews:
            self.show_roi(max(s.previews))  # the newest RoI; the next frame switches on

    def _on_levels(self, name: str) -> None:
        cur = self.stack.current
        if cur is not None:
            req = self.preview.relevel(cur.preview, name, cur.stack, cur.heat, cur.source)
            if cur.source != "live":
                self._load_req = req

    def select_object(self, kind: str, obj: DetectedObject) -> None:
        """From the table or the map: show its RoI, outline it and zoom on it."""
        self.map.select_object(obj)
        self.table.select(obj)
        if self.displayed != obj.roi or self.stack.current is None \
                or self.stack.roi_index != obj.roi:
            self._pending_select = (kind, obj)
            if self.sample.scanning:
                self.stack.follow.setChecked(False)
            self.show_roi(obj.roi)
            if self.stack.current is not None and self.stack.roi_index == obj.roi:
                self._pending_select = None
                self.stack.select_box(obj.box_px)
        else:
            self.stack.select_box(obj.box_px)

    # -- physical signature -------------------------------------------------------------------
    def show_signature(self, row: float, col: float) -> None:
        cur = self.stack.current
        if cur is None:
            self.statusBar().showMessage("the signature needs all 6 states of this RoI; "
                                         "wait until it is captured", 5000)
            return
        if cur.stack is not None:
            sig = imaging.signature_at(cur.stack, row, col)
        else:
            sig = imaging.signature_from_preview(cur.preview.states_dn, cur.preview.factor,
                                                 row, col)
        self.stack.mark(sig.row, sig.col)
        i = cur.preview.roi
        where = f"RoI {i:02d} px (row {sig.row}, col {sig.col})"
        r = self.sample.rois.get(i) if self.sample else None
        if r is not None:
            x, y = r.to_sample_mm(sig.row + 1, sig.col + 1)
            where += f" = ({x:.2f}, {y:.2f}) mm"
        self.signature.show_signature(sig, where)

    # -- replay -------------------------------------------------------------------------------
    def _ask_recording(self) -> None:
        start = str(self.out_dir if self.out_dir.exists() else Path.cwd())
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open recording", start,
                                                        "Recordings (*.h5);;All files (*)")
        if path:
            self.open_recording(Path(path))

    def open_recording(self, path: Path) -> None:
        """Replay a recording (complete or not). Reading happens on the preview thread."""
        ls = self.live_sample
        if ls is not None and ls.scanning and ls.path \
                and Path(path).resolve() == ls.path.resolve():
            self.statusBar().showMessage("this sample is still being recorded", 5000)
            return
        self.statusBar().showMessage(f"opening {path}…")
        self.preview.summarize(Path(path))

    def _on_summary(self, summary: RecordingSummary | None, error: str | None) -> None:
        if summary is None:
            self._report_error(error or "cannot open the recording")
            return
        self.stack.follow.setChecked(False)  # a replay is looked at, not followed
        state = self.vm.show_replay(summary)
        self._display_sample(state)
        self.statusBar().showMessage(f"replaying {summary.path} ({summary.status})", 10000)
        self._update_controls()
        if summary.recorded:
            self.show_roi(summary.recorded[0])
        else:
            self.stack.begin_roi(0, next(iter(state.rois.values())).size_px
                                 if state.rois else (2, 2), "no RoI recorded")

    def back_to_live(self) -> None:
        """Leave replay: show the station's current (or last) sample again."""
        if self.sample.live:
            return
        state = self.vm.back_to_live()
        self._display_sample(state)
        if state.scanning:
            self.stack.follow.setChecked(True)
            self._on_follow(True)
        self._update_controls()

    # -- devices ------------------------------------------------------------------------------
    def _on_rig_built(self, rig: Rig, exc: BaseException | None) -> None:
        if exc is not None:
            self.rig_error = str(exc)
            self.status.set("rig", "not available")
            self.stack.follow.setChecked(False)
            self.stack.follow.setEnabled(False)
            self._report_error(exc)
        else:
            self.rig = rig
            self.calibration.rig = rig
            self.status.set("rig", type(rig).__name__ + " ready")
        self._update_controls()

    def _on_calibration_saved(self, cal: Any, path: Any) -> None:
        """A new calibration is on the rig (LED levels, id); give the detector its dark/flat."""
        self._update_controls()
        if self.detector is not None:
            try:
                from calibration.apply import attach_to_detector

                on = attach_to_detector(self.detector, cal, self.cfg.camera.exposure_us)
                self.status.set("detector", f"{self.detector.name} · "
                                            f"{'dark/flat corrected' if on else 'uncorrected'}")
            except Exception as exc:  # the calibration is saved either way
                self._report_error(exc)
        self.statusBar().showMessage(f"calibration saved: {path}", 15000)

    def _on_detector_loaded(self, det: Detector, exc: BaseException | None) -> None:
        self.detector_pending = False
        self._update_controls()
        if exc is not None:
            self.status.set("detector", "not loaded: verdicts will be NOT-INSPECTED")
            self._report_error(exc)
        else:
            self.detector = det
            self.vm.has_detector = True
            self.status.set("detector", det.name)

    def _rig_call(self, fn: Callable[..., Any], *args: Any,
                  done: Callable[[Any], None] | None = None) -> None:
        """Run a manual command on the device thread (never while a scan or a calibration
        owns the rig)."""
        if self.rig is None or self.scanning or self.calibration.running:
            return

        def finished(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self._report_error(exc)
            elif done is not None:
                done(result)
            self._poll_status()

        self.devices.submit(fn, self.rig, *args, on_done=finished)

    def _jog(self, dx: float, dy: float) -> None:
        self._rig_call(devices.jog, dx, dy)

    def _home(self) -> None:
        self._rig_call(devices.home)

    def _goto_roi(self, index: int) -> None:
        r = self.layout_rois.get(index)
        if r is not None:
            self._rig_call(devices.move_to, r.stage_xy_mm)

    def _light(self, state: int | None) -> None:
        self._rig_call(devices.light_state, state,
                       done=lambda _: self.status.set("lights", "off" if state is None
                                                      else f"state {state} on (manual)"))

    def _snapshot(self) -> None:
        state = self.manual.light.currentData()

        def show(frame: Frame) -> None:
            image, k = frame.image, frame.state
            shape = (int(image.shape[0]), int(image.shape[1]))
            self.stack.follow.setChecked(False)
            self._clear_selection()
            self.displayed = -1
            self.map.set_current(None)
            self.stack.begin_roi(-1, shape, f"snapshot · state {k} · "
                                            f"{time.strftime('%H:%M:%S')}")
            self.preview.submit_frame(-1, k, frame.frame_id, image)

        self._rig_call(devices.snapshot, self.cfg, state, done=show)

    def _poll_status(self) -> None:
        """Idle only: ask the devices for their status on the device thread."""
        if self.rig is None or self.scanning or self.devices.busy or self._closing \
                or self.calibration.running:
            return

        def show(st: dict[str, str] | None, exc: BaseException | None) -> None:
            if exc is not None or not st or self.scanning:
                return
            for key in ("stage", "lights", "camera"):
                if key in st:
                    self.status.set(key, st[key])

        self.devices.submit(devices.status, self.rig, on_done=show)

    # -- shutdown -----------------------------------------------------------------------------
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt name)
        if self._closing:  # closed twice before Qt deleted it (e.g. by a test harness)
            event.accept()
            return
        self._closing = True
        if self.remember_layout:
            self.save_layout()
        self._poll.stop()
        if self.calibration.running:
            self.calibration.cancel()
            self.calibration.join(30)
        if self.bridge.running:
            self.bridge.abort()
            self.bridge.join(30)
        self.devices.shutdown(wait=True)  # pending status polls are cancelled
        rig = self.rig
        if rig is not None and self._owns_rig:
            try:  # lights off, stage stopped, ports closed (emulators stopped on the sim bench)
                rig.close()
            except Exception as exc:  # closing must not stop the window from closing
                log.warning("closing the rig: %s", exc)
        self.preview.stop()
        self.bridge.taps.clear()  # the scan thread's reference back to this window
        super().closeEvent(event)
