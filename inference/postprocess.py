"""Scratch map -> objects (seed paper 004, section 5.5).

Paper procedure: p = max(y, 0); threshold at T_low = 0.25; cluster the kept pixels with DBSCAN
at 1/8 of the original resolution (eps = 25, min_samples = 16); discard a cluster unless its
maximum p >= T_high = 0.75 (two-threshold / hysteresis rule). Each remaining cluster is one
scratch. Strongly negative output marks bright non-scratch objects (contaminants), which the
auto-encoder target taught the network to reproduce with an inverted sign. One extension,
off by default: ``min_high_px`` = k asks for k map pixels >= T_high instead of the maximum, so
a single noise pixel in a cloud of faint responses cannot seed a scratch.

Reading of "1/8 resolution": the map is at 1/2 of the RAW (space-to-depth), so it is reduced by
a further 4 x 4 to reach 1/8 of the RAW. A low-resolution cell is kept if any map pixel in it is
>= T_low, and (``weighted=True``, default) carries as DBSCAN sample weight the number of such map
pixels, so min_samples = 16 counts map pixels, as a full-resolution DBSCAN would, instead of
cells. Without weights a short scratch (< ~16 cells = 1.5 mm) could never contain a core point
and would be dropped as noise, though the sim renders scratches from 0.5 mm.

Two implementations give identical labels (`method`):
- ``"dbscan"``: `sklearn.cluster.DBSCAN` on the kept cells (the paper's formulation).
- ``"fast"``: the same definition computed with image operations: the weighted neighbour count of
  every cell is one convolution (FFT when large) of the cell-weight image with the eps-disc, or
  KD-tree pair sums when there are few cells; core cells are those with count >= min_samples;
  cores are joined if within eps (8-connected cores are joined by `ndimage.label`, and only
  their boundary cells can be the closest pair between two groups, so a KD-tree pair query on
  boundary cores finishes the connected components); border cells take the lowest
  numbered reachable cluster, as scikit-learn's expansion order does. A plain "dilate by eps and
  label" is not used: on a pixel grid it cannot reproduce "distance <= eps" exactly.
``bench/bench_postprocess.py`` compares them; "fast" is the default because it gave identical
labels and objects on every test and benchmark map, and is faster on all of them (1.5-2x on
typical RoI maps, ~40x on maps with large false-positive areas, where DBSCAN's neighbour lists
grow as n x points-within-eps).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage, signal
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

PAPER_T_LOW = 0.25
PAPER_T_HIGH = 0.75
PAPER_CLUSTER_DOWNSAMPLE = 8
PAPER_DBSCAN_EPS = 25.0
PAPER_DBSCAN_MIN_SAMPLES = 16


@dataclass(frozen=True)
class PostprocessParams:
    """All post-processing settings; stored in the model card and overridable in config."""

    t_low: float = PAPER_T_LOW
    t_high: float = PAPER_T_HIGH
    cluster_downsample: int = PAPER_CLUSTER_DOWNSAMPLE
    """DBSCAN grid relative to RAW pixels (paper: 8 times smaller than the original)."""
    eps: float = PAPER_DBSCAN_EPS
    """DBSCAN neighbourhood radius in cells of the DBSCAN grid."""
    min_samples: int = PAPER_DBSCAN_MIN_SAMPLES
    min_high_px: int = 1
    """A cluster is a scratch when at least this many of its map pixels reach T_high (the
    paper: 1, its maximum). More than 1 stops an isolated noise pixel from seeding a scratch
    in a cloud of faint responses; the cluster's score is its `min_high_px`-th largest p."""
    weighted: bool = True
    """Weight each cell by its number of kept map pixels (see module docstring)."""
    method: str = "fast"
    """"fast" (image-operation formulation) or "dbscan" (scikit-learn); identical results."""
    map_scale: int = 2
    """RAW pixels per map pixel (space-to-depth q)."""
    contaminant_threshold: float = 0.3
    """A contaminant (bright non-scratch object) has some map pixel with y <= -this ..."""
    contaminant_grow_threshold: float = 0.1
    """... and extends over the connected pixels with y <= -this (hysteresis, as for scratches:
    a faint fibre crosses the strong threshold only in pieces)."""
    contaminant_min_area: int = 2
    """Smallest contaminant in map pixels (1 map px = 2 x 2 RAW px); drops isolated hot pixels."""
    measure_bin_px: float = 4.0
    """Bin length in map px along the principal axis when measuring length and width."""
    measure_min_part_px: int = 4
    """A cluster's box, length and width are measured on its connected parts (1-px gaps bridged)
    of at least this many map pixels: with eps = 25 cells (200 RAW px), isolated false-positive
    pixels near a scratch join its cluster and would otherwise inflate its box and length."""

    def __post_init__(self) -> None:
        if self.method not in ("fast", "dbscan"):
            raise ValueError(f"method must be 'fast' or 'dbscan', not {self.method!r}")
        if self.cluster_downsample % self.map_scale:
            raise ValueError("cluster_downsample must be a multiple of map_scale")
        if not 0 <= self.t_low <= self.t_high:
            raise ValueError("need 0 <= t_low <= t_high")
        if self.min_high_px < 1:
            raise ValueError("min_high_px must be at least 1")

    @property
    def cell(self) -> int:
        """Map pixels per DBSCAN cell side."""
        return self.cluster_downsample // self.map_scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PostprocessParams:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown post-processing keys {sorted(unknown)}")
        return cls(**d)


