"""``pytorch_grad_cam.metrics.road`` → camlens: the ROAD metric classes
(:mod:`camlens.metrics.familiar`, over :func:`camlens.metrics.road`) and the noisy linear
imputation they use (Rong et al., ICML 2022), as upstream's ``NoisyLinearImputer``.

The imputation solves the same linear system (each removed pixel the weighted mean of its
eight neighbours, weights :data:`neighbors_weights`) with conjugate gradients on the
image's device (upstream: a direct sparse solve on the CPU), then adds ``noise · N(0, 1)``
from torch's global generator, as upstream.
"""

from __future__ import annotations

import torch

from camlens.errors import OptionError
from camlens.metrics.familiar import (
    ROADCombined,
    ROADLeastRelevantFirst,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirst,
    ROADMostRelevantFirstAverage,
)
from camlens.metrics.imputation import noisy_linear_imputation

__all__ = [
    "NoisyLinearImputer",
    "ROADCombined",
    "ROADLeastRelevantFirst",
    "ROADLeastRelevantFirstAverage",
    "ROADMostRelevantFirst",
    "ROADMostRelevantFirstAverage",
    "neighbors_weights",
]

#: ``((row offset, column offset), weight)`` of the eight neighbours of a pixel.
neighbors_weights: list[tuple[tuple[int, int], float]] = [
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
]


class NoisyLinearImputer:
    """``(image (C, H, W), mask (H, W)) -> image``: the pixels where ``mask`` is 0 replaced
    by the linear imputation from their neighbours plus ``noise``-scaled Gaussian noise.

    Args:
        noise: the noise's standard deviation, in the image's units (0: none).
        weighting: the neighbour weights; only :data:`neighbors_weights` (upstream ignores
            any other value; camlens refuses it rather than ignore it).
    """

    def __init__(
        self,
        noise: float = 0.01,
        weighting: list[tuple[tuple[int, int], float]] = neighbors_weights,
    ) -> None:
        if sorted(weighting) != sorted(neighbors_weights):
            raise OptionError(
                "NoisyLinearImputer supports only the default `weighting` (neighbors_weights)."
            )
        self.noise = float(noise)
        self.weighting = neighbors_weights

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        removed = torch.as_tensor(mask, device=img.device) == 0
        filled = noisy_linear_imputation(img[None], removed[None], noise_std=self.noise)
        return filled[0]
