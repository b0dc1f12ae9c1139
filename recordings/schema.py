"""Names, versions and table layouts of the recording format (docs/recording-format.md).

This module is the single source of truth for the on-disk contract; writer, reader and the
documentation all follow it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from recordings.errors import RecordingError

_STR = h5py.string_dtype("utf-8")

FORMAT_NAME = "darkfield-recording"
FORMAT_VERSION = "1.0"
SUPPORTED_MAJOR = 1

STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
MAX_ROIS = 2500  # a 50 x 50 grid, the most a station config allows

BAYER_PATTERN = "GRBG"
BIT_DEPTH = 12
N_STATES = 6
DEFAULT_AZIMUTHS_DEG = tuple(30.0 * k for k in range(N_STATES))

CHECKSUM_ALGORITHM = "sha256"
RAW_CHUNK = (1, 512, 1024)
"""One chunk = one state x 512 rows x 1024 cols (1 MiB raw): small enough for fast random
access to detector tiles, large enough that compression and the chunk index stay efficient."""


SAMPLE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Sample ids name files: letters, digits, '.', '_' and '-', starting with a letter or digit,
at most 64 characters (no spaces, slashes or '..' tricks; the same on every filesystem)."""


def check_sample_id(sample_id: str) -> str:
    """The id itself when it is a valid file name stem; else a RecordingError with a safe
    suggestion (never silently rewritten: the id is what the line's MES knows)."""
    if SAMPLE_ID_PATTERN.fullmatch(sample_id) and ".." not in sample_id:
        return sample_id
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", sample_id).replace("..", ".").strip("-._")[:64]
    hint = f" (for example {safe!r})" if safe else ""
    raise RecordingError(
        f"sample id {sample_id!r} cannot name a recording: use 1-64 letters, digits, '.', '_' "
        f"or '-', starting with a letter or digit{hint}")


def roi_name(index: int) -> str:
    return f"{index:02d}"


def roi_index(name: str) -> int | None:
    """The index a /rois group name stands for, None for a name the writer never makes."""
    return int(name) if name.isdigit() and len(name) <= 6 else None


def unplanned_rois(names: Iterable[str], n_rois: int) -> list[str]:
    """/rois group names that are not one of the `n_rois` planned RoIs (edited or damaged)."""
    return sorted(n for n in names if roi_index(n) not in range(n_rois))


def raw_checksum(raw: np.ndarray) -> str:
    """SHA-256 of the stack as little-endian uint16, C order (what `verify` recomputes)."""
    return hashlib.sha256(np.ascontiguousarray(raw, dtype="<u2").data).hexdigest()


DEFECT_DTYPE = np.dtype(
    [
        ("id", "<i4"),
        ("kind", _STR),
        ("x_mm", "<f8"),
        ("y_mm", "<f8"),
        ("length_mm", "<f8"),
        ("geometry", _STR),
    ]
)
"""Ground-truth defects of one RoI. `kind` is one of scratch, dust, stain, fibre; `geometry` is
JSON text (kind-specific: polyline points in sample mm, radius, ...)."""

OBJECT_DTYPE = np.dtype(
    [
        ("roi", "<i4"),
        ("row0", "<i4"),
        ("col0", "<i4"),
        ("row1", "<i4"),
        ("col1", "<i4"),
        ("x_mm", "<f8"),
        ("y_mm", "<f8"),
        ("length_mm", "<f8"),
        ("width_px", "<f8"),
        ("score", "<f8"),
        ("type", _STR),
        ("type_score", "<f8"),
    ]
)
"""One detected object (scratch or contaminant). Box in RoI pixels, half-open [row0, row1) x
[col0, col1); x_mm / y_mm is the box centre in the sample frame; `type` is the second-stage
class ("" when not typed) with its probability in `type_score` (NaN when not typed)."""


VERDICT_PASS, VERDICT_FAIL = "PASS", "FAIL"  # stored in /results; see docs/recording-format.md


@dataclass
class RoiTruth:
    """What the simulator (or a labeller) knows about an RoI."""

    scratch_mask: np.ndarray  # uint8 (H, W), 1 on scratch pixels
    defects: list[dict] = field(default_factory=list)


@dataclass
class DetectedObject:
    roi: int
    box_px: tuple[int, int, int, int]  # row0, col0, row1, col1 in RoI pixels
    x_mm: float
    y_mm: float
    length_mm: float
    width_px: float
    score: float
    type: str = ""
    type_score: float = float("nan")

    def to_json(self) -> dict[str, Any]:
        """The one JSON form of a detected object (CLI output, batch reports, `recordings show`)."""
        return {"roi": self.roi, "box_px": [int(v) for v in self.box_px],
                "x_mm": round(self.x_mm, 3), "y_mm": round(self.y_mm, 3),
                "length_mm": round(self.length_mm, 3), "width_px": round(self.width_px, 2),
                "score": round(self.score, 4), "type": self.type,
                "type_score": None if math.isnan(self.type_score) else round(self.type_score, 4)}


def verdict_of(scratches: list[DetectedObject]) -> str:
    """A sample fails when it has at least one scratch; contaminants do not fail it."""
    return VERDICT_FAIL if scratches else VERDICT_PASS


@dataclass
class DetectionResults:
    """What the detector concluded about one sample; stored under /results."""

    detector: str  # human-readable model name / card summary
    model_sha256: str
    verdict: str  # "PASS" or "FAIL"
    scratches: list[DetectedObject] = field(default_factory=list)
    contaminants: list[DetectedObject] = field(default_factory=list)
    probability_maps: dict[int, np.ndarray] = field(default_factory=dict)  # roi -> float (h, w)
    timings_s: dict[str, float] = field(default_factory=dict)
    probability_scale: int = 2  # probability map pixel = this many RAW pixels per side


def objects_to_table(objects: list[DetectedObject]) -> np.ndarray:
    table = np.zeros(len(objects), dtype=OBJECT_DTYPE)
    for i, o in enumerate(objects):
        table[i] = (o.roi, *o.box_px, o.x_mm, o.y_mm, o.length_mm, o.width_px, o.score,
                    o.type, o.type_score)
    return table


def table_to_objects(table: np.ndarray) -> list[DetectedObject]:
    out = []
    for r in table:
        kind = r["type"].decode() if isinstance(r["type"], bytes) else str(r["type"])
        out.append(
            DetectedObject(
                roi=int(r["roi"]),
                box_px=(int(r["row0"]), int(r["col0"]), int(r["row1"]), int(r["col1"])),
                x_mm=float(r["x_mm"]), y_mm=float(r["y_mm"]), length_mm=float(r["length_mm"]),
                width_px=float(r["width_px"]), score=float(r["score"]), type=kind,
                type_score=float(r["type_score"]),
            )
        )
    return out
