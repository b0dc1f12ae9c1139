"""Simulated recordings: virtual samples rendered RoI by RoI and written with ground truth.

The RoI layout, stage positions and the stored `rig_config` come from the station
configuration (rig.config / rig.layout), so a simulated recording looks exactly like one the
simulated bench scan would write; frames use the same frame-counter seeding as the bench
camera (frame id = RoI index x 6 + state), and the clock is simulated too, so the same seed
gives the same data and truth bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recordings import RecordingError, RecordingWriter
from rig.config import StationConfig, parse_config
from rig.geometry import grid_overlap_px
from rig.layout import roi_layout
from world.optics import N_STATES, DarkFieldRenderer, OpticsConfig
from world.sample import DefectMix, Sample, make_sample

FRAME_PERIOD_S = 0.08  # exposure 20 ms + readout 60 ms (rig.config camera defaults)
MOVE_S = 1.0  # simulated stage move + settle between RoIs


def sample_seed(seed: int, index: int) -> int:
    """Seed of the index-th sample of a simulated series (independent streams per sample)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def sample_id(seed: int, index: int) -> str:
    return f"SIM-{int(seed)}-{int(index):04d}"


def station_for(sensor: tuple[int, int], pixel_size_mm: float, seed: int, mix: DefectMix,
                base: StationConfig | None = None) -> StationConfig:
    """The simulated station: `base` (default profile) with this sensor, pitch and seed."""
    data = base.to_json_dict() if base is not None else {}
    data.setdefault("camera", {}).update(width=int(sensor[0]), height=int(sensor[1]),
                                         backend="sim")
    data.setdefault("scan", {}).update(pixel_size_mm=float(pixel_size_mm))
    data.setdefault("sim", {}).update(seed=int(seed), scratch_fraction=float(mix.scratch_fraction))
    return parse_config(data, "simulate")


def simulate_recordings(
    out_dir: str | Path,
    n_samples: int,
    seed: int = 0,
    sensor: tuple[int, int] = (3504, 3120),
    *,
    pixel_size_mm: float | None = None,
    mix: DefectMix | None = None,
    optics: OpticsConfig | None = None,
    station: StationConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
    defects_in_view: bool = True,
) -> list[Path]:
    """Write one recording per virtual sample into `out_dir`; returns their paths.

    A sensor smaller than the default keeps the pixel size, so the same RoI grid sees smaller
    fields of view (gaps between RoIs): fast test data. Then, with `defects_in_view`, defects
    are placed inside the RoIs' fields of view so a scratched sample shows its scratch (the
    number of defects per RoI stays about what a full-size RoI sees). `station` supplies the
    sample size, grid, overlap and exposure (default: the bundled sim profile).
    """
    mix = mix or DefectMix()
    base = station or parse_config({}, "simulate")
    pix = float(pixel_size_mm if pixel_size_mm is not None else base.scan.pixel_size_mm)
    cfg = station_for(sensor, pix, seed, mix, base)
    optics = optics or OpticsConfig(black_level_dn=float(cfg.camera.black_level_dn))
    rois = roi_layout(cfg)
    out = Path(out_dir)
    taken = [out / f"{sample_id(seed, i)}.h5" for i in range(n_samples)
             if (out / f"{sample_id(seed, i)}.h5").exists()]
    if taken and not overwrite:
        raise RecordingError(f"{taken[0]} already exists ({len(taken)} of the {n_samples} "
                             "recordings); choose another output folder or seed, or overwrite")
    out.mkdir(parents=True, exist_ok=True)
    exposure = float(cfg.camera.exposure_us)
    regions = view_regions_mm(rois) if defects_in_view and min(grid_overlap_px(
        [(0, 0, *r.origin_px) for r in rois], *sensor)) < 0 else None
    paths: list[Path] = []

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("RoIs"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("simulating", total=n_samples * len(rois))
        for i in range(n_samples):
            sid = sample_id(seed, i)
            sample = make_sample(sample_seed(seed, i), mix, sample_id=sid,
                                 width_mm=cfg.sample.width_mm, length_mm=cfg.sample.length_mm,
                                 corner_radius_mm=cfg.sample.corner_radius_mm,
                                 regions_mm=regions)
            bar.update(task, description=f"{sid} ({'scratched' if sample.has_scratch else 'clean'})")
            path = out / f"{sid}.h5"
            paths.append(path)
            write_sample_recording(path, sample, cfg, optics, rois, exposure, overwrite,
                                   on_roi=lambda: bar.advance(task))
    return paths


def view_regions_mm(rois, margin_mm: float = 0.3) -> list[tuple[float, float, float, float]]:
    """Each RoI's field of view in sample mm (x0, y0, x1, y1), shrunk by `margin_mm`."""
    out = []
    for r in rois:
        (r0, c0), (h, w), p = r.origin_px, r.size_px, r.pixel_size_mm
        out.append((c0 * p + margin_mm, r0 * p + margin_mm, (c0 + w) * p - margin_mm,
                    (r0 + h) * p - margin_mm))
    return out


def write_sample_recording(path: Path, sample: Sample, cfg: StationConfig, optics: OpticsConfig,
                           rois, exposure_us: float, overwrite: bool = False,
                           on_roi=None) -> None:
    """Render every RoI of one sample (6 states each) and write it with its truth."""
    sensor = (cfg.camera.width, cfg.camera.height)
    renderer = DarkFieldRenderer(sample, sensor, cfg.scan.pixel_size_mm, optics)
    try:
        with RecordingWriter.create(path, sample_id=sample.sample_id, rig_config=cfg.to_json_dict(),
                                    n_rois=len(rois), overwrite=overwrite) as w:
            for roi in rois:
                first = roi.index * N_STATES
                stack = renderer.render_stack(roi.origin_px, frame_counter=first,
                                              exposure_us=exposure_us)
                t0 = roi.index * (MOVE_S + N_STATES * FRAME_PERIOD_S)
                w.write_roi(
                    roi.index, stack, stage_xy_mm=roi.stage_xy_mm, origin_px=roi.origin_px,
                    pixel_size_mm=roi.pixel_size_mm, exposure_us=exposure_us,
                    timestamps_s=[round(t0 + k * FRAME_PERIOD_S, 6) for k in range(N_STATES)],
                    frame_ids=[first + k for k in range(N_STATES)],
                    truth=renderer.truth(roi.origin_px),
                )
                if on_roi is not None:
                    on_roi()
    finally:
        renderer.close()


def parse_sensor(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), both even and positive."""
    try:
        w, h = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"sensor size must look like 3504x3120, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise ValueError(f"sensor size must be two positive even numbers, got {text!r}")
    return w, h
