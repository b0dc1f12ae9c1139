"""The smaller panels: verdict and shift history, detections table, run controls, manual
device panel and device status. They hold no logic beyond display; the window wires them."""

from __future__ import annotations

import time

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from gui import imaging
from gui.view_model import HistoryEntry
from recordings import DetectedObject

VERDICT_COLORS = {
    "PASS": ("#0f7b3a", "#ffffff"),
    "FAIL": ("#b3141b", "#ffffff"),
    "ABORTED": ("#8a6100", "#ffffff"),
    "INCOMPLETE": ("#8a6100", "#ffffff"),
    "NOT-INSPECTED": ("#3b4a63", "#ffffff"),
    "ERROR": ("#8a1f8a", "#ffffff"),
    "SCANNING": ("#1f4f8a", "#ffffff"),
    "PAUSED": ("#5b4a9e", "#ffffff"),
    "ABORTING": ("#8a6100", "#ffffff"),
    "READY": ("#2a2e35", "#cfd3da"),
    "REPLAY": ("#2a2e35", "#cfd3da"),
}
HISTORY_ROWS = 500


class ElidedLabel(QtWidgets.QLabel):
    """One line that ends in "…" when the panel is narrower than its text (the whole text in
    the tooltip), so a long caption neither widens its panel nor is cut mid-word."""

    def __init__(self, text: str = "", parent: QtWidgets.QWidget | None = None):
        super().__init__(text, parent)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                           QtWidgets.QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        super().setText(text)
        self.setToolTip(text)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 (Qt name)
        painter = QtGui.QPainter(self)
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                             rect.width())
        painter.setPen(self.palette().color(QtGui.QPalette.ColorRole.WindowText))
        painter.drawText(rect, int(self.alignment() | Qt.AlignmentFlag.AlignVCenter), text)

    @property
    def shown_text(self) -> str:
        """What is painted now (for tests)."""
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                             self.contentsRect().width())


