"""Real-data check on NEU-DET (skipped when ../shared/datasets/neu-det is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.classifiers import make_classifier
from inference.classifiers.data import DEFAULT_NEU, load_neu, split_per_class

pytestmark = pytest.mark.skipif(not (DEFAULT_NEU / "images").is_dir(),
                                reason=f"NEU data not found at {DEFAULT_NEU}")


@pytest.fixture(scope="module")
def neu():
    return load_neu(DEFAULT_NEU, size=32)


def test_neu_layout(neu):
    assert neu.images.shape[1:] == (1, 32, 32)
    assert len(neu.classes) == 6
    counts = {c: neu.labels.count(c) for c in neu.classes}
    assert len(set(counts.values())) == 1  # balanced (200 per class in the dev subset)
    assert neu.masks is not None and 0.05 < neu.masks.mean() < 0.95
    assert "rolled-in_scale" in neu.classes and "pitted_surface" in neu.classes


def test_neu_small_run_beats_chance(neu):
    tr, te = split_per_class(neu.labels, 10, seed=0)
    a, b = neu.subset(tr), neu.subset(te)
    clf = make_classifier("ce", input_size=32, epochs=15, batch_size=20, lr=3e-3)
    clf.fit(a.images, a.labels)
    sel = np.arange(0, len(b.labels), 5)
    acc = np.mean(np.array(clf.predict(b.images[sel])) == np.array(b.labels)[sel])
    assert acc > 1 / 6 + 0.15
