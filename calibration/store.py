"""Calibration data and its on-disk format (HDF5, one versioned file per calibration).

A calibration is a *complete set*: dark frames (per exposure), flat field (per illumination
state), stage/camera registration and LED balance, any of which may be absent. Re-running one
step writes a new file that carries the other parts over from its parent, so one id names
exactly what a scan used. Files are never rewritten; `parent_id` chains them, so "what changed"
is always answerable. See docs/calibration.md for the layout.

No pickle anywhere: arrays are HDF5 datasets, metadata are attributes and JSON text.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from errors import CalibrationError

FORMAT_NAME = "darkfield-calibration"
FORMAT_VERSION = 1
SOFTWARE_VERSION = "0.1.0"
DEFAULT_DIR = Path("calibrations")
"""Where calibrations go when the station config has no `paths.calibrations`."""
DARK_SCALE = 16
"""Dark frames are stored as uint16 in 1/16 DN (exact to 0.03 DN; 12-bit x 16 fits in 16 bits)."""
_COMPRESS = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


# -- the parts ----------------------------------------------------------------------------------
@dataclass
class DarkFrame:
    """Mean of `n_frames` frames with every facet off, at one exposure."""

    exposure_us: float
    mean: np.ndarray  # float32 (H, W), DN (black level and hot pixels included)
    hot_pixels: np.ndarray  # int64 flat indices (row * W + col)
    n_frames: int
    measured: str
    method: str = ""
    stats: dict[str, float] = field(default_factory=dict)  # black_dn, read_noise_dn, threshold

    @property
    def shape(self) -> tuple[int, int]:
        return self.mean.shape  # type: ignore[return-value]


@dataclass
class FlatField:
    """Relative gain per illumination state, sensor pixel and Bayer phase.

    Stored as block means of each Bayer plane (`grid`: (states, 4 phases, ny, nx), phase
    2 * row_parity + col_parity) at node positions `rows` / `cols` (plane pixels); the full
    map is their piecewise-linear interpolation (the illumination is smooth, and a block of
    8 x 8 plane pixels averages the shot noise of the reference away). Each phase is scaled so
    its mean over all states and pixels is 1: dividing by the gain keeps the RAW colour balance
    and the mean level, and equalises the states.
    """

    grid: np.ndarray  # float32 (S, 4, ny, nx)
    rows: np.ndarray  # float64 (ny,) node rows in the Bayer plane
    cols: np.ndarray  # float64 (nx,)
    shape: tuple[int, int]  # sensor (H, W)
    exposure_us: float
    facet_levels: tuple[int, ...]  # ring-light PWM the reference was taken with
    n_frames: int
    measured: str
    method: str = ""
    stats: dict[str, Any] = field(default_factory=dict)  # per state: raw and residual figures

    def gain(self, state: int) -> np.ndarray:
        """Full-resolution gain map (H, W) float32 of one state."""
        h, w = self.shape
        out = np.empty((h, w), np.float32)
        for phase in range(4):
            i, j = divmod(phase, 2)
            ny, nx = len(range(i, h, 2)), len(range(j, w, 2))
            out[i::2, j::2] = (_interp_matrix(self.rows, ny)
                               @ self.grid[state, phase].astype(np.float64)
                               @ _interp_matrix(self.cols, nx).T)
        return out

    @property
    def n_states(self) -> int:
        return int(self.grid.shape[0])


def _interp_matrix(nodes: np.ndarray, n: int) -> np.ndarray:
    """(n, len(nodes)) weights of piecewise-linear interpolation at 0..n-1, extrapolating the
    end segments linearly (gain maps keep their slope out to the sensor edge)."""
    nodes = np.asarray(nodes, dtype=np.float64)
    m = len(nodes)
    x = np.arange(n, dtype=np.float64)
    out = np.zeros((n, m))
    if m == 1:
        out[:, 0] = 1.0
        return out
    k = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, m - 2)
    t = (x - nodes[k]) / (nodes[k + 1] - nodes[k])
    out[np.arange(n), k] = 1.0 - t
    out[np.arange(n), k + 1] = t
    return out


@dataclass
class Registration:
    """Stage/camera registration: how stage moves map to image shifts.

    `matrix` J (2 x 2, px per stage mm): a stage move d = (dx, dy) mm shifts the image content
    by J d = (d_col, d_row) px. For a similarity, J = -R(rotation) / pixel_size: the stage's +x
    travel runs at `rotation_deg` in the sensor frame (from the column axis towards the row
    axis), and `pixel_size_mm` is the sample-plane pitch in stage millimetres.
    """

    matrix: np.ndarray  # float64 (2, 2)
    pixel_size_mm: float
    rotation_deg: float
    nominal_pixel_size_mm: float
    residual_px: float  # RMS of the fit over the positions
    n_positions: int
    measured: str
    method: str = ""
    stats: dict[str, Any] = field(default_factory=dict)  # anisotropy, skew, offsets, shifts

    @property
    def pixel_size_error(self) -> float:
        """Measured / nominal pixel size - 1."""
        return self.pixel_size_mm / self.nominal_pixel_size_mm - 1.0


@dataclass
class LedBalance:
    """Ring-light PWM levels that give every state the same mean on the reference."""

    levels: tuple[int, ...]  # 12 facets, PWM 0..255
    facet_response: np.ndarray  # (12,) mean DN above dark per PWM count, one facet lit
    state_means_before: np.ndarray  # (6,) DN above dark with the previous levels
    state_means_after: np.ndarray  # (6,) DN above dark with `levels`
    levels_before: tuple[int, ...]
    measured: str
    method: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def spread(means: np.ndarray) -> float:
        """(max - min) / mean of state means."""
        m = np.asarray(means, dtype=np.float64)
        return float((m.max() - m.min()) / m.mean()) if m.size and m.mean() > 0 else float("nan")

    @property
    def spread_before(self) -> float:
        return self.spread(self.state_means_before)

    @property
    def spread_after(self) -> float:
        return self.spread(self.state_means_after)


@dataclass
class Calibration:
    """One complete calibration set of a station (any part may be missing)."""

    calibration_id: str
    station: str
    created: str  # ISO 8601, UTC
    sensor_shape: tuple[int, int]  # (H, W)
    black_level_dn: float
    parent_id: str = ""
    software_version: str = SOFTWARE_VERSION
    dark: dict[float, DarkFrame] = field(default_factory=dict)  # by exposure_us
    flat: FlatField | None = None
    registration: Registration | None = None
    leds: LedBalance | None = None
    updated: tuple[str, ...] = ()  # parts measured for this id (the rest came from the parent)
    notes: str = ""

    @property
    def parts(self) -> tuple[str, ...]:
        out = ["dark"] if self.dark else []
        out += [p for p in ("flat", "registration", "leds") if getattr(self, p) is not None]
        return tuple(out)

    def dark_for(self, exposure_us: float, rel_tol: float = 0.01) -> DarkFrame | None:
        """The dark frame taken at this exposure (within 1 %), else None."""
        for e, d in self.dark.items():
            if abs(e - exposure_us) <= rel_tol * max(exposure_us, 1e-9):
                return d
        return None

    def derive(self, station: str | None = None, now: datetime | None = None) -> Calibration:
        """A new calibration id that starts as a copy of this one (its parent)."""
        now = now or datetime.now(UTC)
        st = station or self.station
        return Calibration(new_calibration_id(st, now), st, _iso(now), self.sensor_shape,
                           self.black_level_dn, parent_id=self.calibration_id,
                           dark=dict(self.dark), flat=self.flat,
                           registration=self.registration, leds=self.leds)


def _iso(t: datetime) -> str:
    """ISO 8601 UTC with microseconds: calibrations made within one second still sort."""
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def now_iso() -> str:
    return _iso(datetime.now(UTC))


def new_calibration_id(station: str, now: datetime | None = None) -> str:
    """`<station>-<UTC yyyymmddThhmmssZ>-<4 hex>`: sortable by time, unique, file-name safe."""
    now = now or datetime.now(UTC)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", station).strip("-") or "station"
    return f"{safe}-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def new_calibration(station: str, sensor_shape: tuple[int, int], black_level_dn: float,
                    parent: Calibration | None = None) -> Calibration:
    """A fresh calibration id for a station: a copy of `parent` (if given and compatible)."""
    if parent is not None and tuple(parent.sensor_shape) == tuple(sensor_shape):
        cal = parent.derive(station)
        cal.black_level_dn = black_level_dn
        return cal
    now = datetime.now(UTC)
    return Calibration(new_calibration_id(station, now), station, _iso(now),
                       (int(sensor_shape[0]), int(sensor_shape[1])), float(black_level_dn),
                       parent_id=parent.calibration_id if parent is not None else "")


# -- writing ------------------------------------------------------------------------------------
def _attrs(obj: h5py.Group | h5py.Dataset, **values: Any) -> None:
    for k, v in values.items():
        if isinstance(v, dict | list | tuple) and k not in ("levels", "levels_before",
                                                           "facet_levels", "shape",
                                                           "sensor_shape", "updated"):
            obj.attrs[k] = json.dumps(_jsonable(v))
        else:
            obj.attrs[k] = _jsonable(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def calibration_path(directory: str | Path, calibration_id: str) -> Path:
    return Path(directory) / f"{calibration_id}.h5"


def save_calibration(cal: Calibration, directory: str | Path) -> Path:
    """Write `<directory>/<calibration_id>.h5` (never overwrites; written to a temporary name
    first, so a crash leaves no half file under the real name)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = calibration_path(directory, cal.calibration_id)
    if path.exists():
        raise CalibrationError(f"{path} exists; calibration files are never overwritten")
    tmp = path.with_suffix(".h5.part")
    with h5py.File(tmp, "w") as f:
        _attrs(f, format=FORMAT_NAME, format_version=FORMAT_VERSION,
               calibration_id=cal.calibration_id, station=cal.station, created=cal.created,
               software_version=cal.software_version, parent_id=cal.parent_id,
               sensor_shape=list(cal.sensor_shape), black_level_dn=float(cal.black_level_dn),
               parts=list(cal.parts), updated=list(cal.updated), notes=cal.notes)
        if cal.dark:
            g = f.create_group("dark")
            for e in sorted(cal.dark):
                d = cal.dark[e]
                sub = g.create_group(f"{float(e):.1f}")
                fixed = np.clip(np.rint(d.mean.astype(np.float64) * DARK_SCALE), 0, 65535)
                ds = sub.create_dataset("mean", data=fixed.astype(np.uint16),
                                        chunks=_chunks(d.shape), **_COMPRESS)
                ds.attrs["scale"] = DARK_SCALE
                ds.attrs["units"] = f"DN / {DARK_SCALE}"
                sub.create_dataset("hot_pixels", data=np.asarray(d.hot_pixels, np.int64))
                _attrs(sub, exposure_us=float(d.exposure_us), n_frames=int(d.n_frames),
                       measured=d.measured, method=d.method, stats=d.stats)
        if cal.flat is not None:
            fl = cal.flat
            g = f.create_group("flat")
            g.create_dataset("grid", data=fl.grid.astype(np.float32), **_COMPRESS)
            g.create_dataset("rows", data=np.asarray(fl.rows, np.float64))
            g.create_dataset("cols", data=np.asarray(fl.cols, np.float64))
            _attrs(g, shape=list(fl.shape), exposure_us=float(fl.exposure_us),
                   facet_levels=list(fl.facet_levels), n_frames=int(fl.n_frames),
                   measured=fl.measured, method=fl.method, stats=fl.stats,
                   phases="2 * row parity + col parity (GRBG: 0 G, 1 R, 2 B, 3 G)")
        if cal.registration is not None:
            r = cal.registration
            g = f.create_group("registration")
            g.create_dataset("matrix", data=np.asarray(r.matrix, np.float64))
            _attrs(g, pixel_size_mm=float(r.pixel_size_mm), rotation_deg=float(r.rotation_deg),
                   nominal_pixel_size_mm=float(r.nominal_pixel_size_mm),
                   residual_px=float(r.residual_px), n_positions=int(r.n_positions),
                   measured=r.measured, method=r.method, stats=r.stats,
                   matrix_meaning="image shift (col, row) px = matrix @ stage move (x, y) mm")
        if cal.leds is not None:
            led = cal.leds
            g = f.create_group("leds")
            g.create_dataset("facet_response", data=np.asarray(led.facet_response, np.float64))
            g.create_dataset("state_means_before",
                             data=np.asarray(led.state_means_before, np.float64))
            g.create_dataset("state_means_after", data=np.asarray(led.state_means_after,
                                                                  np.float64))
            _attrs(g, levels=list(led.levels), levels_before=list(led.levels_before),
                   measured=led.measured, method=led.method, stats=led.stats)
    tmp.replace(path)
    return path


