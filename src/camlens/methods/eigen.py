"""Principal-component methods: EigenCAM and EigenGrad-CAM.

Both reduce channels by the first principal component
(:func:`camlens.methods.reduction.first_principal_component`, which also documents its sign
rule); they differ in what is reduced.
"""

from __future__ import annotations

import torch

from camlens.methods.registry import LayerData, Method, register

__all__ = ["eigencam", "eigengradcam"]


def eigencam(data: LayerData) -> torch.Tensor:
    """EigenCAM: first principal component of the activations (class-agnostic, no gradients).

    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
    IJCNN 2020.
    """
    return data.activations


def eigengradcam(data: LayerData) -> torch.Tensor:
    """EigenGrad-CAM: first principal component of G ⊙ A (class-discriminative).

    The gradient-weighted variant of Eigen-CAM (Muhammad & Yeasin, IJCNN 2020), as
    popularised by pytorch-grad-cam.
    """
    assert data.gradients is not None
    return data.gradients * data.activations


register(
    Method(
        name="eigencam",
        contributions=eigencam,
        needs_gradients=False,
        principal_component=True,
        label="Eigen-CAM",
        class_name="EigenCAM",
        reference="Muhammad & Yeasin, IJCNN 2020",
    )
)
register(
    Method(
        name="eigengradcam",
        contributions=eigengradcam,
        needs_gradients=True,
        principal_component=True,
        label="EigenGrad-CAM",
        class_name="EigenGradCAM",
        reference="Muhammad & Yeasin, IJCNN 2020",
    )
)