@dataclass
class Detection:
    """One scratch or contaminant of one RoI. Pixel values are RoI RAW pixels.

    Sample-frame fields are filled by `with_origin` (the detector knows the RoI origin).
    """

    kind: str  # "scratch" or "contaminant"
    box_px: tuple[int, int, int, int]  # row0, col0, row1, col1, half-open
    centroid_px: tuple[float, float]  # row, col
    length_px: float
    width_px: float
    angle_deg: float  # principal direction, from +x (columns) towards +y (rows), 0..180
    score: float  # scratch: max p; contaminant: max(-y)
    mean_score: float
    area_px: int
    roi: int = -1
    x_mm: float = math.nan  # box centre in the sample frame (as recordings' object tables)
    y_mm: float = math.nan
    length_mm: float = math.nan
    pixel_size_mm: float = math.nan
    sample_box_px: tuple[int, int, int, int] | None = None  # box in the sample pixel frame
    extra: dict[str, Any] = field(default_factory=dict)

    def with_origin(self, origin_px: tuple[int, int], pixel_size_mm: float, roi: int = -1
                    ) -> Detection:
        """Copy with sample-frame position (origin_px = RoI top-left (row, col) in sample px)."""
        r0, c0 = origin_px
        b = self.box_px
        sb = (b[0] + r0, b[1] + c0, b[2] + r0, b[3] + c0)
        return replace(
            self, roi=roi, pixel_size_mm=pixel_size_mm, sample_box_px=sb,
            x_mm=(sb[1] + sb[3]) / 2 * pixel_size_mm,
            y_mm=(sb[0] + sb[2]) / 2 * pixel_size_mm,
            length_mm=self.length_px * pixel_size_mm,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box_px"], d["centroid_px"] = list(self.box_px), list(self.centroid_px)
        if self.sample_box_px is not None:
            d["sample_box_px"] = list(self.sample_box_px)
        return d


def scratch_probability(y: np.ndarray, activation: str = "tanh") -> np.ndarray:
    """p = max(y, 0) for tanh models (paper); the sigmoid output itself for BCE models."""
    y = np.asarray(y, dtype=np.float32)
    return np.maximum(y, 0.0) if activation == "tanh" else y


# --------------------------------------------------------------------------------------------
# Clustering
# --------------------------------------------------------------------------------------------

@dataclass
class CellGrid:
    """The kept cells of the DBSCAN grid, in row-major order (the order both methods use)."""

    shape: tuple[int, int]
    coords: np.ndarray  # (n, 2) int row, col
    weights: np.ndarray  # (n,) float64
    cell_max: np.ndarray  # (n,) max p of the cell


def make_cells(p: np.ndarray, params: PostprocessParams) -> CellGrid:
    """Reduce p (map resolution) to the DBSCAN grid: keep cells with any p >= T_low."""
    f = params.cell
    h, w = p.shape
    hh, ww = -(-h // f), -(-w // f)
    kept = np.asarray(p) >= params.t_low
    if not kept.any():
        return CellGrid((hh, ww), np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0))
    if (h, w) != (hh * f, ww * f):
        kept = np.pad(kept, ((0, hh * f - h), (0, ww * f - w)))
    # reduce the contiguous axis first: much faster than one reduction over axes (1, 3)
    count = kept.reshape(hh, f, ww, f).sum(axis=3, dtype=np.int32).sum(axis=1)
    coords = np.argwhere(count > 0)
    cmax = np.empty(len(coords), np.float32)
    for k, (r, c) in enumerate(coords):
        cmax[k] = p[r * f:(r + 1) * f, c * f:(c + 1) * f].max()
    weights = (count[coords[:, 0], coords[:, 1]].astype(np.float64) if params.weighted
               else np.ones(len(coords)))
    return CellGrid((hh, ww), coords, weights, cmax)


def _disc(eps: float) -> np.ndarray:
    r = int(math.floor(eps))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ((yy * yy + xx * xx) <= eps * eps).astype(np.float64)


def labels_dbscan(cells: CellGrid, params: PostprocessParams) -> np.ndarray:
    """scikit-learn DBSCAN on the kept cells; -1 = noise."""
    if len(cells.coords) == 0:
        return np.zeros(0, np.int64)
    from sklearn.cluster import DBSCAN

    db = DBSCAN(eps=params.eps, min_samples=params.min_samples)
    return db.fit_predict(cells.coords.astype(np.float64), sample_weight=cells.weights)


def labels_fast(cells: CellGrid, params: PostprocessParams) -> np.ndarray:
    """The same labels as `labels_dbscan`, from image operations (see module docstring)."""
    n = len(cells.coords)
    labels = np.full(n, -1, np.int64)
    if n == 0:
        return labels
    eps = params.eps
    # weighted neighbour counts: KD-tree pair sums when few cells, else one image convolution
    # (FFT when large) of the cells' weights with the eps-disc, on their bounding box
    lo = cells.coords.min(axis=0)
    hi = cells.coords.max(axis=0)
    local = cells.coords - lo
    grid = np.zeros(tuple(hi - lo + 1), np.float64)
    grid[local[:, 0], local[:, 1]] = cells.weights
    disc = _disc(eps)
    if n * min(n, disc.sum()) < 5e6:  # few cells: direct pair sums beat an image convolution
        pairs = cKDTree(local).query_pairs(eps, output_type="ndarray")
        counts = cells.weights.copy()
        if len(pairs):
            counts += np.bincount(pairs[:, 0], cells.weights[pairs[:, 1]], minlength=n)
            counts += np.bincount(pairs[:, 1], cells.weights[pairs[:, 0]], minlength=n)
    else:
        density = (signal.fftconvolve(grid, disc, mode="same") if grid.size * disc.size > 4e6
                   else ndimage.convolve(grid, disc, mode="constant"))
        counts = density[local[:, 0], local[:, 1]]
    if np.all(cells.weights == np.rint(cells.weights)):
        counts = np.rint(counts)  # integer weights: remove FFT round-off exactly
    core = counts >= params.min_samples
    if not core.any():
        return labels
    # connected components of cores: 8-neighbours first, then boundary pairs within eps
    core_img = np.zeros(grid.shape, bool)
    core_img[local[core, 0], local[core, 1]] = True
    comp_img, n_comp = ndimage.label(core_img, structure=np.ones((3, 3), bool))
    interior = ndimage.binary_erosion(core_img, structure=np.ones((3, 3), bool),
                                      border_value=0)
    bnd = np.argwhere(core_img & ~interior)
    bnd_comp = comp_img[bnd[:, 0], bnd[:, 1]] - 1
    tree = cKDTree(bnd)
    pairs = tree.query_pairs(eps, output_type="ndarray")
    if len(pairs):
        a, b = bnd_comp[pairs[:, 0]], bnd_comp[pairs[:, 1]]
        keep = a != b
        graph = coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])),
                           shape=(n_comp, n_comp))
        _, comp_of = connected_components(graph, directed=False)
    else:
        comp_of = np.arange(n_comp)
    cluster_of_core = comp_of[comp_img[local[core, 0], local[core, 1]] - 1]
    # number clusters by their first core in row-major order (scikit-learn's order)
    core_idx = np.flatnonzero(core)
    first = np.full(cluster_of_core.max() + 1, n, np.int64)
    np.minimum.at(first, cluster_of_core, core_idx)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels[core] = rank[cluster_of_core]
    # border cells: the lowest-numbered cluster with a core within eps
    border = np.flatnonzero(~core)
    if len(border):
        bnd_label = rank[comp_of[bnd_comp]]
        hits = tree.query_ball_point(local[border], eps)
        for i, h in zip(border, hits, strict=True):
            if h:
                labels[i] = int(bnd_label[h].min())
    return labels


