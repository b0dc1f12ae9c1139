"""The glass seen from above: outline, RoIs coloured by state, detections at their positions.

Coordinates are sample millimetres (origin top-left of the glass, x across, y along, y down),
the same frame the detector reports positions in, so a dot lands where the defect is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from recordings import DetectedObject
from rig.layout import RoiGeometry

# RoI state -> (fill RGBA, edge RGB, legend text)
STATES: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int], str]] = {
    "pending": ((120, 125, 135, 25), (120, 125, 135), "pending"),
    "capturing": ((255, 200, 0, 110), (255, 210, 40), "capturing"),
    "captured": ((80, 140, 255, 70), (110, 160, 255), "detecting"),
    "recorded": ((150, 160, 180, 60), (170, 180, 200), "recorded, not inspected"),
    "clean": ((40, 190, 90, 80), (60, 210, 110), "clean"),
    "scratch": ((230, 40, 40, 120), (255, 70, 70), "scratch found"),
    "error": ((220, 0, 220, 120), (240, 60, 240), "error"),
}
SCRATCH_COLOR = (255, 60, 60)
CONTAMINANT_COLOR = (80, 200, 255)


def glass_path(width: float, length: float, radius: float) -> QtGui.QPainterPath:
    path = QtGui.QPainterPath()
    r = max(0.0, min(radius, width / 2, length / 2))
    path.addRoundedRect(QtCore.QRectF(0, 0, width, length), r, r)
    return path


class _Label(QtWidgets.QGraphicsSimpleTextItem):
    """RoI number, centred on a point, constant size on screen (cheaper than pg.TextItem)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.setBrush(QtGui.QBrush(QtGui.QColor("#e6e9ee")))
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        r = self.boundingRect()
        self.setTransform(QtGui.QTransform.fromTranslate(-r.width() / 2, -r.height() / 2))
        self.setZValue(9)


