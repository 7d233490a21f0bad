"""``pytorch_grad_cam.utils.model_targets`` → :mod:`camlens.targets`.

``FasterRCNNBoxScoreTarget`` scores a detector's output dict (``boxes``, ``labels``,
``scores``) as upstream does, and can be called on such an output; camlens's explainers
themselves explain models whose output is a score tensor, so it cannot drive a CAM of a
detector here (the error of such a call says so).
"""

from __future__ import annotations

from camlens.targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FasterRCNNBoxScoreTarget,
    FinerWeightedTarget,
    RawScoresOutputTarget,
    SemanticSegmentationTarget,
    SoftmaxOutputTarget,
)

__all__ = [
    "BinaryClassifierOutputTarget",
    "ClassifierOutputReST",
    "ClassifierOutputSoftmaxTarget",
    "ClassifierOutputTarget",
    "FasterRCNNBoxScoreTarget",
    "FinerWeightedTarget",
    "RawScoresOutputTarget",
    "SemanticSegmentationTarget",
    "SoftmaxOutputTarget",
]
