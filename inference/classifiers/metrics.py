"""Accuracy, per-class precision / recall / F1 and the confusion matrix, as plain JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_report(true: Sequence[str], pred: Sequence[str],
                          classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Rows of ``confusion`` are true classes, columns predicted, both in ``classes`` order."""
    cls = list(classes) if classes is not None else sorted(set(true) | set(pred))
    for c in sorted(set(true) | set(pred)):
        if c not in cls:
            cls.append(c)
    ix = {c: i for i, c in enumerate(cls)}
    cm = np.zeros((len(cls), len(cls)), dtype=int)
    for t, p in zip(true, pred, strict=True):
        cm[ix[t], ix[p]] += 1
    per = {}
    for i, c in enumerate(cls):
        tp = int(cm[i, i])
        support = int(cm[i].sum())
        npred = int(cm[:, i].sum())
        prec = tp / npred if npred else 0.0
        rec = tp / support if support else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": prec, "recall": rec, "f1": f1, "support": support}
    n = int(cm.sum())
    return {"accuracy": float(np.trace(cm) / n) if n else 0.0, "n": n, "classes": cls,
            "per_class": per, "confusion": cm.tolist()}
