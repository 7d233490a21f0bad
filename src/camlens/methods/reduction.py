"""The channel reduction by the first principal component (EigenCAM, EigenGrad-CAM and
``eigen_smooth``): machinery the pipeline and the perturbation runners share.

The first principal component of a layer's ``(B, C, *grid)`` contributions, seen as ``N``
grid positions × ``C`` channels, is the direction in channel space along which positions
differ most; projecting each position on it gives a map. The projection is computed with a
thin SVD of the ``N × C`` matrix centred per channel (as pytorch-grad-cam does) on the
tensors' device (never an ``N × N`` matrix). An SVD's sign is arbitrary, so it is fixed
deterministically: the map is oriented to correlate positively with the plain channel sum
of the same contributions (for EigenCAM, the total activation; for EigenGrad-CAM, the
HiResCAM map).
"""

from __future__ import annotations

import torch

__all__ = ["first_principal_component"]


def first_principal_component(contributions: torch.Tensor) -> torch.Tensor:
    """``(B, C, *grid)`` → ``(B, *grid)``: projection on the first principal component."""
    batch, channels, *grid = contributions.shape
    points = contributions.reshape(batch, channels, -1).transpose(1, 2)  # (B, N, C)
    points = torch.nan_to_num(points)
    centred = points - points.mean(dim=1, keepdim=True)
    _, _, right = torch.linalg.svd(centred, full_matrices=False)  # right: (B, k, C)
    projection = centred @ right[:, 0, :].unsqueeze(-1)  # (B, N, 1)
    projection = projection.squeeze(-1)
    reference = points.sum(dim=2)
    reference = reference - reference.mean(dim=1, keepdim=True)
    agreement = (projection * reference).sum(dim=1, keepdim=True)
    # Ties (no correlation at all): orient so that the largest-magnitude entry is positive.
    peak = projection.gather(1, projection.abs().argmax(dim=1, keepdim=True))
    sign = torch.where(agreement != 0, agreement.sign(), peak.sign())
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (projection * sign).reshape(batch, *grid)
