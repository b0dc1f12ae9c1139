"""Where each RoI is: sample pixels, sample millimetres and stage coordinates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rig.config import SampleSettings, StationConfig
from rig.geometry import (
    roi_centre_mm,
    roi_grid,
    roi_px_to_sample_mm,
    sample_mm_to_roi_px,
    signed_inside_mm,
)


@dataclass(frozen=True)
class RoiGeometry:
    index: int
    row: int  # grid row (along the sample's length, y)
    col: int  # grid column (across the width, x)
    origin_px: tuple[int, int]  # (row, col) of the top-left pixel in the sample pixel frame
    size_px: tuple[int, int]  # (height, width)
    pixel_size_mm: float
    stage_xy_mm: tuple[float, float]  # stage position that centres this RoI under the camera

    @property
    def center_mm(self) -> tuple[float, float]:
        """(x, y) of the RoI centre in the sample frame."""
        return roi_centre_mm(self.origin_px, self.size_px[1], self.size_px[0], self.pixel_size_mm)

    def to_sample_mm(self, row: float, col: float) -> tuple[float, float]:
        """RoI pixel (row, col) -> sample (x, y) mm."""
        return roi_px_to_sample_mm(row, col, self.origin_px, self.pixel_size_mm)

    def to_roi_px(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """Sample (x, y) mm -> RoI pixel (row, col)."""
        return sample_mm_to_roi_px(x_mm, y_mm, self.origin_px, self.pixel_size_mm)


def glass_edge_mask(origin_px: tuple[int, int], size_px: tuple[int, int],
                    pixel_size_mm: float, sample: SampleSettings, band_mm: float,
                    scale: int = 1) -> np.ndarray:
    """True where a pixel of a RoI at `origin_px` (sample pixel frame) of `size_px` (h, w),
    taking every `scale`-th pixel (2 for the detector's map), lies outside the glass or within
    `band_mm` inside its outline: the edge scatters light in every state and would otherwise
    be listed as a glass-long "contaminant"."""
    h, w = -(-size_px[0] // scale), -(-size_px[1] // scale)
    r0, c0 = origin_px
    pix = pixel_size_mm
    y = (r0 + (np.arange(h) + 0.5) * scale) * pix
    x = (c0 + (np.arange(w) + 0.5) * scale) * pix
    inside = signed_inside_mm(x[None, :], y[:, None], sample.width_mm, sample.length_mm,
                              sample.corner_radius_mm)
    return inside < band_mm


def roi_layout(cfg: StationConfig, pixel_size_mm: float | None = None,
               stage_for_centre: Callable[[tuple[float, float]], tuple[float, float]] | None = None
               ) -> tuple[RoiGeometry, ...]:
    """The station's RoI grid, row-major.

    By default in nominal pixels with stage coordinates from `stage.sample_origin_mm`; a
    calibration passes the measured `pixel_size_mm` and `stage_for_centre` (sample pixel
    (row, col) of the RoI centre -> stage (x, y) mm, correcting the stage rotation).
    """
    cam, scan = cfg.camera, cfg.scan
    pix = pixel_size_mm or scan.pixel_size_mm
    origins = roi_grid(cfg.sample.width_mm, cfg.sample.length_mm, cam.width, cam.height, pix,
                       columns=scan.columns, rows=scan.rows, min_overlap_px=scan.min_overlap_px)
    ox, oy = cfg.stage.sample_origin_mm
    out = []
    for index, (grid_row, grid_col, r0, c0) in enumerate(origins):
        if stage_for_centre is None:
            cx, cy = roi_centre_mm((r0, c0), cam.width, cam.height, pix)
            stage_xy = (ox + cx, oy + cy)
        else:
            stage_xy = stage_for_centre((r0 + cam.height / 2, c0 + cam.width / 2))
        out.append(RoiGeometry(index, grid_row, grid_col, (r0, c0), (cam.height, cam.width),
                               pix, stage_xy))
    return tuple(out)


def draw_layout(cfg: StationConfig, png: str | Path) -> None:
    """A PNG of the glass with its RoIs, their indices and overlaps (sample frame, mm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Rectangle

    s = cfg.sample
    rois = roi_layout(cfg)
    fig, ax = plt.subplots(figsize=(5.2, 9), dpi=110)
    ax.add_patch(FancyBboxPatch((0, 0), s.width_mm, s.length_mm,
                                boxstyle=f"round,pad=0,rounding_size={s.corner_radius_mm}",
                                fc="#dde8f0", ec="k", lw=1.5, label="glass"))
    colours = [plt.get_cmap("tab10")(i)[:3] for i in range(10)]  # RGB
    for r in rois:
        x0, y0 = r.to_sample_mm(0, 0)
        w, h = r.size_px[1] * r.pixel_size_mm, r.size_px[0] * r.pixel_size_mm
        ax.add_patch(Rectangle((x0, y0), w, h, fc=(*colours[r.index % 10], 0.12),
                               ec=colours[r.index % 10], lw=1.2))
        cx, cy = r.center_mm
        ax.text(cx, cy, f"{r.index:02d}", ha="center", va="center", fontsize=11, weight="bold")
    overlap = grid_overlap_px(rois)
    ax.set_title(f"{len(rois)} RoIs of {rois[0].size_px[1]}x{rois[0].size_px[0]} px at "
                 f"{cfg.scan.pixel_size_mm * 1000:.1f} um/px\nmin overlap {overlap[0]} px across, "
                 f"{overlap[1]} px along", fontsize=9)
    ax.set_xlim(-5, s.width_mm + 5)
    ax.set_ylim(s.length_mm + 5, -5)  # y down, as in the images
    ax.set_aspect("equal")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def grid_overlap_px(rois: tuple[RoiGeometry, ...]) -> tuple[int, int]:
    """Smallest overlap between horizontal and between vertical neighbours (px; negative = gap)."""
    def axis(key: int) -> int:
        starts = sorted({r.origin_px[key] for r in rois})
        size = rois[0].size_px[key]
        gaps = [size - (b - a) for a, b in zip(starts, starts[1:], strict=False)]
        return min(gaps) if gaps else 0

    return axis(1), axis(0)
