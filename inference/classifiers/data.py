"""Loading labelled crops: the NEU surface-defect layout and per-class small-data splits.

NEU-DET layout (``../shared/datasets/neu-det``): ``images/<class>_<n>.jpg`` (416 x 416, the
original 200 x 200 grayscale upscaled and stored as RGB) and ``annotations/<class>_<n>.xml``
(PASCAL VOC boxes in the original 200 x 200 frame). Class names may contain "-" or "_"
("rolled-in_scale", "pitted_surface"): the class is everything before the last "_".
The data is read in place and never copied into the repository.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from errors import DatasetError

_NAME = re.compile(r"^(?P<cls>.+)_(?P<num>\d+)$")
NEU_ORIGINAL_SIZE = 200
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_NEU = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "neu-det"
"""``../shared/datasets/neu-det`` relative to the repository root (/work/main)."""


@dataclass
class LabelledCrops:
    images: np.ndarray  # (N, C, S, S) float32 (0..255 for NEU)
    labels: list[str]
    names: list[str]  # file stems, e.g. "crazing_1"
    masks: np.ndarray | None  # (N, S, S) float32 in {0, 1}, or None

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabelledCrops:
        ii = np.asarray(idx, dtype=int)
        return LabelledCrops(self.images[ii], [self.labels[i] for i in ii],
                             [self.names[i] for i in ii],
                             None if self.masks is None else self.masks[ii])


def _sort_key(path: Path) -> tuple[str, int]:
    m = _NAME.match(path.stem)
    return (m["cls"], int(m["num"])) if m else (path.stem, 0)


def _voc_mask(xml_path: Path, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    try:
        root = ET.parse(xml_path).getroot()
        w = float(root.findtext("size/width") or NEU_ORIGINAL_SIZE)
        h = float(root.findtext("size/height") or NEU_ORIGINAL_SIZE)
        boxes = [tuple(float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
                 for box in root.iter("bndbox")]
    except (ET.ParseError, ValueError) as exc:
        raise DatasetError(f"{xml_path}: not a readable VOC annotation ({exc}); fix or remove "
                           "it") from None
    if not (np.isfinite([w, h]).all() and w > 0 and h > 0 and np.isfinite(boxes).all()):
        raise DatasetError(f"{xml_path}: image size {w} x {h} or a box is not a positive "
                           "finite number; fix or remove the annotation")
    for x0, y0, x1, y1 in boxes:
        c0, c1 = int(np.floor(x0 / w * size)), int(np.ceil((x1 + 1) / w * size))
        r0, r1 = int(np.floor(y0 / h * size)), int(np.ceil((y1 + 1) / h * size))
        mask[max(r0, 0):min(r1, size), max(c0, 0):min(c1, size)] = 1.0
    return mask


def load_neu(root: str | Path, size: int = 64, with_masks: bool = True) -> LabelledCrops:
    """Read every ``images/<class>_<n>.jpg`` (or .png / .bmp) as grayscale, resized to ``size`` x ``size``
    (Pillow, antialiased), with box masks from ``annotations/`` when present."""
    from PIL import Image

    root = Path(root)
    files = sorted((f for f in (root / "images").glob("*")
                    if f.suffix.lower() in IMAGE_SUFFIXES), key=_sort_key)
    if not files:
        raise DatasetError(f"{root}: no images/<class>_<n>.jpg (or .png / .bmp) found; pass "
                           "--data with a folder in the NEU-DET layout")
    imgs, labels, names, masks = [], [], [], []
    have_ann = with_masks and (root / "annotations").is_dir()
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            continue
        try:  # Pillow refuses decompression bombs (> 179 Mpx) by itself
            with Image.open(f) as im:
                g = im.convert("L").resize((size, size), Image.Resampling.BILINEAR,
                                           reducing_gap=None)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"{f}: not a readable image ({exc}); replace or remove it") \
                from None
        imgs.append(np.asarray(g, dtype=np.float32))
        labels.append(m["cls"])
        names.append(f.stem)
        if have_ann:
            xml = root / "annotations" / f"{f.stem}.xml"
            masks.append(_voc_mask(xml, size) if xml.exists() else np.zeros((size, size),
                                                                             np.float32))
    return LabelledCrops(np.stack(imgs)[:, None], labels, names,
                         np.stack(masks) if have_ann else None)


def split_per_class(labels: Sequence[str], k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed 002's small-data protocol: k random images per class for training, the rest test.

    ``k <= 0`` puts everything in the training set. Deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    lab = np.asarray(labels)
    train, test = [], []
    for c in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(lab == c))
        kk = len(idx) if k <= 0 else k
        if kk > len(idx):
            raise DatasetError(f"class {c!r} has {len(idx)} images, fewer than the {k} per "
                               "class asked for; lower --per-class")
        train.append(idx[:kk])
        test.append(idx[kk:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
