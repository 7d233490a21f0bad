"""Gradient-weighted CAM methods: contributions from activations A and gradients G = dy/dA.

Notation: ``A`` and ``G`` are ``(B, C, *grid)``; sums ``Σ`` without index run over the grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from camlens.methods.registry import LayerData, Method, Option, register

__all__ = ["PLUSPLUS_EPSILON", "POOL_SIZE", "XGRAD_EPSILON"]

#: Stabilisers in the denominators of Grad-CAM++ and XGrad-CAM: the values pytorch-grad-cam
#: 1.5 uses, so that maps agree with it.
PLUSPLUS_EPSILON = 1e-6
XGRAD_EPSILON = 1e-7


def _gradients(data: LayerData) -> torch.Tensor:
    assert data.gradients is not None, "gradient method called without gradients"
    return data.gradients


def gradcam(data: LayerData) -> torch.Tensor:
    """Grad-CAM: channel weight = mean of G over the grid; contribution = weight · A.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017, eq. 1–2 (without the final ReLU, which the pipeline applies).
    """
    return data.per_channel(_gradients(data).mean(dim=data.spatial_dims))


def hirescam(data: LayerData) -> torch.Tensor:
    """HiResCAM: contribution = G ⊙ A, element-wise.

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", 2020 (arXiv:2011.08891). For a CNN ending in global
    average pooling and one linear layer, the map summed over the grid equals the target
    logit minus its bias.
    """
    return _gradients(data) * data.activations


def gradcam_elementwise(data: LayerData) -> torch.Tensor:
    """Grad-CAM element-wise: contribution = ReLU(G ⊙ A).

    The variant of HiResCAM that keeps only positive element-wise evidence before summing
    channels (as in pytorch-grad-cam's ``GradCAMElementWise``; see Draelos & Carin 2020).
    """
    return torch.relu(_gradients(data) * data.activations)


def gradcam_plusplus(data: LayerData) -> torch.Tensor:
    """Grad-CAM++: weight = Σ α ⊙ ReLU(G), with α = G² / (2G² + ΣA · G³).

    Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
    Networks", WACV 2018, eq. 19 with the higher-order derivatives of an exponential score
    written as powers of the first; α is zero where G is zero.
    """
    grads = _gradients(data)
    dims = data.spatial_dims
    squared = grads.pow(2)
    activation_sum = data.activations.sum(dim=dims, keepdim=True)
    alpha = squared / (2 * squared + activation_sum * squared * grads + PLUSPLUS_EPSILON)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return data.per_channel((alpha * torch.relu(grads)).sum(dim=dims))


def xgradcam(data: LayerData) -> torch.Tensor:
    """XGrad-CAM: weight = Σ (A / ΣA) ⊙ G.

    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
    CNNs", BMVC 2020, eq. 10 (weights that satisfy sensitivity and conservation).
    """
    dims = data.spatial_dims
    activations = data.activations
    normalised = activations / (activations.sum(dim=dims, keepdim=True) + XGRAD_EPSILON)
    return data.per_channel((_gradients(data) * normalised).sum(dim=dims))


def layercam(data: LayerData) -> torch.Tensor:
    """LayerCAM: contribution = ReLU(G) ⊙ A.

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 2021, eq. 5–6.
    """
    return torch.relu(_gradients(data)) * data.activations


def segxrescam(data: LayerData, pool_size: int = 2) -> torch.Tensor:
    """Seg-XRes-CAM: contribution = blockmean_s(G) ⊙ A, gradients averaged in s × s blocks.

    Hasany, Petitjean & Mériaudeau, "Seg-XRes-CAM: Explaining Spatially Local Regions in
    Image Segmentation", CVPR Workshops 2023. Pooling the gradient in blocks before the
    element-wise product keeps spatial information at the block scale: ``pool_size=1`` is
    HiResCAM, a block covering the whole grid is Grad-CAM. Blocks at the grid's far edges may
    be partial; they average the cells they contain. (The authors' released code max-pools
    by default and pads partial blocks with zeros; camlens averages, so that the two limits
    above hold exactly on any grid.)
    """
    if pool_size < 1:
        raise ValueError(f"`pool_size` must be a positive integer, got {pool_size}")
    grads = _gradients(data)
    grid = grads.shape[2:]
    if pool_size == 1:
        return grads * data.activations
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(grid)]
    pooled = pool(grads, kernel_size=pool_size, stride=pool_size, ceil_mode=True)
    for axis, length in enumerate(grid, start=2):
        pooled = pooled.repeat_interleave(pool_size, dim=axis).narrow(axis, 0, length)
    return pooled * data.activations


#: Seg-XRes-CAM's block size, declared once for the registry, the CLI and ``camlens methods``.
POOL_SIZE = Option(
    name="pool_size",
    kind=int,
    default=2,
    minimum=1,
    help="gradients are averaged in pool_size × pool_size blocks (1 = HiResCAM)",
)

for _name, _function, _label, _class_name, _reference, _options in [
    ("gradcam", gradcam, "Grad-CAM", "GradCAM", "Selvaraju et al., ICCV 2017", ()),
    (
        "hirescam",
        hirescam,
        "HiResCAM",
        "HiResCAM",
        "Draelos & Carin, arXiv:2011.08891, 2020",
        (),
    ),
    (
        "gradcam_elementwise",
        gradcam_elementwise,
        "Grad-CAM element-wise",
        "GradCAMElementWise",
        "Draelos & Carin, 2020",
        (),
    ),
    (
        "gradcam++",
        gradcam_plusplus,
        "Grad-CAM++",
        "GradCAMPlusPlus",
        "Chattopadhay et al., WACV 2018",
        (),
    ),
    ("xgradcam", xgradcam, "XGrad-CAM", "XGradCAM", "Fu et al., BMVC 2020", ()),
    ("layercam", layercam, "LayerCAM", "LayerCAM", "Jiang et al., IEEE TIP 2021", ()),
    (
        "segxrescam",
        segxrescam,
        "Seg-XRes-CAM",
        "SegXResCAM",
        "Hasany et al., CVPR Workshops 2023",
        (POOL_SIZE,),
    ),
]:
    register(
        Method(
            name=_name,
            label=_label,
            class_name=_class_name,
            reference=_reference,
            contributions=_function,
            needs_gradients=True,
            options=_options,
        )
    )