# -- verdict -----------------------------------------------------------------------------------
class VerdictPanel(QtWidgets.QWidget):
    """Large PASS / FAIL, what it was about, and the shift so far."""

    history_activated = Signal(str)  # recording path

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.verdict = QtWidgets.QLabel("READY")
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict.setMinimumHeight(74)
        self.sample = QtWidgets.QLabel("")
        self.sample.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.counts = QtWidgets.QLabel("")
        self.counts.setStyleSheet("font-size: 13px;")
        self.counts.setWordWrap(True)
        self.shift = QtWidgets.QLabel("shift: no samples yet")
        self.shift.setStyleSheet("color: #aab1bc;")
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.verdict)
        lay.addWidget(self.sample)
        lay.addWidget(self.counts)
        lay.addWidget(self.shift)
        self.entries: list[HistoryEntry] = []
        self.table = QtWidgets.QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["time", "sample", "verdict", "scratches",
                                              "contam.", "cycle s"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.cellDoubleClicked.connect(self._activated)
        self.table.setToolTip("double-click to open the recording")
        self.set_state("READY")

    def set_state(self, verdict: str, sample_id: str = "", counts: str = "") -> None:
        bg, fg = VERDICT_COLORS.get(verdict, VERDICT_COLORS["ERROR"])
        self.verdict.setText(verdict)
        self.verdict.setStyleSheet(
            f"background: {bg}; color: {fg}; font-size: 40px; font-weight: 800; "
            "border-radius: 8px; letter-spacing: 3px;")
        self.sample.setText(sample_id)
        self.counts.setText(counts)

    @property
    def text(self) -> str:
        return self.verdict.text()

    def add_history(self, entry: HistoryEntry, shift: str) -> None:
        """A new row on top; `shift` is the view model's summary of the shift so far."""
        self.entries.append(entry)
        self.table.insertRow(0)
        vals = [entry.time, entry.sample_id, entry.verdict, str(entry.scratches),
                str(entry.contaminants), f"{entry.cycle_s:.1f}"]
        for col, v in enumerate(vals):
            item = QtWidgets.QTableWidgetItem(v)
            if col == 2:
                bg, fg = VERDICT_COLORS.get(entry.verdict, VERDICT_COLORS["ERROR"])
                item.setBackground(QtGui.QColor(bg))
                item.setForeground(QtGui.QColor(fg))
            item.setData(Qt.ItemDataRole.UserRole, entry.path)
            self.table.setItem(0, col, item)
        while self.table.rowCount() > HISTORY_ROWS:
            self.table.removeRow(self.table.rowCount() - 1)
        self.shift.setText(shift)

    def _activated(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is not None and item.data(Qt.ItemDataRole.UserRole):
            self.history_activated.emit(item.data(Qt.ItemDataRole.UserRole))


# -- detections table --------------------------------------------------------------------------
SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # numbers sort as numbers
INDEX_ROLE = Qt.ItemDataRole.UserRole  # row -> position in DetectionsTable.objects
CLASS_ROLE = Qt.ItemDataRole.UserRole + 2  # "scratch", "contaminant" or "speck" (filter)
DEFAULT_SPECK_MM = 0.1  # contaminants shorter than this (hot pixels, tiny dust) not listed
TABLE_COLUMNS = ["kind", "RoI", "x mm", "y mm", "length mm", "score", "type"]


_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def _cell(text: str, sort: object, align_right: bool = False) -> QtGui.QStandardItem:
    item = QtGui.QStandardItem(text)
    item.setData(sort, SORT_ROLE)
    item.setEditable(False)
    if align_right:
        item.setTextAlignment(_RIGHT)
    return item


class DetectionsTable(QtWidgets.QWidget):
    """Scratches and contaminants of the sample; a click selects and zooms on the object.

    The model is a QStandardItemModel filled in one go: sorting, filtering and painting then
    run in C++ without calling back into Python (a Python model is asked rowCount() thousands of
    times per repaint, each call waiting for the GIL while the scan's threads run).
    """

    object_selected = Signal(str, object)  # kind, DetectedObject
    MAX_ROWS = 2000

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model = QtGui.QStandardItemModel(0, len(TABLE_COLUMNS), self)
        self.model.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.proxy = QtCore.QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(0)
        self.proxy.setFilterRole(CLASS_ROLE)  # filtered by a regex in C++, no Python callback
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # detector order until clicked
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        for col, width in enumerate((90, 44, 70, 70, 84, 60)):
            header.resizeSection(col, width)
        header.setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(self._on_select)
        self.caption = ElidedLabel("Detections")
        self.caption.setStyleSheet("font-weight: bold;")
        self.show_cont = QtWidgets.QCheckBox("contaminants")
        self.show_cont.setChecked(True)
        self.show_cont.toggled.connect(self._filter)
        self.show_specks = QtWidgets.QCheckBox("specks under")
        self.show_specks.setToolTip("list contaminants shorter than this too (hot pixels, "
                                    "tiny dust): counted either way")
        self.show_specks.toggled.connect(self._filter)
        self.speck_mm = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.0, maximum=5.0,
                                                 singleStep=0.05, suffix=" mm")
        self.speck_mm.setValue(DEFAULT_SPECK_MM)
        self.speck_mm.valueChanged.connect(self._refill)
        filters = QtWidgets.QHBoxLayout()
        filters.addStretch(1)
        for w in (self.show_cont, self.show_specks, self.speck_mm):
            filters.addWidget(w)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(2)
        lay.addWidget(self.caption)
        lay.addLayout(filters)
        lay.addWidget(self.table, 1)
        self.objects: list[tuple[str, DetectedObject]] = []
        self._lists: tuple[list[DetectedObject], list[DetectedObject], str] = ([], [], "")
        self.specks = 0
        self._counts = "Detections"
        self._quiet = False
        self._red, self._blue = QtGui.QBrush(QtGui.QColor("#ff6b6b")), \
            QtGui.QBrush(QtGui.QColor("#63c7ff"))

    def set_objects(self, scratches: list[DetectedObject],
                    contaminants: list[DetectedObject], note: str = "") -> None:
        self._lists = (list(scratches), list(contaminants), note)
        self.objects = [("scratch", o) for o in scratches] + \
                       [("contaminant", o) for o in contaminants]
        speck = self.speck_mm.value()
        rows = self.objects[: self.MAX_ROWS]
        self._quiet = True
        self.table.setUpdatesEnabled(False)
        self.model.removeRows(0, self.model.rowCount())
        for i, (kind, o) in enumerate(rows):
            first = _cell(kind, kind)
            first.setData(i, INDEX_ROLE)
            first.setData("speck" if kind == "contaminant" and o.length_mm < speck else kind,
                          CLASS_ROLE)
            first.setForeground(self._red if kind == "scratch" else self._blue)
            typ = o.type or "-"
            if o.type and o.type_score == o.type_score:  # not NaN
                typ += f" ({o.type_score:.2f})"
            self.model.appendRow([
                first, _cell(f"{o.roi:02d}", o.roi, True), _cell(f"{o.x_mm:.2f}", o.x_mm, True),
                _cell(f"{o.y_mm:.2f}", o.y_mm, True),
                _cell(f"{o.length_mm:.2f}", o.length_mm, True),
                _cell(f"{o.score:.2f}", o.score, True), _cell(typ, typ)])
        self.table.setUpdatesEnabled(True)
        self._quiet = False
        shown = "" if len(rows) == len(self.objects) else f" (first {len(rows)} listed)"
        self.specks = sum(o.length_mm < speck for o in contaminants)
        note = f" · {note}" if note else ""
        self._counts = (f"Detections: {len(scratches)} scratch(es), {len(contaminants)} "
                        f"contaminant(s){shown}{note}")
        self._filter()

    def _refill(self, *_: object) -> None:
        self.set_objects(*self._lists)

    def _filter(self, *_: object) -> None:
        """Scratches always; contaminants unless unticked; specks only when asked for."""
        if not self.show_cont.isChecked():
            pattern = "^scratch$"
        else:
            pattern = "" if self.show_specks.isChecked() else "^(scratch|contaminant)$"
        self.proxy.setFilterRegularExpression(pattern)
        hidden = 0 if self.show_specks.isChecked() or not self.show_cont.isChecked() \
            else self.specks
        self.caption.setText(self._counts + (f" · {hidden} speck(s) not listed" if hidden
                                             else ""))

    # rows as the operator sees them (sorted, filtered)
    def row_count(self) -> int:
        return self.proxy.rowCount()

    def object_at(self, row: int) -> tuple[str, DetectedObject]:
        return self.objects[int(self.proxy.index(row, 0).data(INDEX_ROLE))]

    def visual_rect(self, row: int, col: int = 1) -> QtCore.QRect:
        return self.table.visualRect(self.proxy.index(row, col))

    def row_of(self, obj: DetectedObject) -> int | None:
        for i, (_, o) in enumerate(self.objects[: self.MAX_ROWS]):
            if o is obj:
                view = self.proxy.mapFromSource(self.model.index(i, 0))
                return view.row() if view.isValid() else None
        return None

    def _on_select(self, *_: object) -> None:
        if self._quiet:
            return
        rows = self.table.selectionModel().selectedRows()
        if rows:
            kind, obj = self.object_at(rows[0].row())
            self.object_selected.emit(kind, obj)

    def clear_selection(self) -> None:
        self._quiet = True
        self.table.clearSelection()
        self._quiet = False

    def select(self, obj: DetectedObject) -> None:
        """Select (and scroll to) an object without emitting `object_selected`."""
        row = self.row_of(obj)
        if row is not None:
            self._quiet = True
            self.table.selectRow(row)
            self._quiet = False
            self.table.scrollTo(self.proxy.index(row, 0))


# -- run controls ------------------------------------------------------------------------------
class ControlPanel(QtWidgets.QWidget):
    """Start / pause / resume / abort, sample id, station profile, progress."""

    start_requested = Signal(str)  # sample id ("" = automatic)
    pause_requested = Signal(bool)  # True = pause, False = resume
    abort_requested = Signal()

    def __init__(self, profile: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.start_btn = QtWidgets.QPushButton("▶  Start")
        self.start_btn.setToolTip("inspect the sample on the stage (F5)")
        self.start_btn.setShortcut(QtGui.QKeySequence("F5"))
        self.pause_btn = QtWidgets.QPushButton("❚❚  Pause")
        self.pause_btn.setCheckable(True)
        self.pause_btn.setToolTip("pause at the next safe point / resume")
        self.abort_btn = QtWidgets.QPushButton("■  Abort")
        self.abort_btn.setToolTip("stop now; lights off, stage stopped; the recording keeps "
                                  "what was captured")
        for b, color in ((self.start_btn, "#1d7a3e"), (self.pause_btn, "#6a5a12"),
                         (self.abort_btn, "#9b1c22")):
            b.setMinimumHeight(34)
            b.setStyleSheet(f"QPushButton {{ font-weight: bold; font-size: 14px; padding: 0 14px;"
                            f" background: {color}; color: white; border-radius: 4px; }}"
                            "QPushButton:disabled { background: #3a3f47; color: #7d848f; }"
                            "QPushButton:checked { background: #b08c14; }")
        self.sample_id = QtWidgets.QLineEdit()
        self.sample_id.setPlaceholderText("sample id (scan the barcode)")
        self.sample_id.setMinimumWidth(170)
        self.auto_id = QtWidgets.QCheckBox("auto id")
        self.auto_id.setToolTip("number samples automatically (date-time)")
        self.auto_id.toggled.connect(lambda on: self.sample_id.setEnabled(not on))
        self.auto_id.setChecked(True)
        self.profile = QtWidgets.QLabel(profile)
        self.profile.setStyleSheet("color: #aab1bc;")
        self.profile.setToolTip(profile)
        self.profile.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.profile.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                   QtWidgets.QSizePolicy.Policy.Preferred)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMinimumWidth(160)
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        self.start_btn.clicked.connect(self._start)
        self.sample_id.returnPressed.connect(self._start)
        self.pause_btn.toggled.connect(self._pause)
        self.abort_btn.clicked.connect(self.abort_requested)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        for w in (self.start_btn, self.pause_btn, self.abort_btn):
            lay.addWidget(w)
        lay.addSpacing(14)
        lay.addWidget(QtWidgets.QLabel("Sample:"))
        lay.addWidget(self.sample_id)
        lay.addWidget(self.auto_id)
        lay.addSpacing(14)
        lay.addWidget(self.progress)
        lay.addWidget(self.profile, 1)
        self.set_running(False)

    def _start(self) -> None:
        if self.start_btn.isEnabled():
            self.start_requested.emit("" if self.auto_id.isChecked()
                                      else self.sample_id.text().strip())

    def _pause(self, on: bool) -> None:
        self.pause_btn.setText("▶  Resume" if on else "❚❚  Pause")
        self.pause_requested.emit(on)

    def set_running(self, running: bool, can_start: bool = True, stopping: bool = False) -> None:
        """`stopping`: an abort was asked for; nothing can be paused or aborted any more."""
        self.start_btn.setEnabled(not running and can_start)
        self.pause_btn.setEnabled(running and not stopping)
        self.abort_btn.setEnabled(running and not stopping)
        if not running:
            self.pause_btn.blockSignals(True)
            self.pause_btn.setChecked(False)
            self.pause_btn.setText("❚❚  Pause")
            self.pause_btn.blockSignals(False)

    def set_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(text)


# -- manual device panel and status ------------------------------------------------------------
HOLD_START_MS = 350
"""A jog button held this long starts a continuous jog; a shorter press is one step."""


class ManualPanel(QtWidgets.QGroupBox):
    """Jog the stage, light any state, take a snapshot. Disabled while a scan runs."""

    jog_requested = Signal(float, float)  # dx, dy mm: one step
    jog_hold_started = Signal(int, int)  # direction (each -1, 0, 1): jog until released
    jog_hold_released = Signal()
    goto_roi_requested = Signal(int)
    light_requested = Signal(object)  # state index or None (off)
    snapshot_requested = Signal()
    home_requested = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__("Manual", parent)
        self.step = QtWidgets.QComboBox()
        for s in ("0.1", "1", "5", "10", "40"):
            self.step.addItem(f"{s} mm", float(s))
        self.step.setCurrentIndex(2)
        grid = QtWidgets.QGridLayout()
        self.jog_buttons: dict[str, QtWidgets.QToolButton] = {}
        for name, (r, c, dx, dy) in {"y-": (0, 1, 0, -1), "x-": (1, 0, -1, 0),
                                     "x+": (1, 2, 1, 0), "y+": (2, 1, 0, 1)}.items():
            b = QtWidgets.QToolButton(text={"y-": "▲ y-", "x-": "◀ x-", "x+": "x+ ▶",
                                            "y+": "▼ y+"}[name])
            b.setMinimumWidth(52)
            b.setToolTip("click: one step; press and hold: jog until released")
            b.pressed.connect(lambda dx=dx, dy=dy: self._pressed(dx, dy))
            b.released.connect(self._released)
            grid.addWidget(b, r, c)
            self.jog_buttons[name] = b
        grid.addWidget(self.step, 1, 1)
        self._held: tuple[int, int] | None = None  # the direction pressed, until released
        self._holding = False  # held long enough: a continuous jog runs
        self._hold_timer = QtCore.QTimer(self, singleShot=True, interval=HOLD_START_MS)
        self._hold_timer.timeout.connect(self._start_hold)
        self.home = QtWidgets.QPushButton("home")
        self.home.clicked.connect(self.home_requested)
        self.roi = QtWidgets.QSpinBox()
        self.roi.setRange(0, 99)
        self.goto = QtWidgets.QPushButton("go to RoI")
        self.goto.clicked.connect(lambda: self.goto_roi_requested.emit(self.roi.value()))
        self.light = QtWidgets.QComboBox()
        self.light.addItem("lights off", None)
        for k in range(6):
            a = imaging.AZIMUTH_STEP_DEG * k
            self.light.addItem(f"state {k} ({a:.0f}°/{a + 180:.0f}°)", k)
        self.light.activated.connect(lambda _: self.light_requested.emit(self.light.currentData()))
        self.snapshot = QtWidgets.QPushButton("snapshot")
        self.snapshot.setToolTip("one frame with the selected light, shown in its state tile")
        self.snapshot.clicked.connect(self.snapshot_requested)
        form = QtWidgets.QGridLayout(self)
        form.addLayout(grid, 0, 0, 3, 1)
        form.addWidget(self.home, 0, 1)
        roi_row = QtWidgets.QHBoxLayout()
        roi_row.addWidget(self.roi)
        roi_row.addWidget(self.goto)
        form.addLayout(roi_row, 1, 1)
        form.addWidget(self.light, 2, 1)
        form.addWidget(self.snapshot, 3, 1)

    def _pressed(self, dx: int, dy: int) -> None:
        self._held, self._holding = (dx, dy), False
        self._hold_timer.start()

    def _start_hold(self) -> None:
        if self._held is not None:
            self._holding = True
            self.jog_hold_started.emit(*self._held)

    def _released(self) -> None:
        self._hold_timer.stop()
        if self._held is None:
            return
        (dx, dy), self._held = self._held, None
        if self._holding:
            self._holding = False
            self.jog_hold_released.emit()
        else:
            step = float(self.step.currentData())
            self.jog_requested.emit(dx * step, dy * step)


class DeviceStatus(QtWidgets.QGroupBox):
    """Stage position, lights, camera, frame rate and the last fault in plain words."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__("Devices", parent)
        self.fields: dict[str, QtWidgets.QLabel] = {}
        form = QtWidgets.QFormLayout(self)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        for key in ("rig", "stage", "lights", "camera", "frame rate", "detector", "recording"):
            lab = QtWidgets.QLabel("-")
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
            self.fields[key] = lab
            form.addRow(f"{key}:", lab)
        self._frames: list[float] = []
        self._fps = 0.0

    def set(self, key: str, text: str) -> None:
        self.fields[key].setText(text)

    def frame(self, frame_id: int, state: int, t: float | None = None) -> None:
        now = time.monotonic() if t is None else t
        self._frames = [x for x in self._frames if now - x < 2.0] + [now]
        if len(self._frames) > 2:  # between RoIs (a move) the last rate stands, never "0.0"
            self._fps = (len(self._frames) - 1) / (self._frames[-1] - self._frames[0])
        rate = f"{self._fps:.1f} frames/s" if self._fps else "measuring"
        self.set("frame rate", f"{rate} (last id {frame_id}, state {state})")


def focus_policy_none(*widgets: QtWidgets.QWidget) -> None:
    for w in widgets:
        w.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)


class ErrorPanel(QtWidgets.QFrame):
    """The last fault across the whole window: headline, the driver's detail and what to do,
    each wrapped in full (never clipped by a narrow panel), until dismissed or the next
    start. The log keeps the same text."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setStyleSheet("ErrorPanel { background: #4a1420; border-radius: 4px; } "
                           "QLabel { color: #ffd7dc; }")
        self.headline = QtWidgets.QLabel("")
        self.headline.setStyleSheet("font-weight: bold; font-size: 14px;")
        self.detail = QtWidgets.QLabel("")
        self.action = QtWidgets.QLabel("")
        self.action.setStyleSheet("font-weight: bold; color: #fff1a8;")
        text = QtWidgets.QVBoxLayout()
        text.setSpacing(2)
        for label in (self.headline, self.detail, self.action):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                QtWidgets.QSizePolicy.Policy.Minimum)
            text.addWidget(label)
        self.dismiss = QtWidgets.QPushButton("dismiss")
        self.dismiss.clicked.connect(self.clear)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addLayout(text, 1)
        lay.addWidget(self.dismiss, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 (Qt name)
        """Three lines: the layout gives it the height its text needs at the window's width
        (height for width), so a long message never makes the window taller than the screen."""
        return QtCore.QSize(200, 3 * self.fontMetrics().lineSpacing() + 16)

    def show_error(self, headline: str, detail: str, action: str) -> None:
        self.headline.setText(headline)
        self.detail.setText(detail)
        self.action.setText(f"What to do: {action}")
        self.show()

    def clear(self) -> None:
        self.hide()
        for label in (self.headline, self.detail, self.action):
            label.setText("")

    def text(self) -> str:
        """All of it, as shown ("" when there is none)."""
        return "\n".join(t for t in (self.headline.text(), self.detail.text(),
                                      self.action.text()) if t)
