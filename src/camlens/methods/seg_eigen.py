"""Seg-Eigen-CAM: Eigen-CAM of the activations weighted by the gradients' magnitudes.

Chung & Ying, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic
Segmentation Models", Applied Sciences 15(13):7562, 2025 (doi:10.3390/app15137562), the
reference pytorch-grad-cam 1.5.7 cites for its ``SegEigenCAM``. The contributions are
``|G| ⊙ A`` (eq. 10: every gradient, of either sign, weights its cell, where Grad-CAM
averages them away), reduced by the first principal component (eq. 11–12) — the shared
reduction of :mod:`camlens.methods.reduction`.

**The sign.** An SVD's sign is arbitrary. The paper (eq. 13) flips the projection when
``|min| > |max|``. camlens keeps its one rule for every principal-component method: the map
is oriented to correlate positively with the plain channel sum of the contributions,
``Σ_c |G_c| A_c`` — the target's gradient-weighted evidence, so the cells that matter for the
target (the class mask of a segmentation target) come out positive. The two rules agree
whenever the salient cells are the larger-magnitude end of the component; maps are compared
with pytorch-grad-cam up to sign (``bench/compare_gradcam.py``).
"""

from __future__ import annotations

import torch

from camlens.methods.registry import LayerData, Method, register

__all__ = ["segeigencam"]


def segeigencam(data: LayerData) -> torch.Tensor:
    """Contributions ``|G| ⊙ A``; the pipeline takes their first principal component."""
    assert data.gradients is not None, "Seg-Eigen-CAM called without gradients"
    return data.gradients.abs() * data.activations


register(
    Method(
        name="segeigencam",
        contributions=segeigencam,
        needs_gradients=True,
        principal_component=True,
        label="Seg-Eigen-CAM",
        class_name="SegEigenCAM",
        reference="Chung & Ying, Applied Sciences 15(13):7562, 2025",
    )
)
