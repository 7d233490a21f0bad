"""FEM, the Feature Explanation Method: a gradient-free K-sigma rule on the activations.

Fuad, Martin, Giot, Bourqui, Benois-Pineau & Zemmari, "Features Understanding in 3D CNNs
for Actions Recognition in Video", IPTA 2020 (https://hal.science/hal-02963298), the
reference pytorch-grad-cam cites for its ``FEM``.

Per image and channel ``c`` of the layer's activations ``A_c`` (sums and means over the
grid, the standard deviation the population one, ``ddof = 0``):

    τ_c = mean(A_c) + k · std(A_c)             the K-sigma threshold
    M_c = [A_c > τ_c]                           binary mask of the outlier cells (strict >)
    w_c = mean(M_c)                             the fraction of cells above the threshold
    contribution_c = w_c · A_c                  (the pipeline sums channels: Σ_c w_c A_c)

This is the rule pytorch-grad-cam 1.5.7 implements (``FEM.get_cam_image``), so that the
maps agree with it: the weights are the *means of the binary masks*, and the map weights the
*activations*. A channel without any cell above its threshold (for instance a constant one)
gets weight 0. The map does not depend on the target: every target of an image gets the same
map. Works on images and volumes (the grid is 2-D or 3-D).

Option ``k`` (default 2, as upstream): how many standard deviations above the channel mean
a cell must lie to count.
"""

from __future__ import annotations

import torch

from camlens.methods.registry import LayerData, Method, Option, register

__all__ = ["fem"]


def fem(data: LayerData, k: float = 2.0) -> torch.Tensor:
    """Contribution ``w_c · A_c`` with ``w_c`` the fraction of cells of channel ``c`` above
    ``mean + k · std`` (see the module docstring)."""
    activations = data.activations
    dims = data.spatial_dims
    mean = activations.mean(dim=dims, keepdim=True)
    std = activations.std(dim=dims, keepdim=True, correction=0)
    mask = activations > mean + k * std
    return data.per_channel(mask.to(activations.dtype).mean(dim=dims))


register(
    Method(
        name="fem",
        label="FEM",
        class_name="FEM",
        reference="Fuad et al., IPTA 2020",
        contributions=fem,
        needs_gradients=False,
        options=(
            Option(
                name="k",
                kind=float,
                default=2.0,
                help="K-sigma rule: a cell counts when its activation is above the channel's "
                "mean + k · std",
            ),
        ),
    )
)
