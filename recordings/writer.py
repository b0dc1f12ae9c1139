"""Append-only writer: one RoI stack at a time, crash-safe at RoI granularity.

Crash safety comes from ordering, not from HDF5 journaling (HDF5 has none): an RoI group is
created, its data written, and only then its `sha256` attribute set and the file flushed. An RoI
without a checksum is by definition unfinished; readers ignore it and `resume` deletes it.
The root `status` stays `incomplete` until every planned RoI is flushed. The file uses the
earliest HDF5 superblock (no "file open for writing" flag), so a killed writer leaves a file that
plain h5py opens again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from recordings import schema
from recordings.errors import RecordingError
from recordings.reader import Roi, open_h5, roi_is_complete

log = logging.getLogger(__name__)

SPACE_MARGIN_BYTES = 2 * 2**20  # HDF5 metadata, truth, /results of a small recording


class DiskFull(RecordingError):
    """Not enough free space for the next RoI; nothing of it was written."""

SOFTWARE_VERSION = "0.1.0"


def raw_compression() -> dict[str, Any]:
    """Bitshuffle + LZ4 (HDF5 filter 32008): ~3x on 12-bit dark-field data at ~1 GB/s here.

    Chosen by bench/bench_recording_write.py; readers need `import hdf5plugin` (a declared
    dependency) before reading, as for any HDF5 filter plugin.
    """
    return dict(hdf5plugin.Bitshuffle(cname="lz4"))


def _now() -> str:
    """UTC time stamp; SOURCE_DATE_EPOCH (the reproducible-builds convention) fixes it, so a
    simulated data set regenerated from the same seed is the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return when.isoformat(timespec="seconds")


