"""Where each RoI is: sample pixels, sample millimetres and stage coordinates."""

from __future__ import annotations

from dataclasses import dataclass

from rig.config import StationConfig
from rig.geometry import roi_grid


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
        r0, c0 = self.origin_px
        h, w = self.size_px
        return ((c0 + w / 2) * self.pixel_size_mm, (r0 + h / 2) * self.pixel_size_mm)

    def to_sample_mm(self, row: float, col: float) -> tuple[float, float]:
        """RoI pixel (row, col) -> sample (x, y) mm."""
        return ((self.origin_px[1] + col) * self.pixel_size_mm,
                (self.origin_px[0] + row) * self.pixel_size_mm)

    def to_roi_px(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """Sample (x, y) mm -> RoI pixel (row, col)."""
        return (y_mm / self.pixel_size_mm - self.origin_px[0],
                x_mm / self.pixel_size_mm - self.origin_px[1])


def roi_layout(cfg: StationConfig) -> tuple[RoiGeometry, ...]:
    """The station's RoI grid, row-major, with stage coordinates from `stage.sample_origin_mm`."""
    cam, scan = cfg.camera, cfg.scan
    origins = roi_grid(cfg.sample.width_mm, cfg.sample.length_mm, cam.width, cam.height,
                       scan.pixel_size_mm, columns=scan.columns, rows=scan.rows,
                       min_overlap_px=scan.min_overlap_px)
    ox, oy = cfg.stage.sample_origin_mm
    out = []
    for index, (grid_row, grid_col, r0, c0) in enumerate(origins):
        geo = RoiGeometry(index, grid_row, grid_col, (r0, c0), (cam.height, cam.width),
                          scan.pixel_size_mm, (0.0, 0.0))
        cx, cy = geo.center_mm
        out.append(RoiGeometry(index, grid_row, grid_col, (r0, c0), (cam.height, cam.width),
                               scan.pixel_size_mm, (ox + cx, oy + cy)))
    return tuple(out)
