"""Masks: regions inside a class mask (boxes, connected components) and the share of a map's
positive evidence that falls inside a mask.

A region target explains one object rather than a whole class: the class logits are summed
over the class mask restricted to a box, or to one connected component (one gland, one
vessel). Connected components (8-connected: diagonal neighbours touch) are labelled by
iterated 3 × 3 max-pooling on the mask's device (no scipy): each pixel starts with its own
index and takes the largest index among its neighbours inside the mask, then jumps to the label
of the pixel its label names (pointer jumping), until nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from camlens.postprocess import upsample

__all__ = [
    "box_mask",
    "connected_components",
    "largest_component",
    "positive_mass_in_mask",
    "resample_positive",
]


def box_mask(shape: Sequence[int], box: Sequence[int], device: torch.device | None = None):
    """Boolean ``shape`` mask, true inside ``box = (top, bottom, left, right)`` (half-open)."""
    top, bottom, left, right = (int(v) for v in box)
    height, width = int(shape[-2]), int(shape[-1])
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise ValueError(
            f"box (top, bottom, left, right) = {tuple(box)} is empty or outside the "
            f"{height}×{width} output"
        )
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top:bottom, left:right] = True
    return mask


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """Label the 8-connected components of a boolean ``(H, W)`` mask.

    Returns ``(H, W)`` int64 labels: 0 outside the mask, and for each component one positive
    label (the largest flat pixel index in it, plus one).
    """
    if mask.dim() != 2:
        raise ValueError(f"`mask` must be (H, W), got shape {tuple(mask.shape)}")
    inside = mask.bool()
    height, width = inside.shape
    index = torch.arange(1, height * width + 1, device=mask.device, dtype=torch.float64)
    labels = torch.where(
        inside, index.reshape(height, width), torch.zeros((), dtype=index.dtype, device=mask.device)
    )
    outside = torch.zeros((), dtype=labels.dtype, device=mask.device)
    while True:
        spread = F.max_pool2d(labels[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
        updated = torch.where(inside, spread, labels)
        # Pointer jumping: a label names a pixel of the same component; take that pixel's
        # label, which is at least as large. Long components then need O(log) rounds.
        flat = updated.flatten()
        pointers = (flat.long() - 1).clamp(min=0)
        jumped = torch.where(flat > 0, flat[pointers], outside).reshape(height, width)
        updated = torch.maximum(updated, jumped)
        if torch.equal(updated, labels):
            return labels.to(torch.int64)
        labels = updated


def largest_component(mask: torch.Tensor) -> torch.Tensor:
    """The largest 8-connected component of a boolean ``(H, W)`` mask (empty stays empty)."""
    labels = connected_components(mask)
    if not bool(labels.any()):
        return torch.zeros_like(mask, dtype=torch.bool)
    values, counts = torch.unique(labels[labels > 0], return_counts=True)
    return labels == values[counts.argmax()]


def resample_positive(positive: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Non-negative maps ``(N, *grid)`` resampled to ``size`` keeping every cell's mass
    somewhere: area averages along axes that shrink, bilinear along axes that grow."""
    size = tuple(int(s) for s in size)
    shrunk = tuple(min(int(g), s) for g, s in zip(positive.shape[1:], size, strict=True))
    if shrunk != tuple(positive.shape[1:]):
        pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)
        positive = pool[len(size) - 1](positive.unsqueeze(1), shrunk)[:, 0]
    return upsample(positive, size)


def positive_mass_in_mask(
    maps: torch.Tensor, masks: torch.Tensor, spatial_dims: int = 2
) -> torch.Tensor:
    """Share of the positive mass of ``maps`` inside ``masks``: ``Σ_mask relu(m) / Σ relu(m)``,
    the energy-based pointing game of Wang et al., CVPR Workshops 2020 (§4.2).

    The positive part ``relu(m)`` is taken at the maps' own grid, *then* resampled to the
    masks' size: upsampled bilinearly (half-pixel centres) along axes that grow, averaged over
    areas (adaptive average pooling) along axes that shrink. Both are non-negative weightings
    that give every grid cell a positive weight somewhere, so a map with any positive cell
    keeps positive mass at the masks' size, near where that cell was — the share is defined
    exactly when the raw map has positive evidence. (Resampling the signed map first let
    negative neighbours cancel a positive cell, and plain bilinear shrinking skipped cells,
    both giving NaN.) Negative evidence plays no part: a uniform positive map gives the
    mask's area fraction, and maps already at the masks' size are used as they are.

    Args:
        maps: ``(..., *grid)`` signed maps at any resolution.
        masks: ``(..., *spatial)`` masks with the same leading shape as ``maps``; bool, or
            float weights where > 0 counts as inside.
        spatial_dims: how many trailing axes are spatial (2 for images, 3 for volumes).

    Returns:
        ``(...)`` shares in [0, 1]; NaN where a map has no positive cell.
    """
    size = tuple(masks.shape[-spatial_dims:])
    leading = maps.shape[:-spatial_dims]
    if tuple(masks.shape[:-spatial_dims]) != tuple(leading):
        raise ValueError(
            f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must share their leading "
            f"axes (all but the last {spatial_dims})"
        )
    flat = torch.relu(maps.reshape(-1, *maps.shape[-spatial_dims:]))
    positive = resample_positive(flat, size).reshape(*leading, *size)
    inside = (positive * (masks > 0)).flatten(-spatial_dims).sum(-1)
    total = positive.flatten(-spatial_dims).sum(-1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.nan)
