"""Tiled full-RoI inference (docs/training.md, "Full RoI").

The network is trained on 1024 x 1024 RAW patches, so a 3504 x 3120 RoI is cut into tiles of
that size overlapping by at least 256 px, run in batches, and stitched.

- Tile starts are spread evenly over the frame (not a fixed stride with padding), so no tile
  sees padded content when the frame is at least one tile large, and every start is even so
  each tile keeps the GRBG phase. A frame smaller than a tile uses a smaller tile (a multiple of
  64 RAW px, the network's divisor) and only pads what is still missing, by reflection (which
  keeps the Bayer period).
- Stitching ("crop", default): each output pixel comes from the one tile in which it lies
  farthest from an inner tile edge: the overlap is split at its middle, so every kept pixel has
  >= overlap / 2 RAW px of real context. ("blend": weights ramp linearly across the middle
  half of each overlap and are 0 on its outer quarters, so neither mode uses the outputs next
  to an inner tile edge, where zero padding makes them differ from a whole-frame pass.)
- Whole stack is uploaded once as int16 (12-bit values fit), tiles are views on the device.
- An engine that `takes_raw` (the exported ONNX graph: scaling and space-to-depth are its first
  nodes) gets RAW int16 tiles and the scaling; the whole frame is then passed without a copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from inference.preprocess import RawScaling

PAPER_TILE_PX = 1024
PAPER_OVERLAP_PX = 256
TILE_MULTIPLE_PX = 64  # 2 (space-to-depth) x 32 (5 max-pools)


@dataclass(frozen=True)
class TilingParams:
    tile: int = PAPER_TILE_PX
    """Tile side in RAW px (a multiple of 64)."""
    overlap: int = PAPER_OVERLAP_PX
    """Minimum overlap between neighbouring tiles in RAW px."""
    batch_size: int = 4
    stitch: str = "crop"
    """"crop" (split the overlap at its middle) or "blend" (linear ramps)."""

    def __post_init__(self) -> None:
        if self.tile % TILE_MULTIPLE_PX:
            raise ValueError(f"tile must be a multiple of {TILE_MULTIPLE_PX} RAW px")
        if not 0 <= self.overlap < self.tile or self.overlap % 2:
            raise ValueError("overlap must be even and smaller than the tile")
        if self.stitch not in ("crop", "blend"):
            raise ValueError("stitch must be 'crop' or 'blend'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def tile_starts(length: int, tile: int, overlap: int, align: int = 2) -> list[int]:
    """Even-spaced, `align`-aligned starts covering [0, length) with overlap >= `overlap`."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    last = length - tile
    starts = [int(round(i * last / (n - 1) / align)) * align for i in range(n)] if n > 1 else [0]
    starts[-1] = last  # `length` and `tile` are even, so this is aligned
    # rounding may shrink one overlap a little: add a tile if any fell below the minimum
    if any(b - a > tile - overlap for a, b in zip(starts, starts[1:], strict=False)):
        return tile_starts_n(length, tile, n + 1, align)
    return starts


def tile_starts_n(length: int, tile: int, n: int, align: int = 2) -> list[int]:
    last = length - tile
    starts = [int(round(i * last / (n - 1) / align)) * align for i in range(n)]
    starts[-1] = last
    return starts


def _crop_bounds(starts: Sequence[int], tile: int, length: int) -> list[tuple[int, int]]:
    """Per tile, the [lo, hi) range (same units as starts) whose output it supplies."""
    bounds = []
    for i, s in enumerate(starts):
        lo = 0 if i == 0 else (starts[i - 1] + tile + s) // 2
        hi = length if i == len(starts) - 1 else (s + tile + starts[i + 1]) // 2
        bounds.append((lo, hi))
    return bounds


