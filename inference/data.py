"""Training patches for the detector (seed paper 004, sections 5.4 and 5.6).

Two sources give the same kind of batch:

- `SimPatchSource`: a streaming generator that renders fresh simulated patches on the fly with
  `world` (virtual samples from `make_sample`, rendered by `DarkFieldRenderer` as a
  patch-sized window of a full-size sensor at the chosen origin), so training is never limited
  by disk. Every sample
  seed comes from the training series and is checked against the held-out series: training and
  test samples are disjoint by construction.
- `RecordingPatchSource`: patches cut from recordings with truth (simulated or labelled real).

The paper's sampling rules, for both:

- each batch has exactly `scratch_per_batch` patches that contain scratch pixels (the paper ends
  at one per batch of 16: the auto-encoder loss keeps the gradient alive on everything else);
  the other patches contain no scratch pixel at all;
- a patch with nothing but background ("without any spots") is dropped and redrawn; a patch has
  content when enough pixels of its max-over-states image stand out from the patch median
  (`has_content`), so dust, stains, fibres, hot-pixel clusters and glass edges count
  (`drop_empty=False` keeps such patches: see PatchConfig);
- augmentation: one of the 8 flips / 90-degree rotations applied to the RAW and re-aligned to
  GRBG (`inference.preprocess.random_bayer_augment`), then Gaussian and salt-and-pepper noise
  on the normalised stack (`add_noise_fast`, the model of `inference.preprocess.add_noise`).
  The auto-encoder target -max_i I_i is taken from the stack *before* the noise: the network
  learns to reconstruct the glass, not the injected noise.

Determinism: batch `b` is a pure function of (source settings, seed, b), whichever process
draws it. So a resumed training run sees exactly the batches an uninterrupted one would, and
DataLoader workers can draw batches out of order (`batch_loader`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from inference.preprocess import (
    BLACK_LEVEL_DN,
    WHITE_LEVEL_DN,
    max_over_states,
    pool_truth,
    random_bayer_augment,
    space_to_depth,
)

PAPER_BATCH = 16
PAPER_SCRATCH_PER_BATCH = 1  # "Now, it's only one patch with scratch in the batch" (5.4)
DEFAULT_PATCH_PX = 256  # RAW px: 128 x 128 after space-to-depth (the paper: 1024 -> 512)
NONSCRATCH_KINDS = ("dust", "stain", "fibre")


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatchConfig:
    """How patches become a batch; stored in the model card."""

    patch_px: int = DEFAULT_PATCH_PX
    """RAW patch side (a multiple of 64: space-to-depth x the network's 5 max-pools)."""
    batch_size: int = PAPER_BATCH
    scratch_per_batch: int = PAPER_SCRATCH_PER_BATCH
    """Patches with scratch pixels in each batch (0 .. batch_size); the rest have none."""
    gaussian_sigma: float = 0.001
    """Largest Gaussian noise sd on the [0, 1] stack (drawn per patch in [0, this]); 0.001
    is 4 DN, about the simulated sensor's own noise, so faint scratches stay visible."""
    salt_pepper_fraction: float = 2e-5
    """Largest share of stack values set to 0 or 1 (drawn per patch in [0, this])."""
    augment: bool = True
    """Bayer-preserving flips / rotations."""
    drop_empty: bool = True
    """Redraw patches that show nothing but background (paper 5.6). False keeps them: most of
    a full-size field is plain noisy background, which the network must learn to leave at 0."""
    content_threshold_dn: float = 15.0
    """A pixel has content when its max over states stands this far above the patch median."""
    content_min_px: int = 4
    """... and a patch has content with at least this many such pixels of the 2 x 2 mean-pooled
    image (a lone hot pixel makes one such pixel at most; noise makes none)."""
    black_level: float = BLACK_LEVEL_DN
    white_level: float = WHITE_LEVEL_DN
    max_tries: int = 60
    """Redraws before a patch that keeps coming out empty is accepted anyway."""

    def __post_init__(self) -> None:
        if self.patch_px % 64 or self.patch_px <= 0:
            raise ValueError(f"patch_px must be a positive multiple of 64, got {self.patch_px}")
        if not 0 <= self.scratch_per_batch <= self.batch_size:
            raise ValueError(f"scratch_per_batch must be 0..batch_size ({self.batch_size}), "
                             f"got {self.scratch_per_batch}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SimSourceConfig:
    """The streaming simulator's settings (everything needed to regenerate the data)."""

    series_seed: int = 1
    """Training series: patch j of batch b comes from sample seed
    `world.simulate.sample_seed(series_seed, b * batch_size + j)`."""
    exclude_series: tuple[tuple[int, int], ...] = ((1000, 1000),)
    """Held-out series (seed, n samples) written by `simulate --seed S --samples n`: any
    training seed equal to one of their sample seeds is skipped."""
    pixel_size_mm: float = 0.0114
    exposure_us: float = 20000.0
    scratch_fraction_test: float = 0.30
    """Only recorded for reference: the training stream draws scratched samples for scratch
    patches and scratch-free samples for the others, so the batch composition is exact."""
    target_weights: dict[str, float] = field(default_factory=lambda: {
        "fibre": 0.30, "dust": 0.20, "stain": 0.15, "edge": 0.25, "random": 0.10})
    """Where a scratch-free patch is centred: on a defect of that kind, on the glass outline
    (edge glare: a long bright line modulated by the lit direction, the hardest negative after
    fibres), or anywhere on the glass."""
    field_sensor: tuple[int, int] = (3504, 3120)
    """(W, H) of the sensor a patch is a window of, at a random even position, so patches
    carry the light-field gradient and vignetting of anywhere in a full-size field. Equal to
    the patch size: every patch sees the field centre (the bundled model's stages 1 and 2)."""
    vary_rig: bool = True
    """Draw the ring-light balance / hot-pixel map (OpticsConfig.rig_seed) per patch in 0..63."""
    mix: dict[str, Any] = field(default_factory=dict)
    """Overrides of world.sample.DefectMix fields (default: the simulator's defaults)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exclude_series"] = [list(x) for x in self.exclude_series]
        d["field_sensor"] = list(self.field_sensor)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimSourceConfig:
        d = dict(d)
        if "exclude_series" in d:
            d["exclude_series"] = tuple(tuple(int(v) for v in x) for x in d["exclude_series"])
        if "field_sensor" in d:
            d["field_sensor"] = tuple(int(v) for v in d["field_sensor"])
        return cls(**d)


class Batch(NamedTuple):
    """One training batch at map resolution (RAW / 2)."""

    x: torch.Tensor  # (N, 24, h, w) network input
    max_intensity: torch.Tensor  # (N, 1, h, w) clean max_i I_i, 2 x 2 pooled
    scratch: torch.Tensor  # (N, 1, h, w) scratch truth, 2 x 2 max-pooled
    is_scratch: torch.Tensor  # (N,) bool: patch has scratch pixels


# --------------------------------------------------------------------------------------------
# Patch rules
# --------------------------------------------------------------------------------------------

def has_content(raw: np.ndarray, cfg: PatchConfig = PatchConfig()) -> bool:
    """True if the RAW patch (6, H, W) shows anything but background (paper 5.6: "patches
    which hadn't any information (without any spots, only background) were discarded")."""
    m = raw.max(axis=0).astype(np.float32)
    h, w = m.shape
    m = m[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return int((m - np.median(m) > cfg.content_threshold_dn).sum()) >= cfg.content_min_px


def make_batch(raws: Sequence[np.ndarray], masks: Sequence[np.ndarray],
               rng: np.random.Generator, cfg: PatchConfig = PatchConfig()) -> Batch:
    """RAW patches (6, P, P) uint16 + scratch masks (P, P) -> augmented, noisy network batch."""
    xs, mxs, scs, flags = [], [], [], []
    gain = 1.0 / (cfg.white_level - cfg.black_level)
    for raw, mask in zip(raws, masks, strict=True):
        if cfg.augment:
            raw, mask = random_bayer_augment(rng, raw, mask)
        clean = np.clip((np.asarray(raw, np.float32) - cfg.black_level) * gain, 0.0, 1.0)
        noisy = clean
        if cfg.gaussian_sigma > 0 or cfg.salt_pepper_fraction > 0:
            noisy = add_noise_fast(rng, clean, float(rng.uniform(0.0, cfg.gaussian_sigma)),
                                   float(rng.uniform(0.0, cfg.salt_pepper_fraction)))
        xs.append(noisy)
        mxs.append(clean)
        scs.append(np.ascontiguousarray(mask))
        flags.append(bool(np.asarray(mask).any()))
    x = torch.from_numpy(np.stack(xs))
    clean_t = torch.from_numpy(np.stack(mxs))
    return Batch(space_to_depth(x), max_over_states(clean_t),
                 pool_truth(np.stack(scs).astype(np.float32)).unsqueeze(1),
                 torch.tensor(flags))


def add_noise_fast(rng: np.random.Generator, x: np.ndarray, gaussian_sigma: float,
                   salt_pepper_fraction: float) -> np.ndarray:
    """Gaussian + salt-and-pepper noise on a [0, 1] stack (paper 5.6), as
    `inference.preprocess.add_noise` but ~2x cheaper: float32 normals, and the salt / pepper
    positions drawn as a binomial count of indices instead of a uniform per value."""
    y = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(gaussian_sigma)
    k = int(rng.binomial(x.size, salt_pepper_fraction)) if salt_pepper_fraction > 0 else 0
    if k:
        y.reshape(-1)[rng.integers(0, x.size, k)] = rng.integers(0, 2, k).astype(np.float32)
    return np.clip(y, 0.0, 1.0, out=y)


def batch_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of batch `index` (independent streams per batch: resumable, parallel)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(index)]))


def _even(v: float) -> int:
    return int(math.floor(v / 2.0)) * 2


# --------------------------------------------------------------------------------------------
# Streaming simulated patches (world)
# --------------------------------------------------------------------------------------------

class SimPatchSource:
    """Fresh simulated patches rendered on the fly: `batch(b)` -> Batch, deterministic in b."""

    def __init__(self, sim: SimSourceConfig = SimSourceConfig(),
                 patch: PatchConfig = PatchConfig()):
        from world.sample import DefectMix
        from world.simulate import sample_seed

        self.sim, self.patch = sim, patch
        base = replace(DefectMix(), **sim.mix) if sim.mix else DefectMix()
        base = replace(base, pixel_size_mm=sim.pixel_size_mm)
        self._mix_scratch = replace(base, scratch_fraction=1.0)
        self._mix_clean = replace(base, scratch_fraction=0.0)
        self._sample_seed = sample_seed
        self.excluded = frozenset(sample_seed(s, i) for s, n in sim.exclude_series
                                  for i in range(n))
        kinds = list(sim.target_weights)
        w = np.array([max(0.0, float(sim.target_weights[k])) for k in kinds])
        if w.sum() <= 0:
            raise ValueError("target_weights must have a positive entry")
        self._targets, self._target_p = kinds, w / w.sum()
        self.stats = {"patches": 0, "redrawn_empty": 0, "seeds_skipped": 0}

    # -- seeds ---------------------------------------------------------------------------
    def seed_for(self, index: int) -> int:
        """Sample seed of global patch `index` of the training series, never a held-out one."""
        seed = self._sample_seed(self.sim.series_seed, index)
        k = 1
        while seed in self.excluded:  # astronomically rare, but make disjointness certain
            self.stats["seeds_skipped"] += 1
            seed = self._sample_seed(self.sim.series_seed, index + k * (1 << 40))
            k += 1
        return seed

    # -- one patch -----------------------------------------------------------------------
    def _renderer(self, sample: Any, rng: np.random.Generator) -> Any:
        from world.optics import DarkFieldRenderer, OpticsConfig

        optics = OpticsConfig(rig_seed=int(rng.integers(0, 64)) if self.sim.vary_rig else 0)
        p = self.patch.patch_px
        fw, fh = self.sim.field_sensor
        window = (0, 0)
        if (fw, fh) != (p, p):  # no draw for a patch-sized field: keeps that stream unchanged
            window = (_even(rng.uniform(0, fh - p + 1)), _even(rng.uniform(0, fw - p + 1)))
        return DarkFieldRenderer(sample, (p, p), self.sim.pixel_size_mm, optics, cache_rois=1,
                                 window_of=(fw, fh), window_origin_px=window)

    def _origin_around(self, rng: np.random.Generator, row: float, col: float) -> tuple[int, int]:
        p = self.patch.patch_px
        return (_even(row - rng.uniform(0.15 * p, 0.85 * p)),
                _even(col - rng.uniform(0.15 * p, 0.85 * p)))

    def scratch_patch(self, rng: np.random.Generator, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """A patch centred near a point of a scratch (where it is not broken)."""
        from world.sample import make_sample

        sample = make_sample(seed, self._mix_scratch)
        scratches = sample.of_kind("scratch")
        pix = self.sim.pixel_size_mm
        ren = self._renderer(sample, rng)
        try:
            for _ in range(self.patch.max_tries):
                sc = scratches[int(rng.integers(len(scratches)))]
                pts, _, frac = sc.centreline(max(sc.length_mm() / 400, 0.005))
                ok = np.flatnonzero(sc.profile_along(frac) > 0)
                i = int(ok[rng.integers(len(ok))]) if len(ok) else int(rng.integers(len(pts)))
                origin = self._origin_around(rng, pts[i, 1] / pix, pts[i, 0] / pix)
                truth = ren.truth(origin)
                if truth.scratch_mask.any():
                    raw = ren.render_stack(origin, exposure_us=self.sim.exposure_us)
                    return raw, truth.scratch_mask, {"seed": seed, "origin": origin,
                                                     "target": "scratch",
                                                     "amplitude_dn": sc.amplitude_dn}
        finally:
            ren.close()
        raise RuntimeError(f"sample seed {seed}: no scratch pixel found")  # pragma: no cover

    def _target_point(self, rng: np.random.Generator, sample: Any, target: str
                      ) -> tuple[float, float]:
        """(row, col) in sample px to centre a scratch-free patch on."""
        pix = self.sim.pixel_size_mm
        if target in NONSCRATCH_KINDS:
            ds = sample.of_kind(target)
            if ds:
                d = ds[int(rng.integers(len(ds)))]
                if target == "fibre":
                    pts, _, _ = d.centreline(0.05)
                    x, y = pts[int(rng.integers(len(pts)))]
                else:
                    x, y = d.centre_mm()
                return y / pix, x / pix
            target = "random"
        if target == "edge":
            w, h = sample.width_mm, sample.length_mm
            t = rng.uniform(0.0, 2 * (w + h))
            x, y = (t, 0.0) if t < w else (w, t - w) if t < w + h else \
                (t - w - h, h) if t < 2 * w + h else (0.0, t - 2 * w - h)
            return y / pix, x / pix
        return rng.uniform(0, sample.length_mm) / pix, rng.uniform(0, sample.width_mm) / pix

    def clean_patch(self, rng: np.random.Generator, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """A scratch-free patch with content, centred on a contaminant, edge or anywhere."""
        from world.sample import make_sample

        sample = make_sample(seed, self._mix_clean)
        ren = self._renderer(sample, rng)
        raw = None
        try:
            for _ in range(self.patch.max_tries):
                target = self._targets[int(rng.choice(len(self._targets), p=self._target_p))]
                origin = self._origin_around(rng, *self._target_point(rng, sample, target))
                raw = ren.render_stack(origin, exposure_us=self.sim.exposure_us)
                if not self.patch.drop_empty or has_content(raw, self.patch):
                    return raw, np.zeros(raw.shape[1:], np.uint8), {
                        "seed": seed, "origin": origin, "target": target}
                self.stats["redrawn_empty"] += 1
        finally:
            ren.close()
        assert raw is not None
        return raw, np.zeros(raw.shape[1:], np.uint8), {"seed": seed, "target": "empty"}

    def patches(self, index: int) -> tuple[list[np.ndarray], list[np.ndarray],
                                           list[dict[str, Any]], np.random.Generator]:
        """The RAW patches of batch `index` (scratch patches first) and the batch's rng."""
        rng = batch_rng(self.sim.series_seed, index)
        b = self.patch.batch_size
        raws, masks, infos = [], [], []
        for j in range(b):
            seed = self.seed_for(index * b + j)
            raw, mask, info = (self.scratch_patch(rng, seed) if j < self.patch.scratch_per_batch
                               else self.clean_patch(rng, seed))
            raws.append(raw)
            masks.append(mask)
            infos.append(info)
        self.stats["patches"] += b
        return raws, masks, infos, rng

    def batch(self, index: int) -> Batch:
        raws, masks, _, rng = self.patches(index)
        return make_batch(raws, masks, rng, self.patch)

    def describe(self) -> dict[str, Any]:
        return {"source": "world streaming (make_sample + DarkFieldRenderer, patch-sized "
                          "window of a field_sensor-sized sensor at the patch origin)",
                **self.sim.to_dict()}


# --------------------------------------------------------------------------------------------
# Patches from recordings with truth (simulated or labelled real)
# --------------------------------------------------------------------------------------------

@dataclass
class _RoiIndex:
    path: Path
    roi: int
    shape: tuple[int, int]
    scratch_px: np.ndarray  # (n, 2) rows, cols of scratch pixels (subsampled)
    anchors: np.ndarray  # (m, 2) centres of non-scratch defects (rows, cols)


class RecordingPatchSource:
    """Patches from recordings whose RoIs have truth (`/rois/NN/truth`).

    Scratch patches are centred near a random scratch pixel; scratch-free patches near a
    listed non-scratch defect (half of them) or anywhere, redrawn until they have content and
    contain no scratch pixel. Files are opened lazily in each process (DataLoader-safe).
    """

    def __init__(self, paths: Sequence[str | Path], patch: PatchConfig = PatchConfig(),
                 seed: int = 0, max_scratch_px: int = 4096):
        import recordings

        self.patch, self.seed = patch, int(seed)
        self.paths = [Path(p) for p in paths]
        self.index: list[_RoiIndex] = []
        for path in self.paths:
            with recordings.open_recording(path) as rec:
                for i in rec.roi_ids():
                    roi = rec.roi(i)
                    if not roi.has_truth:
                        continue
                    mask = roi.scratch_mask()
                    rr, cc = np.nonzero(mask)
                    if len(rr) > max_scratch_px:
                        keep = np.linspace(0, len(rr) - 1, max_scratch_px).astype(int)
                        rr, cc = rr[keep], cc[keep]
                    anchors = []
                    for d in roi.defects():
                        box = d["geometry"].get("roi_box_px")
                        if d["kind"] != "scratch" and box:
                            anchors.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
                    self.index.append(_RoiIndex(path, i, tuple(roi.shape[1:]),
                                                np.stack([rr, cc], 1),
                                                np.asarray(anchors, float).reshape(-1, 2)))
        if not self.index:
            raise ValueError("no RoI with truth in the given recordings")
        self.with_scratch = [k for k, r in enumerate(self.index) if len(r.scratch_px)]
        if patch.scratch_per_batch and not self.with_scratch:
            raise ValueError("scratch_per_batch > 0 but no recording has scratch pixels")
        self._open: dict[Path, Any] = {}

    def _roi(self, entry: _RoiIndex) -> Any:
        import recordings

        rec = self._open.get(entry.path)
        if rec is None:
            rec = self._open[entry.path] = recordings.open_recording(entry.path)
        return rec.roi(entry.roi)

    def close(self) -> None:
        for rec in self._open.values():
            rec.close()
        self._open.clear()

    def __getstate__(self) -> dict[str, Any]:  # h5py handles do not pickle: reopen per worker
        d = dict(self.__dict__)
        d["_open"] = {}
        return d

    def _crop(self, entry: _RoiIndex, origin: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """RAW and mask crops at `origin` (clamped inside the RoI, even-aligned)."""
        p = self.patch.patch_px
        h, w = entry.shape
        r0 = min(max(origin[0], 0), max(h - p, 0)) // 2 * 2
        c0 = min(max(origin[1], 0), max(w - p, 0)) // 2 * 2
        roi = self._roi(entry)
        raw = roi.raw[:, r0:r0 + p, c0:c0 + p]
        mask = roi.group["truth/scratch_mask"][r0:r0 + p, c0:c0 + p]
        if raw.shape[1:] != (p, p):  # RoI smaller than a patch: reflect-pad (keeps Bayer)
            ph, pw = p - raw.shape[1], p - raw.shape[2]
            raw = np.pad(raw, ((0, 0), (0, ph), (0, pw)), mode="reflect")
            mask = np.pad(mask, ((0, ph), (0, pw)), mode="constant")
        return raw, mask

    def _scratch_patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = self.patch.patch_px
        for _ in range(self.patch.max_tries):
            entry = self.index[self.with_scratch[int(rng.integers(len(self.with_scratch)))]]
            r, c = entry.scratch_px[int(rng.integers(len(entry.scratch_px)))]
            raw, mask = self._crop(entry, (_even(r - rng.uniform(0.15 * p, 0.85 * p)),
                                           _even(c - rng.uniform(0.15 * p, 0.85 * p))))
            if mask.any():
                return raw, mask
        raise RuntimeError("could not cut a scratch patch")  # pragma: no cover

    def _clean_patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = self.patch.patch_px
        raw = mask = None
        for _ in range(self.patch.max_tries):
            entry = self.index[int(rng.integers(len(self.index)))]
            h, w = entry.shape
            if len(entry.anchors) and rng.random() < 0.5:
                r, c = entry.anchors[int(rng.integers(len(entry.anchors)))]
                origin = (_even(r - rng.uniform(0.15 * p, 0.85 * p)),
                          _even(c - rng.uniform(0.15 * p, 0.85 * p)))
            else:
                origin = (_even(rng.uniform(0, max(h - p, 0) + 1)),
                          _even(rng.uniform(0, max(w - p, 0) + 1)))
            raw, mask = self._crop(entry, origin)
            if not mask.any() and (not self.patch.drop_empty or has_content(raw, self.patch)):
                return raw, mask
        if raw is None or mask is None or mask.any():
            raise RuntimeError("could not cut a scratch-free patch")
        return raw, mask

    def batch(self, index: int) -> Batch:
        rng = batch_rng(self.seed, index, stream=1)
        raws, masks = [], []
        for j in range(self.patch.batch_size):
            raw, mask = (self._scratch_patch(rng) if j < self.patch.scratch_per_batch
                         else self._clean_patch(rng))
            raws.append(raw)
            masks.append(mask)
        return make_batch(raws, masks, rng, self.patch)

    def describe(self) -> dict[str, Any]:
        return {"source": "recordings", "files": [p.name for p in self.paths],
                "rois_with_truth": len(self.index), "rois_with_scratch": len(self.with_scratch),
                "seed": self.seed}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

class _BatchStream(torch.utils.data.IterableDataset):
    """Batches start, start + 1, ... of a source; worker k of n draws those with b % n == k."""

    def __init__(self, source: Any, start: int, stop: int | None):
        super().__init__()
        self.source, self.start, self.stop = source, start, stop

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        k, n = (info.id, info.num_workers) if info is not None else (0, 1)
        b = self.start + k
        while self.stop is None or b < self.stop:
            yield self.source.batch(b)
            b += n


def batch_loader(source: Any, start: int = 0, stop: int | None = None, workers: int = 0,
                 prefetch: int = 2) -> Iterator[Batch]:
    """Batches `start .. stop - 1` in order. `workers` > 0 renders them in that many processes
    (torch DataLoader; its in-order delivery keeps the sequence identical to workers = 0)."""
    stream = _BatchStream(source, start, stop)
    if workers <= 0:
        return iter(stream)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                         prefetch_factor=prefetch, persistent_workers=False,
                                         worker_init_fn=_one_thread)
    return iter(loader)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


__all__ = [
    "Batch", "PatchConfig", "RecordingPatchSource", "SimPatchSource", "SimSourceConfig",
    "add_noise_fast", "batch_loader", "batch_rng", "has_content", "make_batch",
]
