"""The detector's typed seam: what the inspection run and the GUI call on a detector.

`inference.detector.Detector` implements it; importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from inference.detector import RoiDetection
    from recordings import DetectionResults


@runtime_checkable
class Detector(Protocol):
    """Per-RoI detection, then one sample result built from all RoIs."""

    raw_correction: Callable[[np.ndarray], np.ndarray] | None  # calibration's dark/flat hook

    @property
    def name(self) -> str: ...
    @property
    def sha256(self) -> str | None: ...
    def detect_roi(self, stack: np.ndarray, roi: int = -1, origin_px: tuple[int, int] = (0, 0),
                   pixel_size_mm: float = ..., black_level: float | None = None
                   ) -> RoiDetection: ...
    def sample_results(self, rois: Iterable[RoiDetection],
                       timings_s: Mapping[str, float] | None = None) -> DetectionResults: ...
