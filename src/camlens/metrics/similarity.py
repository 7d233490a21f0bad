"""How alike are two maps? Rank correlation and structural similarity, batched.

* :func:`spearman_correlation`: Spearman's rank correlation (Spearman, "The proof and
  measurement of association between two things", 1904): the Pearson correlation of the
  pixels' ranks, ties given their average rank.
* :func:`ssim`: the structural similarity index of Wang, Bovik, Sheikh & Simoncelli, "Image
  Quality Assessment: From Error Visibility to Structural Similarity", IEEE TIP 2004 (eq. 13
  with an 11 × 11 Gaussian window of σ = 1.5, K1 = 0.01, K2 = 0.03, averaged over the window
  positions that lie inside the map).

Both are what Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, compare
original and randomised-model maps with (:mod:`camlens.metrics.sanity`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from camlens.errors import InputShapeError
from camlens.postprocess import min_max

__all__ = ["average_ranks", "spearman_correlation", "ssim"]


def _pair(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if first.shape != second.shape or first.dim() < 2:
        raise InputShapeError(
            f"compare maps of one shape (B, ...), got {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(first.dtype, second.dtype), torch.float32)
    return first.to(dtype), second.to(device=first.device, dtype=dtype)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` ranks 0..N-1 of each row of ``values`` ``(B, N)``; tied values share the
    mean of the ranks they span (``[5, 1, 5] → [1.5, 0, 1.5]``)."""
    ordered = values.sort(dim=1).values
    below = torch.searchsorted(ordered, values, right=False)  # how many are smaller
    upto = torch.searchsorted(ordered, values, right=True)  # how many are smaller or equal
    return (below + upto - 1).to(values.dtype) / 2


def spearman_correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation between ``first[i]`` and ``second[i]``.

    Args:
        first, second: ``(B, ...)`` maps of the same shape (e.g. ``(B, H, W)``).

    Returns:
        ``(B,)`` in [-1, 1]; NaN where either map is constant (its ranks have no spread).
    """
    first, second = _pair(first, second)
    ranks = [average_ranks(x.flatten(1).contiguous()) for x in (first, second)]
    centred = [r - r.mean(dim=1, keepdim=True) for r in ranks]
    covariance = (centred[0] * centred[1]).sum(1)
    spread = (centred[0].square().sum(1) * centred[1].square().sum(1)).sqrt()
    return torch.where(spread > 0, covariance / spread.clamp_min(1e-30), torch.nan)


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    offsets = torch.arange(size, device=like.device, dtype=like.dtype) - (size - 1) / 2
    window = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return window / window.sum()


def ssim(
    first: torch.Tensor,
    second: torch.Tensor,
    *,
    scale: bool = True,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity of each pair of 2-D maps (Wang et al. 2004).

    ``SSIM(x, y) = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))`` with
    local Gaussian-weighted means, variances and covariance, ``C1 = (K1 L)²`` and
    ``C2 = (K2 L)²``, averaged over every window position that lies fully inside the map
    ("valid" filtering, as in the authors' reference implementation).

    Args:
        first, second: ``(B, H, W)`` maps.
        scale: min–max scale each map to [0, 1] first (``L = data_range = 1``), so maps on
            different scales are compared by their structure; a constant map becomes zeros.
        window_size: the side of the Gaussian window; shrunk to the largest odd size that
            fits maps smaller than it.
        sigma: the window's standard deviation in pixels.
        data_range: ``L``, the dynamic range of the values.
        k1, k2: the stabilising constants.

    Returns:
        ``(B,)`` SSIM values in [-1, 1]; 1 for identical maps.
    """
    first, second = _pair(first, second)
    if first.dim() != 3:
        raise InputShapeError(f"ssim compares (B, H, W) maps, got {tuple(first.shape)}")
    if scale:
        first, second = min_max(first), min_max(second)
    size = min(int(window_size), first.shape[-1], first.shape[-2])
    size -= 1 - size % 2  # keep it odd
    window = _gaussian_window(size, sigma, first)
    rows, columns = window.view(1, 1, -1, 1), window.view(1, 1, 1, -1)

    def local_mean(field: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(field.unsqueeze(1), rows), columns)[:, 0]

    mean_x, mean_y = local_mean(first), local_mean(second)
    var_x = local_mean(first * first) - mean_x.square()
    var_y = local_mean(second * second) - mean_y.square()
    covariance = local_mean(first * second) - mean_x * mean_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    numerator = (2 * mean_x * mean_y + c1) * (2 * covariance + c2)
    denominator = (mean_x.square() + mean_y.square() + c1) * (var_x + var_y + c2)
    return (numerator / denominator).flatten(1).mean(1)
