"""``pytorch_grad_cam.utils.svd_on_activations`` → camlens's channel reductions.

Each function takes a ``(B, C, h, w)`` (or ``(B, C, d, h, w)``) numpy batch, leaves it
unchanged (NaNs count as 0 in a copy) and returns the ``(B, h, w)`` float32 projection of
each image's positions, channels centred, on the first (kernel) principal component:

* :func:`get_2d_projection` — :func:`camlens.methods.first_principal_component`. Upstream's
  sign is whatever its SVD returns; camlens orients the map to agree with the channel sum.
* :func:`get_2d_projection_kernel` — :func:`camlens.methods.kpca.kernel_principal_component`
  (upstream: scikit-learn's ``KernelPCA``; the same scores up to sign).
* :func:`get_2d_projection_with_sign_correction` — the projection flipped when
  ``|min| > |max|`` (Seg-Eigen-CAM's rule, Chung & Ying 2025, eq. 13), which fixes the sign
  as upstream does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from camlens.methods import first_principal_component
from camlens.methods.kpca import kernel_principal_component

__all__ = [
    "get_2d_projection",
    "get_2d_projection_kernel",
    "get_2d_projection_with_sign_correction",
]


def _batch(activation_batch: Any) -> torch.Tensor:
    array = np.nan_to_num(np.asarray(activation_batch, dtype=np.float64), nan=0.0)
    return torch.from_numpy(array)  # a new array: the caller's batch is never changed


def get_2d_projection(activation_batch: Any) -> np.ndarray:
    """``(B, C, *grid)`` → ``(B, *grid)``: projection on the first principal component."""
    return first_principal_component(_batch(activation_batch)).numpy().astype(np.float32)


def get_2d_projection_kernel(
    activation_batch: Any, kernel: str = "sigmoid", gamma: float | None = None
) -> np.ndarray:
    """``(B, C, *grid)`` → ``(B, *grid)``: scores on the first kernel principal component
    (``kernel``: ``"sigmoid"``, ``"rbf"`` or ``"linear"``; ``gamma=None``: ``1 / C``)."""
    projection = kernel_principal_component(_batch(activation_batch), kernel, gamma)
    return projection.numpy().astype(np.float32)


def get_2d_projection_with_sign_correction(activation_batch: Any) -> np.ndarray:
    """As :func:`get_2d_projection`, each map negated where ``|min| > |max|``."""
    projection = get_2d_projection(activation_batch)
    flat = projection.reshape(len(projection), -1)
    flip = np.abs(flat.min(axis=1)) > np.abs(flat.max(axis=1))
    shape = (-1,) + (1,) * (projection.ndim - 1)
    return np.where(flip.reshape(shape), -projection, projection).astype(np.float32)
