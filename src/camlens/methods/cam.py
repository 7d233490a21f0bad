"""CAM: the original class activation map, from the classifier's weights.

Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, eq. 2:
for a network ending in global average pooling and one linear layer, the map of class k
is ``Σ_c W[k, c] · A_c``. No gradients are needed; the linear layer is named by the user
or found as the last ``nn.Linear`` whose input size equals the layer's channel count.
"""

from __future__ import annotations

import torch

from camlens.methods.registry import LayerData, Method, register

__all__ = ["cam"]


def cam(data: LayerData) -> torch.Tensor:
    """CAM contribution: ``W[k, c] · A_c`` for each image's target class ``k``."""
    assert data.class_weights is not None, "CAM called without class weights"
    return data.per_channel(data.class_weights)


register(
    Method(
        name="cam",
        contributions=cam,
        needs_gradients=False,
        needs_class_weights=True,
        title="CAM",
        reference="Zhou et al., CVPR 2016",
    )
)
