"""camlens: fast, torch-native Class Activation Maps for classification and segmentation.

Familiar API (pytorch-grad-cam compatible)::

    from camlens import HiResCAM
    from camlens.targets import SemanticSegmentationTarget
    with HiResCAM(model=model, target_layers=[model.encoder.layer4]) as cam:
        grayscale_cam = cam(input_tensor=x, targets=targets)[0, :]

Richer API: ``cam.explain(x, targets)`` or ``camlens.explain(model, x, method=..., layers=...)``
return an :class:`Explanation` with signed raw maps on the model's device.
"""

from camlens.api import explain
from camlens.base import BaseCAM
from camlens.cams import (
    CAM,
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    SegXResCAM,
    XGradCAM,
)
from camlens.explanation import Explanation
from camlens.methods import available_methods
from camlens.segmentation import SegmentationExplanation, explain_segmentation

__version__ = "0.1.0"

__all__ = [
    "CAM",
    "AblationCAM",
    "BaseCAM",
    "EigenCAM",
    "EigenGradCAM",
    "Explanation",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "SegXResCAM",
    "SegmentationExplanation",
    "XGradCAM",
    "__version__",
    "available_methods",
    "explain",
    "explain_segmentation",
]
