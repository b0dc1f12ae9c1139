"""Cutting classifier crops out of a 6-state RAW stack around detected objects.

The station's detector reports boxes ``(row0, col0, row1, col1)`` (half-open, RoI pixels) on a
``(6, H, W)`` uint16 GRBG Bayer stack. The classifier wants float ``(6, h, w)`` crops. Two
choices matter for typing and are made here once, so training (simulated crops) and the station
use identical crops:

- *Fixed window by default*: a square window of ``window`` RAW pixels centred on the box, so
  the physical scale is the same for every crop (dust and stains differ mainly in size and
  contrast; resizing a box-shaped crop to a fixed input would erase that). ``window=None``
  takes the box plus ``margin`` of its size on each side instead (better for long scratches).
- *Bayer handling*: window origins are even (the Bayer phase is the same everywhere, see
  conventions), the black level (64 DN) is subtracted and each 2 x 2 GRBG quad is averaged
  (``bin2=True``), which removes the colour-filter pattern and halves the size: a 128-px window
  gives a 64 x 64 crop, the classifiers' default input size, with no resampling.

Windows reaching past the image border are padded with 0 (i.e. black level: dark field).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLACK_LEVEL_DN = 64
DEFAULT_WINDOW_PX = 128


def extract_crops(stack: np.ndarray, boxes: Sequence[tuple[int, int, int, int]],
                  window: int | None = DEFAULT_WINDOW_PX, margin: float = 0.25,
                  bin2: bool = True, black_level: float = BLACK_LEVEL_DN) -> list[np.ndarray]:
    """Float32 crops ``(C, h, w)`` (``C = stack.shape[0]``), one per box, see module docstring."""
    if stack.ndim == 2:
        stack = stack[None]
    c, h, w = stack.shape
    out = []
    for r0, c0, r1, c1 in boxes:
        if window is not None:
            cr, cc = (r0 + r1) / 2, (c0 + c1) / 2
            a0, b0 = int(round(cr - window / 2)), int(round(cc - window / 2))
            sz_r = sz_c = window
        else:
            mr, mc = int(np.ceil((r1 - r0) * margin)), int(np.ceil((c1 - c0) * margin))
            a0, b0 = r0 - mr, c0 - mc
            sz_r, sz_c = r1 - r0 + 2 * mr, c1 - c0 + 2 * mc
        a0, b0 = a0 - (a0 % 2), b0 - (b0 % 2)  # even origin keeps the Bayer phase
        a1, b1 = a0 + sz_r + sz_r % 2, b0 + sz_c + sz_c % 2  # even size
        crop = np.zeros((c, a1 - a0, b1 - b0), np.float32)
        sa0, sb0, sa1, sb1 = max(a0, 0), max(b0, 0), min(a1, h), min(b1, w)
        if sa1 > sa0 and sb1 > sb0:
            crop[:, sa0 - a0:sa1 - a0, sb0 - b0:sb1 - b0] = \
                stack[:, sa0:sa1, sb0:sb1].astype(np.float32) - black_level
        np.maximum(crop, 0, out=crop)
        if bin2:
            crop = crop.reshape(c, crop.shape[1] // 2, 2, crop.shape[2] // 2, 2).mean((2, 4))
        out.append(crop)
    return out
