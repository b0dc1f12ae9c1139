"""The detector's typed seam: what the inspection run and the GUI call on a detector.

`inference.detector.Detector` implements it; importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from recordings import DetectedObject, DetectionResults


class RoiResult(Protocol):
    """What the detector found in one RoI (`inference.detector.RoiDetection`)."""

    roi: int
    probability: np.ndarray  # scratch probability at map resolution

    def detected_objects(self) -> tuple[list[DetectedObject], list[DetectedObject]]: ...


@runtime_checkable
class Detector(Protocol):
    """Per-RoI detection, then one sample result built from all RoIs."""

    raw_correction: Callable[[np.ndarray], np.ndarray] | None  # calibration's dark/flat hook

    @property
    def name(self) -> str: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def probability_scale(self) -> int: ...
    def detect_roi(self, stack: np.ndarray, roi: int = -1, origin_px: tuple[int, int] = (0, 0),
                   pixel_size_mm: float = ..., black_level: float | None = None,
                   edge_mask: np.ndarray | None = None) -> RoiResult: ...
    def sample_results(self, rois: Iterable[RoiResult],
                       timings_s: Mapping[str, float] | None = None) -> DetectionResults: ...
