"""Localisation of a map against a mask: does the evidence lie where the object is?

* :func:`positive_mass_in_mask`: the share of positive map mass inside a mask, the
  energy-based pointing game of Wang et al., "Score-CAM: Score-Weighted Visual Explanations
  for Convolutional Neural Networks", CVPR Workshops 2020 (§4.2):
  ``Σ_{mask} relu(m) / Σ relu(m)``. It is 1 when all positive evidence is inside, the mask's
  area fraction for a uniform map, and undefined (NaN) for a map with no positive mass.
* :func:`pointing_game`: whether the map's maximum falls on the mask, within a tolerance
  (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016, used a 15-px
  tolerance). It asks only where the *strongest* evidence is, so it is robust to the diffuse
  low evidence that coarse layers spread over a whole image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from camlens.masks import positive_mass_in_mask
from camlens.postprocess import upsample

__all__ = ["dilate", "pointing_game", "positive_mass_in_mask"]


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow boolean ``(..., H, W)`` masks by ``radius`` pixels (a square neighbourhood)."""
    if radius <= 0:
        return masks.bool()
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    grown = F.max_pool2d(flat, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return grown.reshape(masks.shape) > 0


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Whether each map's maximum lies on its mask, within ``tolerance`` pixels.

    Args:
        maps: ``(..., h, w)`` maps, upsampled (bilinear) to the masks' size first.
        masks: ``(..., H, W)`` boolean masks with the same leading shape.
        tolerance: a hit may be this many pixels outside the mask (Chebyshev distance).

    Returns:
        ``(...)`` bool hits. A constant map has no maximum worth pointing at: it is a miss.
    """
    size = tuple(masks.shape[-2:])
    leading = maps.shape[:-2]
    upsampled = upsample(maps.reshape(-1, *maps.shape[-2:]), size)
    peaks = upsampled.flatten(1).argmax(dim=1)
    target = dilate(masks.reshape(-1, *size), tolerance).flatten(1)
    hits = target.gather(1, peaks[:, None])[:, 0]
    flat = upsampled.flatten(1)
    constant = flat.amax(1) == flat.amin(1)
    return (hits & ~constant).reshape(leading)
