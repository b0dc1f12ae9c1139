"""Lazy reader for any valid recording, complete or interrupted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the Bitshuffle filter used by raw datasets)
import numpy as np

from recordings import schema
from recordings.errors import RecordingError


def roi_is_complete(rois: h5py.Group, name: str) -> bool:
    """An RoI is finished once its checksum attribute exists (it is written last)."""
    try:
        return "checksum" in rois[name].attrs and "raw" in rois[name]
    except (KeyError, OSError, RuntimeError):
        return False  # a group whose header never reached the disk


def open_h5(path: Path, mode: str = "r") -> h5py.File:
    """Open a recording file with clear errors instead of h5py tracebacks."""
    if not path.exists():
        raise RecordingError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise RecordingError(f"{path}: not an HDF5 file, so not a dark-field recording")
    try:
        h5 = h5py.File(path, mode, libver="earliest") if mode != "r" else h5py.File(path, "r")
    except OSError as exc:
        hint = "truncated or damaged (copy interrupted?)" if "truncat" in str(exc).lower() else str(exc)
        raise RecordingError(f"{path}: cannot open HDF5 file: {hint}") from None
    fmt = h5.attrs.get("format")
    if fmt != schema.FORMAT_NAME:
        h5.close()
        raise RecordingError(
            f"{path}: not a dark-field recording (root attribute format={fmt!r}, "
            f"expected {schema.FORMAT_NAME!r})"
        )
    version = str(h5.attrs.get("format_version", "?"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = -1
    if major != schema.SUPPORTED_MAJOR:
        h5.close()
        raise RecordingError(
            f"{path}: format_version {version} is not supported by this software "
            f"(reads {schema.SUPPORTED_MAJOR}.x); upgrade the station software"
        )
    if "rois" not in h5:
        h5.close()
        raise RecordingError(f"{path}: recording has no /rois group (damaged file)")
    return h5


@dataclass
class Roi:
    """One recorded RoI; `raw` and truth are h5py datasets, read only when sliced."""

    index: int
    group: h5py.Group

    @property
    def raw(self) -> h5py.Dataset:
        return self.group["raw"]

    @cached_property
    def attrs(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in self.group.attrs.items()}

    @property
    def origin_px(self) -> tuple[int, int]:
        r, c = self.group.attrs["origin_px"]
        return int(r), int(c)

    @property
    def pixel_size_mm(self) -> float:
        return float(self.group.attrs["pixel_size_mm"])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.raw.shape)

    @property
    def has_truth(self) -> bool:
        return "truth" in self.group

    def scratch_mask(self) -> np.ndarray | None:
        return self.group["truth/scratch_mask"][()] if self.has_truth else None

    def defects(self) -> list[dict[str, Any]]:
        if not self.has_truth:
            return []
        out = []
        for r in self.group["truth/defects"][()]:
            kind, geometry = (x.decode() if isinstance(x, bytes) else x
                              for x in (r["kind"], r["geometry"]))
            out.append({"id": int(r["id"]), "kind": kind, "x_mm": float(r["x_mm"]),
                        "y_mm": float(r["y_mm"]), "length_mm": float(r["length_mm"]),
                        "geometry": json.loads(geometry)})
        return out


class Recording:
    """A recording opened read-only. Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._h5 = open_h5(self.path)

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._h5.attrs)

    @property
    def sample_id(self) -> str:
        return str(self._h5.attrs["sample_id"])

    @property
    def status(self) -> str:
        return str(self._h5.attrs["status"])

    @property
    def n_rois(self) -> int:
        return int(self._h5.attrs["n_rois"])

    @cached_property
    def rig_config(self) -> dict[str, Any]:
        return json.loads(self._h5.attrs["rig_config"])

    def roi_ids(self) -> list[int]:
        """Indices of finished RoIs (an interrupted RoI is not listed)."""
        rois = self._h5["rois"]
        return sorted(int(n) for n in rois if roi_is_complete(rois, n))

    def roi(self, index: int) -> Roi:
        name = schema.roi_name(index)
        if not roi_is_complete(self._h5["rois"], name):
            raise RecordingError(f"{self.path}: RoI {index} is not recorded (have {self.roi_ids()})")
        return Roi(index, self._h5["rois"][name])

    def rois(self) -> list[Roi]:
        return [self.roi(i) for i in self.roi_ids()]

    @property
    def has_results(self) -> bool:
        return "results" in self._h5

    def results(self) -> schema.DetectionResults | None:
        if not self.has_results:
            return None
        g = self._h5["results"]
        maps = {int(n): g["probability"][n] for n in g["probability"]}
        return schema.DetectionResults(
            detector=str(g.attrs["detector"]),
            model_sha256=str(g.attrs["model_sha256"]),
            verdict=str(g.attrs["verdict"]),
            scratches=schema.table_to_objects(g["scratches"][()]),
            contaminants=schema.table_to_objects(g["contaminants"][()]),
            probability_maps=maps,  # lazy datasets; slice with [()] to read
            timings_s=json.loads(g.attrs["timings_s"]),
            probability_scale=int(g.attrs.get("probability_scale", 2)),
        )


def open_recording(path: str | Path) -> Recording:
    return Recording(path)
