"""``pytorch_grad_cam.metrics.arcc`` → camlens: ARCC (:mod:`camlens.metrics.familiar`) and
its two parts as upstream names them, :class:`Complexity` (the mean ``|map|``, not
:func:`camlens.metrics.complexity`'s entropy) and :class:`Coherency`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.metrics.familiar import ARCC

__all__ = ["ARCC", "Coherency", "Complexity", "batch_pearson_coherency"]


def batch_pearson_coherency(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per-image Pearson correlation of two ``(B, ...)`` batches (sample statistics, ``1e-8``
    added to the product of the standard deviations)."""
    first = np.asarray(A, dtype=np.float64).reshape(len(A), -1)
    second = np.asarray(B, dtype=np.float64).reshape(len(B), -1)
    first = first - first.mean(axis=1, keepdims=True)
    second = second - second.mean(axis=1, keepdims=True)
    scale = first.shape[1] - 1
    covariance = (first * second).sum(axis=1) / scale
    spread = np.sqrt((first**2).sum(axis=1) / scale) * np.sqrt((second**2).sum(axis=1) / scale)
    return covariance / (spread + 1e-8)


class Complexity:
    """The mean absolute value of each map: 0 for an empty map, 1 for a map of ones."""

    def __call__(self, grayscale_cams: Any) -> np.ndarray:
        cams = np.asarray(grayscale_cams)
        return np.abs(cams.reshape(len(cams), -1)).mean(axis=1)


class Coherency:
    """``(ρ + 1) / 2``, with ``ρ`` the Pearson correlation between the maps and the maps
    that ``base_method`` gives for the input multiplied by them."""

    def __call__(
        self,
        input_tensor: torch.Tensor,
        grayscale_cams: Any,
        targets: Sequence[Any] | None,
        model: nn.Module,
        base_method: Callable[..., Any],
    ) -> np.ndarray:
        cams = np.asarray(grayscale_cams)
        maps = torch.from_numpy(cams).to(input_tensor.device, input_tensor.dtype)
        mixed = base_method(input_tensor=input_tensor * maps.unsqueeze(1), targets=targets)
        return (batch_pearson_coherency(np.asarray(mixed), cams) + 1) / 2