def cluster_cells(p: np.ndarray, params: PostprocessParams) -> tuple[CellGrid, np.ndarray]:
    cells = make_cells(p, params)
    fn = labels_fast if params.method == "fast" else labels_dbscan
    return cells, fn(cells, params)


# --------------------------------------------------------------------------------------------
# Measuring objects
# --------------------------------------------------------------------------------------------

def measure(rows: np.ndarray, cols: np.ndarray, bin_px: float = 4.0
            ) -> tuple[float, float, float]:
    """Length, width (map px) and angle (deg) of a thin, possibly curved or broken object.

    The pixels are binned along their principal axis; the length is the polyline through the
    bins' mean positions (gaps of a broken scratch count, as one scratch), the width the median
    number of pixels per unit length over the bins (gaps do not dilute it).
    """
    n = len(rows)
    if n == 0:
        return 0.0, 0.0, 0.0
    pts = np.stack([rows, cols], axis=1).astype(np.float64)
    mean = pts.mean(axis=0)
    d = pts - mean
    if n < 3:
        ext = float(np.ptp(d, axis=0).max()) + 1.0
        return ext, n / ext, 0.0
    cov = d.T @ d / n
    evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, 1]  # (drow, dcol)
    angle = math.degrees(math.atan2(major[0], major[1])) % 180.0
    t = d @ major
    u = d @ evecs[:, 0]
    tmin = t.min()
    b = np.floor((t - tmin) / bin_px).astype(np.int64)
    cnt = np.bincount(b).astype(np.float64)
    nz = cnt > 0
    mt = np.bincount(b, t)[nz] / cnt[nz]
    mu = np.bincount(b, u)[nz] / cnt[nz]
    length = float(np.hypot(np.diff(mt), np.diff(mu)).sum()) + (mt[0] - tmin) + (t.max() - mt[-1]) + 1.0
    per = cnt[nz] / bin_px
    if len(per) >= 3:
        per = per[1:-1]  # end bins are partly empty
    width = float(max(1.0, min(np.median(per), n / length)))
    return length, width, angle


