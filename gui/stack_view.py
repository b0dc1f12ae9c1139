"""The 6 illumination states of one RoI as tiles with linked zoom/pan, plus max and modulation.

View coordinates of every tile are raw RoI pixels (x = column, y = row, y down), whatever the
display downsampling, so boxes, heat maps, clicks and the signature all share one frame.

Redraws are capped: new tiles are parked in `_pending` and painted by a timer at most
`max_fps` times a second, so a burst of frames costs one repaint, not one per frame. When the
operator zooms in far enough that the preview is magnified, a full-detail crop of the visible
region is prepared by the preview worker and laid over the preview.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from gui import imaging
from gui.panels import ElidedLabel
from gui.workers import LoadedRoi, PreviewWorker
from recordings import DetectedObject

TILE_KEYS = ("0", "1", "2", "3", "4", "5", "max", "modulation")
DEFAULT_MAX_FPS = 8.0  # live redraws per second; acquisition runs at ~12 frames/s
DETAIL_MAX_PX = 2400  # largest raw region (per side) rendered at full detail
SCRATCH_PEN = QtGui.QColor(255, 60, 60)
CONTAMINANT_PEN = QtGui.QColor(80, 200, 255)
SELECTED_PEN = QtGui.QColor(255, 255, 0)
MAX_CONTAMINANT_BOXES = 500
STALE_OPACITY = 0.3  # tiles of the previous RoI while the next one is being captured


def tile_title(key: str) -> str:
    if key.isdigit():
        k = int(key)
        a = imaging.AZIMUTH_STEP_DEG * k
        return f"state {k} · {a:.0f}°/{a + 180:.0f}°"
    return {"max": "max of states", "modulation": "modulation (hue = direction)"}[key]


def _cosmetic_pen(color: QtGui.QColor, width: float = 1.5,
                  style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QtGui.QPen:
    pen = QtGui.QPen(color, width, style)
    pen.setCosmetic(True)
    return pen


class _Tile:
    """One view box: preview image, detail crop, heat map, boxes, click marker."""

    def __init__(self, key: str):
        self.key = key
        # One scene per tile: a tile update repaints (and culls) only its own few items, which
        # keeps the number of Python calls per repaint, each needing the GIL, small.
        self.view = pg.GraphicsView(background=(10, 10, 12))
        self.vb = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self.view.setCentralItem(self.vb)
        self.label = QtWidgets.QLabel(tile_title(key))
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setStyleSheet("color: #cfd3da; font-size: 11px;")
        self.widget = QtWidgets.QWidget()
        box = QtWidgets.QVBoxLayout(self.widget)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(1)
        box.addWidget(self.label)
        box.addWidget(self.view, 1)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.detail = pg.ImageItem(axisOrder="row-major")
        self.detail.setZValue(1)
        self.detail.hide()
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setZValue(2)
        self.heat.hide()
        self.scratch_boxes = QtWidgets.QGraphicsPathItem()
        self.scratch_boxes.setPen(_cosmetic_pen(SCRATCH_PEN))
        self.scratch_boxes.setZValue(3)
        self.cont_boxes = QtWidgets.QGraphicsPathItem()
        self.cont_boxes.setPen(_cosmetic_pen(CONTAMINANT_PEN, 1.0, Qt.PenStyle.DashLine))
        self.cont_boxes.setZValue(3)
        self.selected = QtWidgets.QGraphicsRectItem()
        self.selected.setPen(_cosmetic_pen(SELECTED_PEN, 2.5))
        self.selected.setZValue(4)
        self.selected.hide()
        self.marker = QtWidgets.QGraphicsEllipseItem(-8, -8, 16, 16)  # C++ item: no Python paint
        self.marker.setPen(_cosmetic_pen(QtGui.QColor("#ffe000"), 2))
        self.marker.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.marker.setZValue(5)
        self.marker.hide()
        for item in (self.image, self.detail, self.heat, self.scratch_boxes, self.cont_boxes,
                     self.selected, self.marker):
            self.vb.addItem(item, ignoreBounds=True)
        self.vb.disableAutoRange()  # ranges are set explicitly (fit, zoom): no bounds bookkeeping
        self._placed: tuple = ()

    def set_image(self, arr: np.ndarray, rect: QtCore.QRectF) -> None:
        self.image.setImage(arr, autoLevels=False, levels=(0, 255))
        placed = (rect.x(), rect.y(), rect.width(), rect.height(), arr.shape[:2])
        if placed != self._placed:  # a new transform costs a geometry update of the view
            self.image.setRect(rect)
            self._placed = placed
        self.image.setOpacity(1.0)


class StackView(QtWidgets.QWidget):
    """Tiles of the displayed RoI. The window feeds it; it emits what the operator does."""

    pixel_clicked = Signal(float, float)  # raw RoI (row, col)
    roi_step = Signal(int)  # -1 / +1: previous / next RoI
    follow_changed = Signal(bool)
    levels_changed = Signal(str)

    def __init__(self, worker: PreviewWorker, max_fps: float = DEFAULT_MAX_FPS,
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.worker = worker
        self.current: LoadedRoi | None = None  # what the tiles show (None while live-filling)
        self.roi_index: int | None = None
        self.shape: tuple[int, int] | None = None
        self.factor = 2
        self._pending: dict[str, tuple[np.ndarray, QtCore.QRectF]] = {}
        self._detail_req = 0
        self._detail_box: tuple[int, int, int, int] | None = None
        self._objects: list[tuple[str, DetectedObject]] = []
        self._heat: tuple[np.ndarray, float] | None = None
        self.redraws = 0

        # header: RoI navigation and display options
        self.title = ElidedLabel("no RoI")
        self.title.setStyleSheet("font-weight: bold; font-size: 13px;")
        self.title.setMinimumWidth(160)
        self.prev_btn = QtWidgets.QToolButton(text="◀")
        self.next_btn = QtWidgets.QToolButton(text="▶")
        self.prev_btn.setToolTip("previous RoI")
        self.next_btn.setToolTip("next RoI")
        self.prev_btn.clicked.connect(lambda: self.roi_step.emit(-1))
        self.next_btn.clicked.connect(lambda: self.roi_step.emit(+1))
        self.follow = QtWidgets.QCheckBox("follow live")
        self.follow.setChecked(True)
        self.follow.setToolTip("show each RoI as it is captured")
        self.follow.toggled.connect(self.follow_changed)
        self.levels = QtWidgets.QComboBox()
        self.levels.addItems(list(imaging.LEVEL_PRESETS))
        self.levels.setToolTip("fixed display levels (never automatic)")
        self.levels.currentTextChanged.connect(self._on_levels)
        self.show_boxes = QtWidgets.QCheckBox("boxes")
        self.show_boxes.setChecked(True)
        self.show_boxes.toggled.connect(self._apply_overlay_visibility)
        self.show_heat = QtWidgets.QCheckBox("heat map")
        self.show_heat.toggled.connect(self._apply_overlay_visibility)
        self.layout_combo = QtWidgets.QComboBox()
        self.layout_combo.addItem("all tiles", None)
        for key in TILE_KEYS:
            self.layout_combo.addItem(tile_title(key), key)
        self.layout_combo.setToolTip("show all tiles or one large")
        self.layout_combo.currentIndexChanged.connect(
            lambda _: self.set_single(self.layout_combo.currentData()))
        for combo, chars in ((self.levels, 12), (self.layout_combo, 9)):
            combo.setSizeAdjustPolicy(
                QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(chars)
        fit = QtWidgets.QToolButton(text="fit")
        fit.setToolTip("zoom to the whole RoI")
        fit.clicked.connect(self.fit)
        self.info = QtWidgets.QLabel("")
        self.info.setStyleSheet("color: #8a93a0;")

        head = QtWidgets.QHBoxLayout()
        head.setContentsMargins(4, 2, 4, 2)
        head.addWidget(self.prev_btn)
        head.addWidget(self.title, 1)
        head.addWidget(self.next_btn)
        head.addSpacing(12)
        head.addWidget(self.follow)
        head.addWidget(self.info)
        head.addSpacing(8)
        for w in (self.show_boxes, self.show_heat, QtWidgets.QLabel("levels"), self.levels,
                  self.layout_combo, fit):
            head.addWidget(w)

        self.graphics = QtWidgets.QWidget()
        self.graphics.setStyleSheet("background: #181a1e;")
        self.grid = QtWidgets.QGridLayout(self.graphics)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.grid.setSpacing(3)
        self.tiles = {k: _Tile(k) for k in TILE_KEYS}
        for tile in self.tiles.values():
            tile.view.scene().sigMouseClicked.connect(
                lambda ev, t=tile: self._on_click(t, ev))
        self._single: str | None = None
        self._lead_key = ""
        self._arrange()

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(head)
        lay.addWidget(self.graphics, 1)

        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(max(int(1000 / max_fps), 1))
        self._timer.timeout.connect(self._flush)
        self._timer.start()
        self._detail_timer = QtCore.QTimer(self)
        self._detail_timer.setSingleShot(True)
        self._detail_timer.setInterval(200)
        self._detail_timer.timeout.connect(self._request_detail)
        worker.detail_ready.connect(self._on_detail, Qt.ConnectionType.QueuedConnection)

    # -- layout ---------------------------------------------------------------------------------
    def _arrange(self) -> None:
        for tile in self.tiles.values():
            self.grid.removeWidget(tile.widget)
            tile.widget.hide()
        keys = [self._single] if self._single else list(TILE_KEYS)
        cols = 1 if self._single else 4
        for i, key in enumerate(keys):
            r, c = divmod(i, cols)
            self.grid.addWidget(self.tiles[key].widget, r, c)
            self.tiles[key].widget.show()
        for i in range(4):
            self.grid.setColumnStretch(i, 1 if i < cols else 0)
        for i in range(2):
            self.grid.setRowStretch(i, 1 if i < (1 if self._single else 2) else 0)
        self._relink(self._single or "0")

    def _relink(self, key: str) -> None:
        """Every view follows the one on screen (the single tile, else state 0): pyqtgraph
        links views by their screen geometry, so following a hidden tile would squeeze the
        image into that tile's old size."""
        if key == self._lead_key:
            return
        if self._lead_key:
            self.lead.sigRangeChanged.disconnect(self._on_range)
        rect = self.lead.viewRect() if self._lead_key else None
        self._lead_key = key
        for tile in self.tiles.values():
            link = None if tile.vb is self.lead else self.lead
            tile.vb.setXLink(link)
            tile.vb.setYLink(link)
        self.lead.sigRangeChanged.connect(self._on_range)
        if rect is not None and self.shape is not None:
            self.lead.setRange(rect, padding=0.0)

    @property
    def lead(self) -> pg.ViewBox:
        """The view box the others follow (zoom, pan, fit act on it)."""
        return self.tiles[self._lead_key].vb

    def set_single(self, key: str | None) -> None:
        self._single = key
        self._arrange()
        QtCore.QTimer.singleShot(0, self.fit)  # once the tile has its new size

    def fit(self) -> None:
        if self.shape is not None:
            h, w = self.shape
            self.lead.setRange(QtCore.QRectF(0, 0, w, h), padding=0.0)

    # -- content --------------------------------------------------------------------------------
    def begin_roi(self, roi: int, shape: tuple[int, int], label: str,
                  keep: bool = False) -> None:
        """A new RoI is about to be shown tile by tile (live capture).

        With `keep`, the previous RoI's tiles stay, dimmed, until each state's new frame
        replaces them, so the view never goes black while the stage moves.
        """
        keep = keep and shape == self.shape
        self._set_roi(roi, shape, label)
        self.current = None
        self._pending.clear()
        for tile in self.tiles.values():
            if keep:
                tile.image.setOpacity(STALE_OPACITY)
            else:
                tile.image.clear()
                tile.image.setOpacity(1.0)
            tile.marker.hide()
        self.set_overlays([], None)

    def show_frame(self, roi: int, state: int, tile: np.ndarray, factor: int,
                   shape: tuple[int, int]) -> None:
        """One live state tile (parked; painted at the capped rate)."""
        if roi != self.roi_index or str(state) not in self.tiles:
            return
        self.factor = factor
        h, w = tile.shape[:2]
        self._pending[str(state)] = (tile, QtCore.QRectF(0, 0, w * factor, h * factor))

    def show_roi(self, loaded: LoadedRoi, label: str) -> None:
        """A complete RoI: all 8 tiles, and the raw stack for signature and detail."""
        p = loaded.preview
        same = self.roi_index == p.roi and self.current is not None \
            and self.current.source == loaded.source
        self._set_roi(p.roi, p.shape, label)
        if not same:
            for tile in self.tiles.values():
                tile.marker.hide()
        self.current = loaded
        self.factor = p.factor
        for key, arr in p.tiles.items():
            h, w = arr.shape[:2]
            self._pending[key] = (arr, QtCore.QRectF(0, 0, w * p.factor, h * p.factor))
        self._schedule_detail()

    def _set_roi(self, roi: int, shape: tuple[int, int], label: str) -> None:
        new_shape = shape != self.shape
        if roi != self.roi_index or new_shape:
            self._hide_detail()
        self.roi_index, self.shape = roi, shape
        self.title.setText(label)
        f = imaging.overview_factor(shape)
        self.info.setText(f"{shape[1]} x {shape[0]} px · preview 1:{f}")
        if new_shape:
            self.fit()

    def set_overlays(self, objects: list[tuple[str, DetectedObject]],
                     heat: tuple[np.ndarray, float] | None) -> None:
        """Detection boxes of the displayed RoI and its scratch-probability overlay."""
        self._objects = objects
        self._heat = heat
        scratch_path, cont_path = QtGui.QPainterPath(), QtGui.QPainterPath()
        n_cont = 0
        for kind, o in objects:
            r0, c0, r1, c1 = o.box_px
            rect = QtCore.QRectF(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1))
            if kind == "scratch":
                scratch_path.addRect(rect)
            elif n_cont < MAX_CONTAMINANT_BOXES:
                cont_path.addRect(rect)
                n_cont += 1
        for tile in self.tiles.values():
            tile.scratch_boxes.setPath(scratch_path)
            tile.cont_boxes.setPath(cont_path)
            if heat is not None:
                rgba, px = heat
                tile.heat.setImage(rgba, autoLevels=False, levels=(0, 255))
                tile.heat.setRect(QtCore.QRectF(0, 0, rgba.shape[1] * px, rgba.shape[0] * px))
            else:
                tile.heat.clear()
        self._apply_overlay_visibility()

    def select_box(self, box_px: tuple[int, int, int, int] | None, zoom: bool = True) -> None:
        """Highlight one detection and zoom on it with some context around."""
        for tile in self.tiles.values():
            tile.selected.setVisible(box_px is not None)
        if box_px is None:
            return
        r0, c0, r1, c1 = box_px
        rect = QtCore.QRectF(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1))
        for tile in self.tiles.values():
            tile.selected.setRect(rect)
        if zoom:
            side = max(rect.width(), rect.height(), 96) * 1.6
            c = rect.center()
            self.lead.setRange(QtCore.QRectF(c.x() - side / 2, c.y() - side / 2, side, side),
                               padding=0.0)

    def clear_selection(self) -> None:
        """No detection outlined, no signature marker, the whole RoI in view."""
        for tile in self.tiles.values():
            tile.selected.hide()
            tile.marker.hide()
        self.fit()

    def mark(self, row: float, col: float) -> None:
        for tile in self.tiles.values():
            tile.marker.setPos(col + 1.0, row + 1.0)  # centre of the 2 x 2 quad
            tile.marker.show()

    def _apply_overlay_visibility(self) -> None:
        boxes, heat = self.show_boxes.isChecked(), self.show_heat.isChecked()
        for tile in self.tiles.values():
            tile.scratch_boxes.setVisible(boxes)
            tile.cont_boxes.setVisible(boxes)
            tile.heat.setVisible(heat and self._heat is not None)

    def _on_levels(self, name: str) -> None:
        self.worker.levels = name
        self._hide_detail()
        self.levels_changed.emit(name)

    # -- capped redraw ----------------------------------------------------------------------------
    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for key, (arr, rect) in pending.items():
            self.tiles[key].set_image(arr, rect)
        self.redraws += 1

    def flush_now(self) -> None:
        """Paint what is pending immediately (tests, screenshots)."""
        self._flush()

    # -- clicks ---------------------------------------------------------------------------------
    def _on_click(self, tile: _Tile, ev: Any) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or ev.double() or self.shape is None:
            return
        if not tile.vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = tile.vb.mapSceneToView(ev.scenePos())
        h, w = self.shape
        row, col = p.y(), p.x()
        if 0 <= row < h and 0 <= col < w:
            ev.accept()
            self.pixel_clicked.emit(row, col)

    def viewport_of(self, key: str) -> QtWidgets.QWidget:
        """The widget that receives mouse events for a tile (for tests and automation)."""
        return self.tiles[key].view.viewport()

    def scene_pos_of(self, key: str, row: float, col: float) -> QtCore.QPoint:
        """Viewport position of raw pixel (row, col) in a tile (for tests and automation)."""
        tile = self.tiles[key]
        scene = tile.vb.mapViewToScene(QtCore.QPointF(col, row))
        return tile.view.mapFromScene(scene)

    # -- full-detail crop when zoomed in ---------------------------------------------------------
    def _on_range(self, *_: Any) -> None:
        self._schedule_detail()

    def _schedule_detail(self) -> None:
        self._detail_timer.start()

    def _visible_box(self) -> tuple[int, int, int, int] | None:
        if self.shape is None:
            return None
        h, w = self.shape
        r = self.lead.viewRect()
        r0, r1 = max(int(r.top()), 0), min(int(np.ceil(r.bottom())), h)
        c0, c1 = max(int(r.left()), 0), min(int(np.ceil(r.right())), w)
        if r1 <= r0 or c1 <= c0:
            return None
        return r0, c0, r1, c1

    def _request_detail(self) -> None:
        box = self._visible_box()
        loaded = self.current
        if box is None or loaded is None or loaded.stack is None or self.factor <= 2:
            self._hide_detail()
            return
        r0, c0, r1, c1 = box
        vb = self.tiles["0"].vb
        screen_w = max(vb.boundingRect().width(), 1.0)
        magnified = (c1 - c0) / self.factor < screen_w * 0.9
        if not magnified or max(r1 - r0, c1 - c0) > DETAIL_MAX_PX:
            self._hide_detail()
            return
        if self._detail_box and self._detail_box[0] <= r0 and self._detail_box[1] <= c0 \
                and self._detail_box[2] >= r1 and self._detail_box[3] >= c1:
            return  # the crop on screen already covers the view
        h, w = self.shape
        mr, mc = (r1 - r0) // 3 + 8, (c1 - c0) // 3 + 8  # margin so small pans need no new crop
        box = (max(r0 - mr, 0), max(c0 - mc, 0), min(r1 + mr, h), min(c1 + mc, w))
        self._detail_req = self.worker.detail(loaded.stack, box)

    def _on_detail(self, req: int, box: tuple[int, int, int, int],
                   tiles: dict[str, np.ndarray]) -> None:
        if req != self._detail_req or self.current is None:
            return
        r0, c0, r1, c1 = box
        rect = QtCore.QRectF(c0, r0, c1 - c0, r1 - r0)
        for key, arr in tiles.items():
            item = self.tiles[key].detail
            item.setImage(arr, autoLevels=False, levels=(0, 255))
            item.setRect(rect)
            item.show()
        self._detail_box = box

    def _hide_detail(self) -> None:
        self._detail_req = -1
        self._detail_box = None
        for tile in self.tiles.values():
            tile.detail.hide()

    @property
    def detail_shown(self) -> bool:
        return self._detail_box is not None
