"""Second-stage defect-type classifiers for crops around detected objects (docs/classifiers.md).

Four methods from the seed papers plus a plain cross-entropy baseline, all behind
:class:`CropClassifier` (``fit`` / ``predict_proba`` / ``save`` / ``load``):

====== ============================ ==================================================
code   class                        paper
====== ============================ ==================================================
000    GraphTwoStageClassifier      graph-based two-stage network (Zhou et al. 2023)
001    SiameseClassifier            Siamese CE + contrastive loss (Wang et al.)
002    SclArcClassifier             self-contrastive + ArcFace, prototype database
003    PsicClassifier               PSIC-Net segmentation + classification (Lei 2021)
ce     CrossEntropyClassifier       backbone + linear, cross-entropy (002's baseline)
====== ============================ ==================================================
"""

from .base import (
    METHODS,
    CropClassifier,
    TrainConfig,
    load_classifier,
    make_classifier,
    prepare_crops,
    read_card,
    resolve_method,
)
from .baseline import CrossEntropyClassifier
from .graph_twostage import GraphTwoStageClassifier
from .psic import PsicClassifier
from .scl_arc import SclArcClassifier
from .siamese import SiameseClassifier

__all__ = [
    "METHODS",
    "CropClassifier",
    "CrossEntropyClassifier",
    "GraphTwoStageClassifier",
    "PsicClassifier",
    "SclArcClassifier",
    "SiameseClassifier",
    "TrainConfig",
    "load_classifier",
    "make_classifier",
    "prepare_crops",
    "read_card",
    "resolve_method",
]
