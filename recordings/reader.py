"""Lazy reader for any valid recording, complete or interrupted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
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


def _root_problem(h5: h5py.File) -> str:
    """What makes the root of a recording unusable, checked before anything is sized by it."""
    if "rois" not in h5 or not isinstance(h5["rois"], h5py.Group):
        return "no /rois group"
    n = h5.attrs.get("n_rois")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) \
            or not 1 <= int(n) <= schema.MAX_ROIS:
        return f"n_rois = {n!r} is not a RoI count (1..{schema.MAX_ROIS})"
    status = h5.attrs.get("status")
    if status not in (schema.STATUS_COMPLETE, schema.STATUS_INCOMPLETE):
        return f"status = {status!r} is neither {schema.STATUS_COMPLETE!r} nor " \
               f"{schema.STATUS_INCOMPLETE!r}"
    return ""


def _foreign_data(h5: h5py.File) -> str:
    """A link or dataset that would read outside this file, or loop; the format writes none.

    External links and external or virtual storage would let a crafted recording read any
    file on the machine as "raw data"; soft links can loop. Visiting links (not objects) never
    follows them, so the check itself cannot loop.
    """
    def visit(name: str, link: h5py.HardLink | h5py.SoftLink | h5py.ExternalLink) -> str | None:
        if isinstance(link, h5py.ExternalLink):
            return f"/{name} is an external link to {link.filename}"
        if isinstance(link, h5py.SoftLink):
            return f"/{name} is a soft link to {link.path}"
        try:
            obj = h5.get(name)
        except (KeyError, OSError, RuntimeError):
            return None  # a damaged object: the RoI checks report it
        if isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
            return f"/{name} keeps its data outside this file"
        return None

    return h5.visititems_links(visit) or ""


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
    try:
        problem = _header_problem(h5)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        problem = f"its HDF5 structure is damaged ({exc}); restore the file from a copy"
    if problem:
        h5.close()
        raise RecordingError(f"{path}: {problem}")
    return h5


def _header_problem(h5: h5py.File) -> str:
    """Why an open file cannot be read as a recording ("" when it can). h5py raises OSError
    or RuntimeError where the file's metadata is damaged; the caller turns those into one."""
    fmt = h5.attrs.get("format")
    if fmt != schema.FORMAT_NAME:
        return (f"not a dark-field recording (root attribute format={fmt!r}, expected "
                f"{schema.FORMAT_NAME!r})")
    version = str(h5.attrs.get("format_version", "?"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = -1
    if major != schema.SUPPORTED_MAJOR:
        return (f"format_version {version} is not supported by this software (reads "
                f"{schema.SUPPORTED_MAJOR}.x); upgrade the station software")
    problem = _root_problem(h5) or _foreign_data(h5)
    return f"{problem} (damaged or edited file; `main.py recordings verify` lists what is " \
           "wrong)" if problem else ""


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

    def verified_raw(self) -> np.ndarray:
        """The raw stack, read and checked against the SHA-256 stored when it was written (and
        its type, shape and bit depth): what inference and resume use, never unverified data."""
        where = f"RoI {self.index}"
        try:
            raw = self.raw[()]
            stored = str(self.group.attrs["checksum"])
        except (OSError, KeyError) as exc:
            raise RecordingError(f"{where}: raw data unreadable ({exc}); the file is damaged: "
                                 "scan the sample again") from None
        if raw.dtype != np.uint16 or raw.ndim != 3:
            raise RecordingError(f"{where}: raw is {raw.dtype} {raw.shape}, not a uint16 stack")
        if schema.raw_checksum(raw) != stored:
            raise RecordingError(f"{where}: checksum mismatch (raw data corrupted since it was "
                                 "written); scan the sample again or restore the file")
        if int(raw.max(initial=0)) >= 1 << schema.BIT_DEPTH:
            raise RecordingError(f"{where}: values above {schema.BIT_DEPTH} bits")
        return raw

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
        raw = self._h5.attrs.get("rig_config", "{}")
        try:
            cfg = json.loads(raw)
        except (TypeError, ValueError):
            cfg = None
        if not isinstance(cfg, dict):
            raise RecordingError(f"{self.path}: root attribute rig_config is not the station "
                                 f"config as JSON ({str(raw)[:40]!r}); the file was edited or "
                                 "damaged: pass --config to say how it was recorded")
        return cfg

    def roi_ids(self) -> list[int]:
        """Indices of finished planned RoIs (an interrupted RoI is not listed)."""
        rois = self._h5["rois"]
        planned = range(self.n_rois)
        ids = [(schema.roi_index(n), n) for n in rois]
        return sorted(i for i, n in ids if i is not None and i in planned
                      and roi_is_complete(rois, n))

    def unexpected_rois(self) -> list[str]:
        """/rois groups that are not one of the planned RoIs (edited or damaged file)."""
        return schema.unplanned_rois(self._h5["rois"], self.n_rois)

    def missing_rois(self) -> list[int]:
        """Planned RoIs without a finished recording."""
        done = set(self.roi_ids())
        return [i for i in range(self.n_rois) if i not in done]

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
        try:
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
        except (KeyError, OSError, ValueError, TypeError, AttributeError) as exc:
            raise RecordingError(f"{self.path}: /results is damaged ({exc}); run `main.py "
                                 "infer` on the file to write them again") from None


@contextmanager
def damage_reported(path: str | Path) -> Iterator[None]:
    """Read a recording's contents with h5py's errors for damaged objects (OSError,
    RuntimeError, KeyError from a corrupt header or chunk) reported as a RecordingError."""
    try:
        yield
    except (OSError, RuntimeError, KeyError) as exc:
        raise RecordingError(f"{path}: part of the file is damaged ({exc}); `main.py "
                             "recordings verify` lists what is wrong") from None


def open_recording(path: str | Path) -> Recording:
    return Recording(path)