class RecordingWriter:
    """Writes one sample's recording. Use `create` for a new file, `resume` for an interrupted one."""

    def __init__(self, h5: h5py.File, path: Path):
        self._h5 = h5
        self._hasher: ThreadPoolExecutor | None = None  # started by the first write_roi
        self.path = path

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        sample_id: str,
        rig_config: dict[str, Any],
        n_rois: int,
        calibration_id: str = "",
        overwrite: bool = False,
    ) -> RecordingWriter:
        path = Path(path)
        schema.check_sample_id(sample_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # "x": created exclusively, so two runs can never truncate each other's file
            h5 = h5py.File(path, "w" if overwrite else "x", libver="earliest")
        except FileExistsError:
            raise RecordingError(
                f"{path} already exists; refusing to overwrite a recording "
                "(choose another sample id or output folder, or resume it with --resume)"
            ) from None
        a = h5.attrs
        a["format"] = schema.FORMAT_NAME
        a["format_version"] = schema.FORMAT_VERSION
        a["sample_id"] = sample_id
        a["created"] = _now()
        a["software_version"] = SOFTWARE_VERSION
        a["rig_config"] = json.dumps(rig_config, sort_keys=True)
        a["calibration_id"] = calibration_id
        a["n_rois"] = int(n_rois)
        a["status"] = schema.STATUS_INCOMPLETE
        h5.create_group("rois")
        h5.flush()
        return cls(h5, path)

    @classmethod
    def resume(cls, path: str | Path) -> RecordingWriter:
        """Reopen an interrupted recording for appending; unfinished RoIs are discarded."""
        path = Path(path)
        h5 = open_h5(path, mode="r+")
        try:
            rois = h5["rois"]
            n_rois = int(h5.attrs["n_rois"])
            unexpected = schema.unplanned_rois(rois, n_rois)
            if unexpected:
                raise RecordingError(
                    f"{path}: /rois has groups {unexpected} that are not among the "
                    f"{n_rois} planned RoIs (edited or damaged file); refusing to resume it")
            for name in list(rois):
                if not roi_is_complete(rois, name):
                    del rois[name]
                    continue
                try:  # what is kept must be what was written: a corrupt RoI is taken again
                    Roi(int(name), rois[name]).verified_raw()
                except RecordingError as exc:
                    log.warning("%s: %s; it is captured again", path, exc)
                    del rois[name]
            h5.attrs["status"] = schema.STATUS_INCOMPLETE
            h5.flush()
        except BaseException:
            h5.close()
            raise
        return cls(h5, path)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close; the file is marked complete only if every planned RoI is present."""
        if self._hasher is not None:
            self._hasher.shutdown(wait=True)
            self._hasher = None
        if not self._h5.id.valid:
            return
        if self._h5.mode != "r" and len(self.completed_rois()) >= self.n_rois:
            self._h5.attrs["status"] = schema.STATUS_COMPLETE
        self._h5.flush()
        self._h5.close()

    # -- state -----------------------------------------------------------------------------
    @property
    def n_rois(self) -> int:
        return int(self._h5.attrs["n_rois"])

    @property
    def sample_id(self) -> str:
        return str(self._h5.attrs["sample_id"])

    @property
    def rig_config(self) -> dict[str, Any]:
        """The station config the recording was started with."""
        try:
            value = json.loads(self._h5.attrs.get("rig_config", "{}"))
        except (TypeError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def completed_rois(self) -> list[int]:
        rois = self._h5["rois"]
        return sorted(i for n in rois if (i := schema.roi_index(n)) is not None
                      and roi_is_complete(rois, n))

    def missing_rois(self) -> list[int]:
        done = set(self.completed_rois())
        return [i for i in range(self.n_rois) if i not in done]

    def _check_space(self, nbytes: int) -> None:
        """Refuse a RoI the disk cannot hold before HDF5 starts writing it: a write that fails
        half-way leaves the HDF5 library in a state that can crash the process on close. The
        stack is never larger compressed than raw; the margin covers metadata and results."""
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return  # cannot tell (network share): let the write itself report
        need = nbytes + SPACE_MARGIN_BYTES
        if free < need:
            raise DiskFull(
                f"disk full: {free / 2**20:.1f} MB free in {self.path.parent}, a RoI needs up to "
                f"{need / 2**20:.1f} MB. Free some space (or choose another --out); what was "
                f"recorded is kept: finish it with scan --resume {self.path}")

    def read_raw(self, index: int) -> np.ndarray:
        """Read back a finished RoI's stack, checksum verified (for detecting RoIs recorded
        before a resume)."""
        name = schema.roi_name(index)
        if not roi_is_complete(self._h5["rois"], name):
            raise RecordingError(f"{self.path}: RoI {index} is not recorded")
        return Roi(index, self._h5["rois"][name]).verified_raw()

    # -- data ------------------------------------------------------------------------------
    def write_roi(
        self,
        index: int,
        raw: np.ndarray,
        *,
        stage_xy_mm: Sequence[float],
        origin_px: Sequence[int],
        pixel_size_mm: float,
        exposure_us: float,
        timestamps_s: Sequence[float],
        frame_ids: Sequence[int],
        azimuths_deg: Sequence[float] = schema.DEFAULT_AZIMUTHS_DEG,
        truth: schema.RoiTruth | None = None,
    ) -> None:
        """Append one RoI stack (n_states, H, W) uint16; durable when this returns."""
        if not 0 <= index < self.n_rois:
            raise RecordingError(f"RoI index {index} outside 0..{self.n_rois - 1}")
        if raw.ndim != 3 or raw.dtype != np.uint16:
            raise RecordingError(f"RoI stack must be (states, H, W) uint16, got {raw.shape} {raw.dtype}")
        n_states = raw.shape[0]
        for name, values in (("timestamps_s", timestamps_s), ("frame_ids", frame_ids),
                             ("azimuths_deg", azimuths_deg)):
            if len(values) != n_states:
                raise RecordingError(f"{name} has {len(values)} values for {n_states} states")
        self._check_space(raw.nbytes + (truth.scratch_mask.nbytes if truth else 0))
        rois = self._h5["rois"]
        name = schema.roi_name(index)
        if name in rois:
            if roi_is_complete(rois, name):
                raise RecordingError(f"RoI {index} is already recorded in {self.path}")
            del rois[name]
        # hashlib releases the GIL: hash on a second core while HDF5 compresses and writes.
        if self._hasher is None:  # owned by this writer: its thread ends with close()
            self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording-sha256")
        checksum = self._hasher.submit(schema.raw_checksum, raw)
        group = rois.create_group(name)
        chunks = tuple(min(c, s) for c, s in zip(schema.RAW_CHUNK, raw.shape, strict=True))
        group.create_dataset("raw", data=raw, chunks=chunks, **raw_compression())
        if truth is not None:
            self._write_truth(group, truth, raw.shape[1:])
        ga = group.attrs
        ga["bayer_pattern"] = schema.BAYER_PATTERN
        ga["bit_depth"] = schema.BIT_DEPTH
        ga["azimuths_deg"] = np.asarray(azimuths_deg, dtype="<f8")
        ga["stage_xy_mm"] = np.asarray(stage_xy_mm, dtype="<f8")
        ga["origin_px"] = np.asarray(origin_px, dtype="<i8")
        ga["pixel_size_mm"] = float(pixel_size_mm)
        ga["exposure_us"] = float(exposure_us)
        ga["timestamps_s"] = np.asarray(timestamps_s, dtype="<f8")
        ga["frame_ids"] = np.asarray(frame_ids, dtype="<i8")
        ga["written"] = _now()
        self._h5.flush()  # data and metadata on disk before the RoI is declared finished
        ga["checksum_algorithm"] = schema.CHECKSUM_ALGORITHM
        ga["checksum"] = checksum.result()
        self._h5.flush()

    @staticmethod
    def _write_truth(group: h5py.Group, truth: schema.RoiTruth, shape: tuple[int, int]) -> None:
        if truth.scratch_mask.shape != shape:
            raise RecordingError(f"scratch mask {truth.scratch_mask.shape} != frame {shape}")
        t = group.create_group("truth")
        t.create_dataset("scratch_mask", data=truth.scratch_mask.astype(np.uint8),
                         chunks=True, compression="gzip", compression_opts=1)
        table = np.zeros(len(truth.defects), dtype=schema.DEFECT_DTYPE)
        for i, d in enumerate(truth.defects):
            table[i] = (int(d.get("id", i)), str(d["kind"]), float(d.get("x_mm", np.nan)),
                        float(d.get("y_mm", np.nan)), float(d.get("length_mm", np.nan)),
                        json.dumps(d.get("geometry", {})))
        t.create_dataset("defects", data=table)

    def write_results(self, results: schema.DetectionResults) -> None:
        """Store (or replace) the detector's conclusions; raw data is never touched."""
        write_results(self._h5, results)


