"""A contact sheet of one RoI: the 6 states and their per-pixel maximum, fixed display levels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def display_image(frame: np.ndarray, black_level: int, factor: int) -> np.ndarray:
    """Block-max downsample (keeps 1-px scratches visible), subtract black level, sqrt stretch.

    The stretch maps 0..4095-black to 0..1 with a square root: dark-field signal lives in the
    lowest few percent of the range, and a fixed curve (not per-image auto levels) keeps the
    states comparable.
    """
    h, w = (s // factor * factor for s in frame.shape)
    f = frame[:h, :w].reshape(h // factor, factor, w // factor, factor).max(axis=(1, 3))
    f = np.clip(f.astype(np.float32) - black_level, 0, None) / (4095 - black_level)
    return np.sqrt(np.clip(f * 8.0, 0, 1))  # x8 gain: full white at 1/8 of the range


def save_contact_sheet(stack: np.ndarray, png: str | Path, *, black_level: int = 64,
                       title: str = "", azimuths_deg: Sequence[float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = stack.shape[0]
    factor = max(1, int(np.ceil(max(stack.shape[1:]) / 900)))
    panels = [display_image(stack[k], black_level, factor) for k in range(n)]
    panels.append(display_image(stack.max(axis=0), black_level, factor))
    az = list(azimuths_deg) if azimuths_deg is not None else [30.0 * k for k in range(n)]
    names = [f"state {k}: {az[k]:.0f}/{az[k] + 180:.0f} deg" for k in range(n)] + ["max of states"]
    cols = 4
    rows = int(np.ceil(len(panels) / cols))
    aspect = stack.shape[1] / stack.shape[2]
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows * aspect + 0.6), dpi=110)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, name in zip(axes.flat, panels, names, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
    fig.suptitle(f"{title}   (display: black level {black_level} DN removed, sqrt stretch, "
                 f"{factor}x{factor} block max)", fontsize=9)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
