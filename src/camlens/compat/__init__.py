"""pytorch-grad-cam's module tree, backed by camlens: change ``pytorch_grad_cam`` to
``camlens.compat`` in a script's imports and keep the rest.

``camlens.compat`` mirrors ``pytorch_grad_cam`` 1.5.7 module by module
(``camlens.compat.utils.model_targets``, ``camlens.compat.metrics.road``,
``camlens.compat.ablation_layer``, ...). Every public name of upstream has a name here: a
re-export of camlens's own class or function where camlens has it, a small implementation on
camlens's machinery where it had none, and a clear error naming the camlens alternative where
a name cannot be supported honestly (``AblationLayerFasterRCNN``, the
module-swapping ``ablation_cam_multilayer.AblationLayer``). The README's table lists each
name and its status; ``tests/compat`` keeps that table true.
"""

from camlens.compat.ablation_cam import AblationCAM
from camlens.compat.ablation_layer import AblationLayer, AblationLayerFasterRCNN, AblationLayerVit
from camlens.compat.activations_and_gradients import ActivationsAndGradients
from camlens.compat.feature_factorization.deep_feature_factorization import (
    DeepFeatureFactorization,
    run_dff_on_image,
)
from camlens.compat.finer_cam import FinerCAM
from camlens.compat.refine_cam import RefineCAM
from camlens.compat.sess import SESS
from camlens.familiar import (
    FEM,
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
    ShapleyCAM,
    XGradCAM,
)
from camlens.familiar_more import KPCA_CAM, GuidedBackpropReLUModel, SegEigenCAM

__all__ = [
    "FEM",
    "KPCA_CAM",
    "SESS",
    "AblationCAM",
    "AblationLayer",
    "AblationLayerFasterRCNN",
    "AblationLayerVit",
    "ActivationsAndGradients",
    "DeepFeatureFactorization",
    "EigenCAM",
    "EigenGradCAM",
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
    "ShapleyCAM",
    "XGradCAM",
    "run_dff_on_image",
]
