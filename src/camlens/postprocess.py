"""The explicit steps between signed layer maps and pictures: ReLU, min–max, upsampling,
multi-layer aggregation. Batched tensor operations on the maps' device; no per-image loops.

:func:`familiar_maps` reproduces pytorch-grad-cam's pipeline step by step so that pictures
do not change for users who switch: per layer ReLU → min–max at layer resolution →
resize to the input (bilinear, half-pixel centres, as OpenCV's ``INTER_LINEAR``) → clamp at
zero → mean over layers → min–max.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["familiar_maps", "min_max", "upsample"]

#: Added to the range in min–max scaling so a constant map becomes zeros, not NaN.
SCALE_EPSILON = 1e-7


def min_max(maps: torch.Tensor, epsilon: float = SCALE_EPSILON) -> torch.Tensor:
    """Scale each map of ``(B, *grid)`` to [0, 1]: ``(m - min) / (max - min + epsilon)``.

    The one min–max of camlens; methods that follow a paper's (or pytorch-grad-cam's)
    constant pass it as ``epsilon`` (ScoreCAM's masks, FullGrad's terms).
    """
    flat = maps.flatten(1)
    shifted = flat - flat.min(dim=1, keepdim=True).values
    scaled = shifted / (shifted.max(dim=1, keepdim=True).values + epsilon)
    return scaled.reshape(maps.shape)


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize ``(B, *grid)`` maps to ``size`` (bilinear in 2-D, trilinear in 3-D).

    Half-pixel centres (``align_corners=False``), so a map covers the image exactly as the
    feature grid covers it. Maps already at ``size`` are returned unchanged.
    """
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(maps.unsqueeze(1), size=size, mode=mode, align_corners=False)[:, 0]


def familiar_maps(layer_maps: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """pytorch-grad-cam's final maps ``(B, *size)`` in [0, 1] from signed layer maps.

    Runs with autocast off, so a caller's mixed-precision region cannot lower its precision.
    """
    with torch.autocast(layer_maps[0].device.type, enabled=False):
        per_layer = [upsample(min_max(torch.relu(m)), size) for m in layer_maps]
        aggregated = torch.relu(torch.stack(per_layer, dim=1)).mean(dim=1)
        return min_max(aggregated)
