"""The public method classes, named as in pytorch-grad-cam.

Each class only names its registry entry; the formula and its paper live with the method
function in :mod:`camlens.methods`, the machinery in :class:`~camlens.base.BaseCAM`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from camlens.base import BaseCAM
from camlens.layers import LayerSpec
from camlens.reshape import ReshapeTransform

__all__ = [
    "CAM",
    "EigenCAM",
    "EigenGradCAM",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "SegXResCAM",
    "XGradCAM",
]


class CAM(BaseCAM):
    """CAM (Zhou et al., CVPR 2016): classifier weights × activations; needs GAP + linear."""

    method_name = "cam"


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al., ICCV 2017): gradients averaged per channel × activations."""

    method_name = "gradcam"


class HiResCAM(BaseCAM):
    """HiResCAM (Draelos & Carin 2020): gradients × activations element-wise; faithful for
    CNNs ending in global pooling + one linear layer."""

    method_name = "hirescam"


class GradCAMElementWise(BaseCAM):
    """Grad-CAM element-wise: ReLU(gradients × activations) summed over channels."""

    method_name = "gradcam_elementwise"


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018): higher-order-weighted positive gradients."""

    method_name = "gradcam++"


class XGradCAM(BaseCAM):
    """XGrad-CAM (Fu et al., BMVC 2020): activation-normalised gradient weights."""

    method_name = "xgradcam"


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al., IEEE TIP 2021): positive gradients × activations element-wise."""

    method_name = "layercam"


class EigenCAM(BaseCAM):
    """EigenCAM (Muhammad & Yeasin, IJCNN 2020): first principal component of activations."""

    method_name = "eigencam"


class EigenGradCAM(BaseCAM):
    """EigenGrad-CAM: first principal component of gradients × activations."""

    method_name = "eigengradcam"


class SegXResCAM(BaseCAM):
    """Seg-XRes-CAM (Hasany et al., CVPRW 2023): gradients averaged in ``pool_size`` ×
    ``pool_size`` blocks, then × activations element-wise (1 = HiResCAM, grid = Grad-CAM)."""

    method_name = "segxrescam"

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        use_cuda: bool | None = None,
        *,
        pool_size: int = 2,
    ) -> None:
        super().__init__(
            model,
            target_layers,
            reshape_transform,
            use_cuda,
            method_options={"pool_size": pool_size},
        )
