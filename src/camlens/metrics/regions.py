"""Where does the positive evidence lie: on the object, next to it, or far away?

:func:`energy_by_region` splits each map's positive mass (its "energy", as in the
energy-based pointing game of Wang et al., "Score-CAM", CVPR Workshops 2020, §4.2) into three
shares that add up to one:

* **inside**: on the mask;
* **near**: in a ring around it, the mask grown by ``near`` pixels (a square neighbourhood,
  :func:`~camlens.metrics.localisation.dilate`) minus the mask itself. Coarse layers put
  evidence for an object on the cells next to it (receptive fields, padding), so mass here
  is usually the object's, blurred;
* **far**: everywhere else, evidence the object cannot account for (context, or a shortcut).

:func:`segmentation_energy_by_region` and :func:`segmentation_pointing_game` apply this and
the pointing game to every class of a
:class:`~camlens.segmentation.SegmentationExplanation`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from camlens.metrics.localisation import dilate, pointing_game
from camlens.postprocess import upsample

if TYPE_CHECKING:
    from camlens.segmentation import SegmentationExplanation

__all__ = ["energy_by_region", "segmentation_energy_by_region", "segmentation_pointing_game"]

MapSource = Literal["raw", "final"]


def energy_by_region(maps: torch.Tensor, masks: torch.Tensor, near: int) -> torch.Tensor:
    """Shares of each map's positive mass inside, near and far from its mask.

    Args:
        maps: ``(..., h, w)`` signed maps, upsampled (bilinear) to the masks' size if needed.
        masks: ``(..., H, W)`` masks with the same leading shape; > 0 counts as inside.
        near: the width of the ring, in pixels (0: no ring, everything outside is far).

    Returns:
        ``(..., 3)``: ``[inside, near, far]`` shares of ``Σ relu(map)``, adding up to 1; NaN
        where a map has no positive mass or a mask is empty (there is nothing to be near).
    """
    size = tuple(masks.shape[-2:])
    leading = tuple(maps.shape[:-2])
    if tuple(masks.shape[:-2]) != leading:
        raise ValueError(
            f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must share their leading "
            "axes (all but the last 2)"
        )
    if int(near) < 0:
        raise ValueError(f"`near` must be a number of pixels >= 0, got {near}")
    flat = maps.reshape(-1, *maps.shape[-2:])
    positive = torch.relu(upsample(flat, size).to(torch.promote_types(flat.dtype, torch.float32)))
    inside = masks.reshape(-1, *size).to(positive.device) > 0
    ring = dilate(inside, int(near)) & ~inside
    total = positive.flatten(1).sum(1)
    shares_inside = (positive * inside).flatten(1).sum(1) / total.clamp_min(1e-30)
    shares_near = (positive * ring).flatten(1).sum(1) / total.clamp_min(1e-30)
    # far = the rest; computed as a sum too, so the three add up to 1 up to rounding
    shares_far = (positive * ~(inside | ring)).flatten(1).sum(1) / total.clamp_min(1e-30)
    shares = torch.stack([shares_inside, shares_near, shares_far], dim=-1)
    undefined = (total <= 0) | ~inside.flatten(1).any(1)
    shares = torch.where(undefined[:, None], torch.nan, shares)
    return shares.reshape(*leading, 3)


def _class_maps(
    explanation: SegmentationExplanation, method: str | None, source: MapSource, layer: int
) -> torch.Tensor:
    """``(B, K, H, W)`` maps of one method of a segmentation explanation."""
    if method is None:
        if len(explanation.methods) != 1:
            raise ValueError(
                f"the explanation holds {len(explanation.methods)} methods; pass `method=` "
                f"(one of {explanation.methods})"
            )
        method = explanation.methods[0]
    if source == "final":
        return explanation[method]
    if source == "raw":
        return explanation.raw_maps(method, layer)
    raise ValueError(f"`source` must be 'raw' or 'final', got {source!r}")


def segmentation_energy_by_region(
    explanation: SegmentationExplanation,
    method: str | None = None,
    near: int = 8,
    *,
    source: MapSource = "raw",
    layer: int = 0,
) -> torch.Tensor:
    """``(B, K, 3)`` inside / near / far shares of positive map mass for every image and
    explained class of a segmentation explanation, against the class masks the targets used
    (``explanation.masks``: the predicted masks, or the ground truth when given).

    Args:
        explanation: from :func:`~camlens.segmentation.explain_segmentation`.
        method: which method's maps (may be omitted when there is one).
        near: the ring's width in pixels at the masks' resolution.
        source: ``"raw"``: the signed raw map of target layer ``layer`` (no scaling, so
            shares reflect the method's own evidence); ``"final"``: the final maps in [0, 1]
            (all layers aggregated).
        layer: the target layer's index, for ``source="raw"``.
    """
    maps = _class_maps(explanation, method, source, layer)
    return energy_by_region(maps, explanation.masks, near)


def segmentation_pointing_game(
    explanation: SegmentationExplanation,
    method: str | None = None,
    tolerance: int = 0,
    *,
    source: MapSource = "raw",
    layer: int = 0,
) -> torch.Tensor:
    """``(B, K)`` bool: whether each class map's maximum lies on the class mask, within
    ``tolerance`` pixels (:func:`~camlens.metrics.localisation.pointing_game`). Empty
    masks are misses. Arguments as in :func:`segmentation_energy_by_region`."""
    maps = _class_maps(explanation, method, source, layer)
    return pointing_game(maps, explanation.masks > 0, tolerance)