def _chunks(shape: tuple[int, int]) -> tuple[int, int]:
    return (min(shape[0], 256), min(shape[1], 1024))


# -- reading ------------------------------------------------------------------------------------
def _json_attr(obj: Any, key: str, default: Any = None) -> Any:
    v = obj.attrs.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def _str(obj: Any, key: str, default: str = "") -> str:
    v = obj.attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _ints(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in np.asarray(v).ravel())


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file; raises CalibrationError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: no such calibration file; `main.py calibrate all` "
                               "makes one (or pass the right --calibration)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CalibrationError(f"{path}: not a readable HDF5 file ({exc}); re-run the "
                               "calibration") from None
    with f:
        if _str(f, "format") != FORMAT_NAME:
            raise CalibrationError(f"{path}: not a calibration file (format="
                                   f"{_str(f, 'format') or None!r}, expected {FORMAT_NAME!r})")
        version = int(f.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise CalibrationError(f"{path}: format_version {version} is newer than this "
                                   f"software reads ({FORMAT_VERSION}); upgrade the software")
        cal = Calibration(
            calibration_id=_str(f, "calibration_id"), station=_str(f, "station"),
            created=_str(f, "created"), sensor_shape=_ints(f.attrs["sensor_shape"])[:2],
            black_level_dn=float(f.attrs.get("black_level_dn", 64.0)),
            parent_id=_str(f, "parent_id"), software_version=_str(f, "software_version"),
            updated=tuple(str(x.decode() if isinstance(x, bytes) else x)
                          for x in np.atleast_1d(f.attrs.get("updated", []))),
            notes=_str(f, "notes"))
        if "dark" in f:
            for name in f["dark"]:
                g = f["dark"][name]
                scale = float(g["mean"].attrs.get("scale", DARK_SCALE))
                mean = (g["mean"][()].astype(np.float32) / np.float32(scale))
                d = DarkFrame(float(g.attrs["exposure_us"]), mean,
                              g["hot_pixels"][()].astype(np.int64), int(g.attrs["n_frames"]),
                              _str(g, "measured"), _str(g, "method"),
                              _json_attr(g, "stats", {}) or {})
                cal.dark[d.exposure_us] = d
        if "flat" in f:
            g = f["flat"]
            cal.flat = FlatField(g["grid"][()].astype(np.float32), g["rows"][()], g["cols"][()],
                                 _ints(g.attrs["shape"])[:2], float(g.attrs["exposure_us"]),
                                 _ints(g.attrs["facet_levels"]), int(g.attrs["n_frames"]),
                                 _str(g, "measured"), _str(g, "method"),
                                 _json_attr(g, "stats", {}) or {})
        if "registration" in f:
            g = f["registration"]
            cal.registration = Registration(
                g["matrix"][()], float(g.attrs["pixel_size_mm"]), float(g.attrs["rotation_deg"]),
                float(g.attrs["nominal_pixel_size_mm"]), float(g.attrs["residual_px"]),
                int(g.attrs["n_positions"]), _str(g, "measured"), _str(g, "method"),
                _json_attr(g, "stats", {}) or {})
        if "leds" in f:
            g = f["leds"]
            cal.leds = LedBalance(
                _ints(g.attrs["levels"]), g["facet_response"][()],
                g["state_means_before"][()], g["state_means_after"][()],
                _ints(g.attrs["levels_before"]), _str(g, "measured"), _str(g, "method"),
                _json_attr(g, "stats", {}) or {})
    return cal


def list_calibrations(directory: str | Path, station: str | None = None
                      ) -> list[tuple[str, str, Path]]:
    """(created, calibration_id, path) of the calibration files in a folder, oldest first
    (only headers are read)."""
    out = []
    for p in sorted(Path(directory).glob("*.h5")):
        try:
            with h5py.File(p, "r") as f:
                if _str(f, "format") != FORMAT_NAME:
                    continue
                if station is not None and _str(f, "station") != station:
                    continue
                out.append((_str(f, "created"), _str(f, "calibration_id"), p))
        except OSError:
            continue
    out.sort()
    return out


def latest_calibration(directory: str | Path, station: str | None = None) -> Calibration | None:
    """The newest calibration of a station in a folder, or None."""
    found = list_calibrations(directory, station)
    return load_calibration(found[-1][2]) if found else None


def find_calibration(directory: str | Path, calibration_id: str) -> Calibration:
    """The calibration with this id (as a recording's `calibration_id` names it)."""
    path = calibration_path(directory, calibration_id)
    if path.is_file():
        return load_calibration(path)
    for _, cid, p in list_calibrations(directory):
        if cid == calibration_id:
            return load_calibration(p)
    raise CalibrationError(f"no calibration {calibration_id!r} in {directory}")


def calibration_dir(cfg: Any, out: Path | None) -> Path:
    """The calibrations folder: `out`, else the station's [paths] calibrations."""
    return Path(out or getattr(cfg.paths, "calibrations", None) or DEFAULT_DIR)