RESULTS_STAGING = "results.new"


def write_results(h5: h5py.File, results: schema.DetectionResults) -> None:
    """Built in a staging group, then swapped in: a failure (disk full, crash) leaves the old
    results, or none, never a half-written group under /results."""
    if RESULTS_STAGING in h5:  # left by an earlier failed attempt
        del h5[RESULTS_STAGING]
    g = h5.create_group(RESULTS_STAGING)
    g.attrs["detector"] = results.detector
    g.attrs["model_sha256"] = results.model_sha256
    g.attrs["verdict"] = results.verdict
    g.attrs["created"] = _now()
    g.attrs["timings_s"] = json.dumps(results.timings_s, sort_keys=True)
    g.attrs["probability_scale"] = int(results.probability_scale)
    g.create_dataset("scratches", data=schema.objects_to_table(results.scratches))
    g.create_dataset("contaminants", data=schema.objects_to_table(results.contaminants))
    maps = g.create_group("probability")
    for roi, p in results.probability_maps.items():
        maps.create_dataset(schema.roi_name(roi), data=np.asarray(p, dtype=np.float16),
                            chunks=True, compression="gzip", compression_opts=1)
    h5.flush()
    if "results" in h5:
        del h5["results"]
    h5.move(RESULTS_STAGING, "results")
    h5.flush()


def add_results(path: str | Path, results: schema.DetectionResults) -> None:
    """Write results into an existing recording (offline re-inference)."""
    with open_h5(Path(path), mode="r+") as h5:
        write_results(h5, results)
