"""The physical signature of a clicked spot: intensity versus illumination azimuth.

A scratch scatters light only when lit roughly across its direction, so its polar curve is a
narrow two-lobed shape and its modulation index is high; dust, stains and fibres scatter in
every direction, so theirs is a circle. The y axis points down as in the image, so a lobe points
the way the light came from on screen.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui import imaging

GRID_PEN = (90, 96, 108)


class SignaturePlot(QtWidgets.QWidget):
    """Polar plot of one spot's intensity per illumination state.

    A bare `ViewBox` in a `GraphicsView` (no `PlotItem`): the plot shows no axes, and a
    `PlotItem` carries parentless context menus that only Python's cyclic garbage collector
    would delete, which can deadlock Qt (docs/architecture.md, "Qt object lifetimes"). The grid
    items are created once and updated in place, so no graphics item is ever dropped.
    """

    N_LABELS = 4  # azimuth labels every 90 degrees

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.plot = pg.GraphicsView(background=(24, 26, 30))
        self.vb = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self.vb.setMouseEnabled(False, False)
        self.plot.setCentralItem(self.vb)
        pen = QtGui.QPen(QtGui.QColor(*GRID_PEN), 1)
        pen.setCosmetic(True)
        self.grid = QtWidgets.QGraphicsPathItem()
        self.grid.setPen(pen)
        self.labels = [pg.TextItem(f"{90 * k}°", color="#8a93a0", anchor=(0.5, 0.5))
                       for k in range(self.N_LABELS)]
        self.scale = pg.TextItem("", color="#8a93a0", anchor=(0, 1))
        for item in (self.grid, *self.labels, self.scale):
            item.setZValue(-1)
            self.vb.addItem(item, ignoreBounds=True)
        self.curve = pg.PlotDataItem(pen=pg.mkPen("#ffcc33", width=2.5),
                                     fillLevel=None, brush=None)
        self.points = pg.ScatterPlotItem(size=8, pen=None, brush=pg.mkBrush("#ffcc33"))
        self.vb.addItem(self.curve, ignoreBounds=True)
        self.vb.addItem(self.points, ignoreBounds=True)
        self.title = QtWidgets.QLabel("Physical signature: click a pixel in any tile")
        self.title.setStyleSheet("font-weight: bold;")
        self.modulation = QtWidgets.QLabel("")
        self.modulation.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.detail = QtWidgets.QLabel("")
        self.detail.setStyleSheet("color: #aab1bc; font-family: monospace; font-size: 11px;")
        self.detail.setWordWrap(True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.modulation)
        lay.addWidget(self.detail)
        self.signature: imaging.Signature | None = None
        self._draw_grid(1.0)

    def _draw_grid(self, r_max: float) -> None:
        """Rings and spokes as one path item (cheap to paint), labels moved to the new radius."""
        path = QtGui.QPainterPath()
        for frac in (0.25, 0.5, 0.75, 1.0):
            r = r_max * frac
            path.addEllipse(QtCore.QPointF(0, 0), r, r)
        for k in range(12):
            a = np.deg2rad(30 * k)
            path.moveTo(0, 0)
            path.lineTo(r_max * np.cos(a), r_max * np.sin(a))
        self.grid.setPath(path)
        for k, label in enumerate(self.labels):
            a = np.deg2rad(90 * k)
            label.setPos(1.14 * r_max * np.cos(a), 1.14 * r_max * np.sin(a))
        self.scale.setText(f"{r_max:.0f} DN")
        self.scale.setPos(0.72 * r_max, -0.72 * r_max)
        lim = 1.25 * r_max
        self.vb.setRange(QtCore.QRectF(-lim, -lim, 2 * lim, 2 * lim), padding=0)

    def show_signature(self, sig: imaging.Signature, where: str) -> None:
        self.signature = sig
        values = np.asarray(sig.values_dn, dtype=float)
        r_max = float(max(values.max(), 1.0))
        nice = 10 ** np.floor(np.log10(r_max))
        r_max = float(np.ceil(r_max / nice) * nice)
        self._draw_grid(r_max)
        x, y = imaging.polar_curve(values, sig.azimuths_deg)
        self.curve.setData(x, y)
        self.points.setData(x[:-1], y[:-1])
        m = sig.modulation
        if sig.saturated:  # the words and colour say it first, not a footnote
            color, words = "#ff9f1a", f"SATURATED: direction unknown (index {m:.2f} " \
                                      "understated)"
        else:
            color = ("#ff5a5a" if m >= imaging.DIRECTIONAL_M else
                     "#5ac8ff" if m <= imaging.ISOTROPIC_M else "#ffcc33")
            words = f"modulation index {m:.2f}: {sig.verdict}"
        self.modulation.setText(words)
        self.modulation.setStyleSheet(f"font-size: 15px; font-weight: bold; color: {color};")
        approx = "  (from preview; raw stack not in memory)" if sig.approximate else ""
        self.title.setText(f"Physical signature · {where}")
        per_state = "  ".join(f"{a:.0f}°:{v:.0f}" for a, v in zip(sig.azimuths_deg, values,
                                                                   strict=True))
        bg = "" if sig.background_dn is None else \
            f" (background {float(np.median(sig.background_dn)):.0f} DN subtracted)"
        self.detail.setText(f"DN above the local background per state{bg}  {per_state}"
                            f"{approx}")

    def clear(self) -> None:
        self.signature = None
        self.curve.setData([], [])
        self.points.clear()
        self.modulation.setText("")
        self.detail.setText("")
        self.title.setText("Physical signature: click a pixel in any tile")