def _ramp(starts: Sequence[int], tile: int, i: int) -> np.ndarray:
    """1-D blend weight of tile i: 0 on the outer quarter of each overlap (the part nearest
    the tile edge, where zero padding disturbs the output), linear over the middle half."""
    w = np.ones(tile, np.float32)
    x = np.arange(tile, dtype=np.float32) + 0.5
    if i > 0:
        ov = starts[i - 1] + tile - starts[i]
        if ov > 0:
            w = np.minimum(w, np.clip((x - ov / 4) / (ov / 2), 0.0, 1.0))
    if i < len(starts) - 1:
        ov = starts[i] + tile - starts[i + 1]
        if ov > 0:
            w = np.minimum(w, np.clip((tile - x - ov / 4) / (ov / 2), 0.0, 1.0))
    return np.maximum(w, 1e-12)


@dataclass
class TileLayout:
    """Where the tiles go on the (padded) frame, in RAW px."""

    height: int
    width: int
    padded: tuple[int, int]
    tile_hw: tuple[int, int]
    rows: list[int]
    cols: list[int]

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)


def plan_tiles(height: int, width: int, params: TilingParams = TilingParams()) -> TileLayout:
    """Tile layout for a frame of any size (odd sizes are padded by one row / column)."""
    he, we = _round_up(height, 2), _round_up(width, 2)
    th = min(params.tile, _round_up(he, TILE_MULTIPLE_PX))
    tw = min(params.tile, _round_up(we, TILE_MULTIPLE_PX))
    ph, pw = max(he, th), max(we, tw)
    ov_h = min(params.overlap, th - 2)
    ov_w = min(params.overlap, tw - 2)
    return TileLayout(height, width, (ph, pw), (th, tw), tile_starts(ph, th, ov_h),
                      tile_starts(pw, tw, ov_w))


def _pad_stack(stack: np.ndarray, ph: int, pw: int) -> np.ndarray:
    h, w = stack.shape[-2:]
    if (h, w) == (ph, pw):
        return stack
    return np.pad(stack, ((0, 0), (0, ph - h), (0, pw - w)), mode="reflect" if min(h, w) > 1
                  else "edge")


ModelFn = Callable[[torch.Tensor], Any]


def _finest(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, list | tuple) else out


INT16_MAX = 32767


def raw_int16(stack: np.ndarray) -> np.ndarray:
    """RAW DN as int16 without a copy where possible (12-bit values fit): a uint16 stack is
    viewed, and clipped to 32767 first only if it holds larger values (any white level of a
    12- or 15-bit sensor is below that, so the clipped values scale to 1 just the same)."""
    stack = np.ascontiguousarray(stack)
    if stack.dtype == np.int16:
        return stack
    if stack.dtype == np.uint16:
        return (stack if int(stack.max(initial=0)) <= INT16_MAX
                else np.minimum(stack, INT16_MAX)).view(np.int16)
    return np.clip(stack, -INT16_MAX - 1, INT16_MAX).astype(np.int16)