def _detection(kind: str, rr: np.ndarray, cc: np.ndarray, score_vals: np.ndarray,
               params: PostprocessParams, shape_raw: tuple[int, int] | None) -> Detection:
    s = params.map_scale
    length, width, angle = measure(rr, cc, params.measure_bin_px)
    r0, c0 = int(rr.min()) * s, int(cc.min()) * s
    r1, c1 = (int(rr.max()) + 1) * s, (int(cc.max()) + 1) * s
    if shape_raw is not None:
        r1, c1 = min(r1, shape_raw[0]), min(c1, shape_raw[1])
    wts = np.maximum(score_vals, 1e-6)
    cr = float((rr * wts).sum() / wts.sum() + 0.5) * s
    ccen = float((cc * wts).sum() / wts.sum() + 0.5) * s
    return Detection(kind=kind, box_px=(r0, c0, r1, c1), centroid_px=(cr, ccen),
                     length_px=length * s, width_px=width * s, angle_deg=angle,
                     score=float(score_vals.max()), mean_score=float(score_vals.mean()),
                     area_px=int(len(rr)) * s * s)


def _main_parts(rr: np.ndarray, cc: np.ndarray, min_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the connected parts (8-connectivity, 1-px gaps bridged) with >= min_px pixels;
    all pixels if no part is that large."""
    if min_px <= 1 or len(rr) < min_px:
        return rr, cc
    r0, c0 = rr.min(), cc.min()
    img = np.zeros((rr.max() - r0 + 1, cc.max() - c0 + 1), bool)
    img[rr - r0, cc - c0] = True
    lab, n = ndimage.label(ndimage.binary_dilation(img, np.ones((3, 3), bool)),
                           structure=np.ones((3, 3), bool))
    own = lab[rr - r0, cc - c0]
    sizes = np.bincount(own, minlength=n + 1)
    keep = sizes[own] >= min_px
    return (rr[keep], cc[keep]) if keep.any() else (rr, cc)


def cluster_score(values: np.ndarray, min_high_px: int = 1) -> float:
    """The value the hysteresis rule compares with T_high: the `min_high_px`-th largest p of
    the cluster (its maximum for 1); 0 for a cluster with fewer pixels."""
    if len(values) < min_high_px:
        return 0.0
    return float(np.partition(values, len(values) - min_high_px)[len(values) - min_high_px])


def find_scratches(p: np.ndarray, params: PostprocessParams = PostprocessParams(),
                   raw_shape: tuple[int, int] | None = None) -> list[Detection]:
    """Two-threshold clustering of a probability map (map resolution) into scratches."""
    cells, labels = cluster_cells(p, params)
    out: list[Detection] = []
    if len(labels) == 0 or labels.max() < 0:
        return out
    f = params.cell
    for lab in range(int(labels.max()) + 1):
        member = labels == lab
        if cells.cell_max[member].max() < params.t_high:
            continue  # hysteresis: no pixel of the cluster reaches T_high
        rr_all, cc_all = [], []
        for (cr, cc) in cells.coords[member]:
            block = p[cr * f:(cr + 1) * f, cc * f:(cc + 1) * f]
            r, c = np.nonzero(block >= params.t_low)
            rr_all.append(r + cr * f)
            cc_all.append(c + cc * f)
        rr, cc = np.concatenate(rr_all), np.concatenate(cc_all)
        score = cluster_score(p[rr, cc], params.min_high_px)
        if score < params.t_high:
            continue
        rr, cc = _main_parts(rr, cc, params.measure_min_part_px)
        det = _detection("scratch", rr, cc, p[rr, cc], params, raw_shape)
        det.score = score  # the T_high test's value, even if its pixels are in a dropped part
        det.extra["cluster"] = lab
        out.append(det)
    out.sort(key=lambda d: -d.score)
    return out


EDGE_FRACTION = 0.5  # a contaminant region this much on the edge mask is the glass edge


def find_contaminants(y: np.ndarray, params: PostprocessParams = PostprocessParams(),
                      raw_shape: tuple[int, int] | None = None,
                      edge_mask: np.ndarray | None = None) -> list[Detection]:
    """Connected regions of strongly negative output (dust, stains, fibres, glare).

    edge_mask (map resolution): True outside the glass or on its outline; a region lying
    mostly there is the glass edge, not a contaminant, and is not listed.
    """
    y = np.asarray(y, dtype=np.float32)
    grow = y <= -min(params.contaminant_grow_threshold, params.contaminant_threshold)
    lab, _ = ndimage.label(grow, structure=np.ones((3, 3), bool))
    out: list[Detection] = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        rr, cc = np.nonzero(lab[sl] == i)
        if len(rr) < params.contaminant_min_area:
            continue
        if y[sl][rr, cc].min() > -params.contaminant_threshold:
            continue  # hysteresis: never strongly negative
        rr, cc = rr + sl[0].start, cc + sl[1].start
        if edge_mask is not None and edge_mask[rr, cc].mean() >= EDGE_FRACTION:
            continue
        out.append(_detection("contaminant", rr, cc, -y[rr, cc], params, raw_shape))
    out.sort(key=lambda d: -d.score)
    return out


def postprocess(y: np.ndarray, params: PostprocessParams = PostprocessParams(),
                activation: str = "tanh", raw_shape: tuple[int, int] | None = None,
                edge_mask: np.ndarray | None = None
                ) -> tuple[np.ndarray, list[Detection], list[Detection]]:
    """Network output map (map resolution) -> (p, scratches, contaminants). Scratches are
    never masked: one that reaches the glass edge still fails the sample."""
    p = scratch_probability(y, activation)
    scratches = find_scratches(p, params, raw_shape)
    contaminants = (find_contaminants(y, params, raw_shape, edge_mask) if activation == "tanh"
                    else [])
    return p, scratches, contaminants
