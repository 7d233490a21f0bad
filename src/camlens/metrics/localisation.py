"""Localisation of a map against a mask: how much of the positive evidence lies inside.

The share of positive map mass inside a mask is the energy-based pointing game of Wang et
al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks", CVPR
Workshops 2020 (§4.2): ``Σ_{mask} relu(m) / Σ relu(m)``. It is 1 when all positive evidence
is inside, the mask's area fraction for a uniform map, and undefined (NaN) for a map with no
positive mass.
"""

from __future__ import annotations

import torch

from camlens.postprocess import upsample

__all__ = ["positive_mass_in_mask"]


def positive_mass_in_mask(
    maps: torch.Tensor, masks: torch.Tensor, spatial_dims: int = 2
) -> torch.Tensor:
    """Share of the positive mass of ``maps`` inside ``masks``.

    Args:
        maps: ``(..., *grid)`` signed maps at any resolution; upsampled (bilinear, half-pixel
            centres) to the masks' size when they differ.
        masks: ``(..., *spatial)`` masks with the same leading shape as ``maps``; bool, or
            float weights where > 0 counts as inside.
        spatial_dims: how many trailing axes are spatial (2 for images, 3 for volumes).

    Returns:
        ``(...)`` shares in [0, 1]; NaN where a map has no positive mass.
    """
    size = tuple(masks.shape[-spatial_dims:])
    leading = maps.shape[:-spatial_dims]
    if tuple(masks.shape[:-spatial_dims]) != tuple(leading):
        raise ValueError(
            f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must share their leading "
            f"axes (all but the last {spatial_dims})"
        )
    flat = maps.reshape(-1, *maps.shape[-spatial_dims:])
    positive = torch.relu(upsample(flat, size)).reshape(*leading, *size)
    inside = (positive * (masks > 0)).flatten(-spatial_dims).sum(-1)
    total = positive.flatten(-spatial_dims).sum(-1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.nan)