def network_input(stack: np.ndarray, scaling: RawScaling) -> torch.Tensor:
    """(S, H, W) RAW DN (H, W even) -> (S*4, H/2, W/2) float32 network input, in one pass:
    the same values as `F.pixel_unshuffle(normalize_raw(stack))` (channel 4k + 2i + j is state
    k at Bayer offset (i, j)), without the intermediate full-size float frame."""
    s, h, w = stack.shape
    src = torch.from_numpy(raw_int16(stack))
    src = src.view(s, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3)  # (S, i, j, H/2, W/2)
    x = torch.empty((s, 2, 2, h // 2, w // 2), dtype=torch.float32)
    x.copy_(src)  # 12-bit DN fit int16 exactly
    gain = 1.0 / (scaling.white_level - scaling.black_level)
    return x.sub_(scaling.black_level).mul_(gain).clamp_(0.0, 1.0).view(s * 4, h // 2, w // 2)


def predict_tiled(model: ModelFn, stack: np.ndarray, params: TilingParams = TilingParams(),
                  scaling: RawScaling | None = None, device: str | torch.device = "cpu",
                  amp_dtype: torch.dtype | None = None, channels_last: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  fixed_batch: bool = False) -> np.ndarray:
    """Network output at map resolution, (ceil(H/2), ceil(W/2)) float32, for a (6, H, W) stack.

    model: NestedUNet or any callable (N, 24, h, w) -> (N, 1, h, w) or a list, finest first;
    or, when it `takes_raw`, a callable (raw (N, 6, H, W) int16, scaling) -> (N, 1, H/2, W/2).
    amp_dtype: e.g. torch.bfloat16 for autocast (CUDA); channels_last: NHWC input;
    fixed_batch: pad the last batch to the others' size so a compiled model sees one shape
    per frame size.
    """
    stack = np.asarray(stack)
    scaling = scaling or RawScaling()
    if stack.ndim != 3:
        raise ValueError(f"stack must be (states, H, W), got {stack.shape}")
    device = torch.device(device)
    s, h, w = stack.shape
    lay = plan_tiles(h, w, params)
    (ph, pw), (th, tw) = lay.padded, lay.tile_hw
    padded = _pad_stack(stack, ph, pw)
    takes_raw = bool(getattr(model, "takes_raw", False))
    # RAW for an engine that scales in its graph (q = 2: tiles at full resolution); otherwise
    # the whole frame scaled and space-to-depth'd once, in one pass: tiles are slices of it
    q = 1 if takes_raw else 2
    frame = (torch.from_numpy(raw_int16(padded)) if takes_raw
             else network_input(padded, scaling)).to(device, non_blocking=True)
    th2, tw2 = th // q, tw // q
    out = torch.zeros((ph // 2, pw // 2), dtype=torch.float32, device=device)
    wsum = torch.zeros_like(out) if params.stitch == "blend" else None
    rb = _crop_bounds(lay.rows, th, ph)
    cb = _crop_bounds(lay.cols, tw, pw)
    boxes = [(i, j) for i in range(len(lay.rows)) for j in range(len(lay.cols))]
    autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
                else nullcontext())
    done = 0
    with torch.inference_mode():
        for b0 in range(0, len(boxes), params.batch_size):
            batch = boxes[b0:b0 + params.batch_size]
            if len(boxes) == 1:
                x = frame[None]
            else:
                x = torch.stack([frame[:, lay.rows[i] // q:lay.rows[i] // q + th2,
                                       lay.cols[j] // q:lay.cols[j] // q + tw2]
                                 for i, j in batch])
            full = min(params.batch_size, len(boxes))  # one shape per frame size, no waste
            if fixed_batch and len(batch) < full:
                x = torch.cat([x, x[-1:].expand(full - len(batch), -1, -1, -1)])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                y = _finest(model(x, scaling) if takes_raw else model(x))
            y = y.to(torch.float32)[:, 0]
            for k, (i, j) in enumerate(batch):
                r0, c0 = lay.rows[i] // 2, lay.cols[j] // 2
                if wsum is None:
                    lo_r, hi_r = (v // 2 for v in rb[i])
                    lo_c, hi_c = (v // 2 for v in cb[j])
                    out[lo_r:hi_r, lo_c:hi_c] = y[k, lo_r - r0:hi_r - r0, lo_c - c0:hi_c - c0]
                else:
                    wr = torch.from_numpy(_ramp([v // 2 for v in lay.rows], th // 2, i))
                    wc = torch.from_numpy(_ramp([v // 2 for v in lay.cols], tw // 2, j))
                    wt = (wr[:, None] * wc[None, :]).to(device)
                    out[r0:r0 + th // 2, c0:c0 + tw // 2] += y[k] * wt
                    wsum[r0:r0 + th // 2, c0:c0 + tw // 2] += wt
            done += len(batch)
            if progress is not None:
                progress(done, len(boxes))
    if wsum is not None:
        out /= wsum
    hm, wm = -(-h // 2), -(-w // 2)
    return out[:hm, :wm].cpu().numpy()