class SampleMap(QtWidgets.QWidget):
    """Map of the sample; clicking an RoI emits `roi_clicked`, a detection `object_clicked`.

    Everything drawn is a plain Qt item (no Python paint methods, no axes), so the frequent
    state changes during a scan repaint without calling back into Python.
    """

    roi_clicked = Signal(int)
    object_clicked = Signal(str, object)  # kind, DetectedObject
    DOT_MM = 0.9  # contaminant dot diameter
    CROSS_MM = 1.6  # scratch cross half-size

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.plot = pg.GraphicsView(background=(24, 26, 30))
        self.vb = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self.vb.setMouseEnabled(False, False)
        self.plot.setCentralItem(self.vb)
        self.outline = QtWidgets.QGraphicsPathItem()
        self.outline.setPen(pg.mkPen("#d8dde6", width=2))
        self.outline.setBrush(QtGui.QBrush(QtGui.QColor(60, 70, 85, 60)))
        self.vb.addItem(self.outline, ignoreBounds=True)
        self.rois: dict[int, RoiGeometry] = {}
        self.states: dict[int, str] = {}
        self._rects: dict[int, QtWidgets.QGraphicsRectItem] = {}
        self._labels: dict[int, _Label] = {}
        self.current: int | None = None
        self.scratch_marks = QtWidgets.QGraphicsPathItem()
        self.scratch_marks.setPen(pg.mkPen(SCRATCH_COLOR, width=2.5))
        self.cont_marks = QtWidgets.QGraphicsPathItem()
        self.cont_marks.setPen(QtGui.QPen(Qt.PenStyle.NoPen))
        self.cont_marks.setBrush(QtGui.QBrush(QtGui.QColor(*CONTAMINANT_COLOR, 190)))
        self.selected_dot = QtWidgets.QGraphicsEllipseItem(-10, -10, 20, 20)
        self.selected_dot.setPen(pg.mkPen("#ffe000", width=2))
        self.selected_dot.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag
                                  .ItemIgnoresTransformations)
        self.selected_dot.hide()
        for item, z in ((self.cont_marks, 10), (self.scratch_marks, 11), (self.selected_dot, 12)):
            item.setZValue(z)
            self.vb.addItem(item, ignoreBounds=True)
        self.plot.scene().sigMouseClicked.connect(self._on_click)

        legend = QtWidgets.QGridLayout()
        legend.setContentsMargins(4, 0, 4, 2)
        legend.setHorizontalSpacing(6)
        legend.setVerticalSpacing(2)
        for n, (fill, edge, text) in enumerate(STATES.values()):
            sw = QtWidgets.QLabel()
            sw.setFixedSize(12, 12)
            sw.setStyleSheet(f"background: rgba{fill[:3] + (0.8,)}; border: 1px solid rgb{edge};")
            lab = QtWidgets.QLabel(text)
            lab.setStyleSheet("color: #aab1bc; font-size: 10px;")
            r, c = divmod(n, 4)
            legend.addWidget(sw, r, 2 * c)
            legend.addWidget(lab, r, 2 * c + 1)
        legend.setColumnStretch(7, 1)
        self.caption = QtWidgets.QLabel("")
        self.caption.setStyleSheet("color: #aab1bc; font-size: 11px;")
        self.caption.setFixedHeight(18)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.plot, 1)
        leg_w = QtWidgets.QWidget()
        leg_w.setLayout(legend)
        lay.addWidget(leg_w)
        lay.addWidget(self.caption)
        self._objects: dict[str, list[DetectedObject]] = {"scratch": [], "contaminant": []}
        self._sample_mm = (0.0, 0.0, 0.0)

    # -- content --------------------------------------------------------------------------------
    def set_layout(self, rois: Iterable[RoiGeometry], sample_mm: tuple[float, float, float],
                   states: dict[int, str] | None = None) -> None:
        for item in [*self._rects.values(), *self._labels.values()]:
            self.vb.removeItem(item)
        self._rects.clear()
        self._labels.clear()
        self.rois = {r.index: r for r in rois}
        self._sample_mm = sample_mm
        w, length, radius = sample_mm
        self.outline.setPath(glass_path(w, length, radius))
        for r in self.rois.values():
            (r0, c0), (h, wpx), ps = r.origin_px, r.size_px, r.pixel_size_mm
            rect = QtWidgets.QGraphicsRectItem(QtCore.QRectF(c0 * ps, r0 * ps, wpx * ps, h * ps))
            rect.setZValue(1 + r.index * 0.01)
            self.vb.addItem(rect, ignoreBounds=True)
            self._rects[r.index] = rect
            label = _Label(f"{r.index:02d}")
            label.setPos(*r.center_mm)
            self.vb.addItem(label, ignoreBounds=True)
            self._labels[r.index] = label
        self.states = {i: "pending" for i in self.rois}
        if states:
            self.states.update(states)
        for i in self.rois:
            self._paint(i)
        self.set_objects([], [])
        margin = 3.0
        self.vb.setRange(QtCore.QRectF(-margin, -margin, w + 2 * margin, length + 2 * margin),
                         padding=0)

    def set_state(self, index: int, state: str) -> None:
        if index in self._rects and self.states.get(index) != state:
            self.states[index] = state
            self._paint(index)

    def set_current(self, index: int | None) -> None:
        old, self.current = self.current, index
        for i in (old, index):
            if i is not None and i in self._rects:
                self._paint(i)

    def _paint(self, index: int) -> None:
        fill, edge, _ = STATES[self.states.get(index, "pending")]
        rect = self._rects[index]
        pen = pg.mkPen("#ffffff", width=3) if index == self.current else pg.mkPen(edge, width=1.2)
        rect.setPen(pen)
        rect.setBrush(QtGui.QBrush(QtGui.QColor(*fill)))

    def set_objects(self, scratches: list[DetectedObject],
                    contaminants: list[DetectedObject]) -> None:
        self._objects = {"scratch": list(scratches), "contaminant": list(contaminants)}
        crosses, dots = QtGui.QPainterPath(), QtGui.QPainterPath()
        c, d = self.CROSS_MM, self.DOT_MM
        for o in scratches:
            crosses.moveTo(o.x_mm - c, o.y_mm - c)
            crosses.lineTo(o.x_mm + c, o.y_mm + c)
            crosses.moveTo(o.x_mm - c, o.y_mm + c)
            crosses.lineTo(o.x_mm + c, o.y_mm - c)
        for o in contaminants:
            dots.addEllipse(QtCore.QPointF(o.x_mm, o.y_mm), d / 2, d / 2)
        self.scratch_marks.setPath(crosses)
        self.cont_marks.setPath(dots)
        self.selected_dot.hide()
        w, length, _ = self._sample_mm
        self.caption.setText(f"✕ {len(scratches)} scratch(es)   ● {len(contaminants)} "
                             f"contaminant(s)   glass {w:g} × {length:g} mm")

    def add_objects(self, scratches: list[DetectedObject],
                    contaminants: list[DetectedObject]) -> None:
        self.set_objects(self._objects["scratch"] + list(scratches),
                         self._objects["contaminant"] + list(contaminants))

    @property
    def n_marks(self) -> tuple[int, int]:
        """(scratches, contaminants) drawn."""
        return len(self._objects["scratch"]), len(self._objects["contaminant"])

    def select_object(self, obj: DetectedObject | None) -> None:
        if obj is None:
            self.selected_dot.hide()
        else:
            self.selected_dot.setPos(obj.x_mm, obj.y_mm)
            self.selected_dot.show()

    # -- clicks ---------------------------------------------------------------------------------
    def roi_at(self, x_mm: float, y_mm: float) -> int | None:
        """The RoI under a point; in an overlap, the one whose centre is closest."""
        best, best_d = None, float("inf")
        for i, r in self.rois.items():
            (r0, c0), (h, w), ps = r.origin_px, r.size_px, r.pixel_size_mm
            if c0 * ps <= x_mm <= (c0 + w) * ps and r0 * ps <= y_mm <= (r0 + h) * ps:
                cx, cy = r.center_mm
                d = (cx - x_mm) ** 2 + (cy - y_mm) ** 2
                if d < best_d:
                    best, best_d = i, d
        return best

    def object_at(self, x_mm: float, y_mm: float, tol_px: float = 8.0
                  ) -> tuple[str, DetectedObject] | None:
        """The detection drawn nearest a point, within `tol_px` screen pixels (scratches first)."""
        px = self.vb.viewPixelSize()[0] or 1.0
        tol = tol_px * px
        for kind in ("scratch", "contaminant"):
            best = min(self._objects[kind], default=None,
                       key=lambda o: (o.x_mm - x_mm) ** 2 + (o.y_mm - y_mm) ** 2)
            if best is not None and (best.x_mm - x_mm) ** 2 + (best.y_mm - y_mm) ** 2 <= tol ** 2:
                return kind, best
        return None

    def _on_click(self, ev: Any) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if not self.vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = self.vb.mapSceneToView(ev.scenePos())
        hit = self.object_at(p.x(), p.y())
        if hit is not None:
            self.object_clicked.emit(*hit)
            return
        index = self.roi_at(p.x(), p.y())
        if index is not None:
            self.roi_clicked.emit(index)

    def viewport_pos_of(self, x_mm: float, y_mm: float) -> QtCore.QPoint:
        """Widget position of a sample point (for tests and automation)."""
        scene = self.vb.mapViewToScene(QtCore.QPointF(x_mm, y_mm))
        return self.plot.mapFromScene(scene)
