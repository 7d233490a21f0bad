"""camlens: fast, torch-native Class Activation Maps for classification and segmentation.

Familiar API (pytorch-grad-cam compatible)::

    from camlens import HiResCAM
    from camlens.targets import SemanticSegmentationTarget
    with HiResCAM(model=model, target_layers=[model.encoder.layer4]) as cam:
        grayscale_cam = cam(input_tensor=x, targets=targets)[0, :]

Richer API: ``cam.explain(x, targets)``, ``camlens.explain(model, x, method=..., layers=...)``
or ``camlens.Explainer(model, layers, method)`` return an :class:`Explanation` with signed raw
maps on the model's device; ``camlens.explain_segmentation`` explains every class of a
segmentation from one forward pass.
"""

from importlib.metadata import PackageNotFoundError, version

from camlens.api import explain
from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.familiar import (
    CAM,
    FEM,
    AblationCAM,
    BaseCAM,
    EigenCAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    RandomCAM,
    ScoreCAM,
    SegXResCAM,
    ShapleyCAM,
    XGradCAM,
)
from camlens.familiar_more import (
    KPCA_CAM,
    DeepFeatureFactorization,
    FinerCAM,
    GuidedBackpropReLUModel,
    SegEigenCAM,
    finer_targets,
    guided_backprop,
    guided_gradcam,
)
from camlens.methods import available_methods
from camlens.segmentation import SegmentationExplanation, explain_segmentation
from camlens.sess import SESS, sess
from camlens.wrappers import RefineCAM, noise_tunnel, refine_cam

try:
    __version__ = version("camlens")  # the one version source: pyproject.toml
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CAM",
    "FEM",
    "KPCA_CAM",
    "SESS",
    "AblationCAM",
    "BaseCAM",
    "DeepFeatureFactorization",
    "EigenCAM",
    "EigenGradCAM",
    "Explainer",
    "Explanation",
    "FinerCAM",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "GuidedBackpropReLUModel",
    "HiResCAM",
    "LayerCAM",
    "RandomCAM",
    "RefineCAM",
    "ScoreCAM",
    "SegEigenCAM",
    "SegXResCAM",
    "SegmentationExplanation",
    "ShapleyCAM",
    "XGradCAM",
    "__version__",
    "available_methods",
    "explain",
    "explain_segmentation",
    "finer_targets",
    "guided_backprop",
    "guided_gradcam",
    "noise_tunnel",
    "refine_cam",
    "sess",
]
