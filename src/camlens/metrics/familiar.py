"""pytorch-grad-cam's metric classes by their names, as thin front ends over camlens's metrics.

Constructors and ``__call__`` signatures follow ``pytorch_grad_cam.metrics`` 1.5.7
(``cam_mult_image``, ``road``, ``arcc``): ``cams`` are ``(B, H, W)`` maps at the input's
resolution (numpy or tensor), targets see the *raw* model output (as upstream), and the
results are float32 numpy arrays of per-image scores.

* ``CamMultImageConfidenceChange``, ``DropInConfidence``, ``IncreaseInConfidence``: over
  :func:`~camlens.metrics.confidence_change` (``score="raw"``, the input tensor multiplied by
  the map). Deterministic, so they equal upstream's numbers up to float rounding. Upstream's
  ``DropInConfidence`` is ``max(0, Y − O)``, *not* divided by ``Y`` as camlens's ``drop``.
* ``ROAD*``: over :func:`~camlens.metrics.road`. Upstream's percentile ``p`` keeps the pixels
  below ``np.percentile(cam, p)`` (MoRF; ``1 − cam`` for LeRF), i.e. it removes
  ``N − ceil(p/100 · (N − 1))`` of the ``N`` pixels, the most relevant (MoRF) or the least
  relevant (LeRF); camlens is given exactly that count, so for maps without ties the same
  pixels are removed (with ties upstream removes every tie at the threshold, camlens breaks
  them in raster order). The imputation solves the same linear system (Rong et al. 2022:
  weights 1/6 and 1/12, renormalised at the border) — upstream with a direct sparse solver,
  camlens with conjugate gradients to ``tolerance`` — and adds ``0.01 · N(0, 1)`` noise,
  upstream from torch's global generator, camlens seeded by ``seed``: no bit-for-bit match.
  With the noise off on both sides (``noise_std=0`` here) they agree to the solver's
  tolerance; with it on they differ as two upstream runs do. ``"auto"`` (Otsu) is refused.
* ``ARCC``: upstream's harmonic mean of coherency, ``1 − complexity`` (mean ``|cam|``, not
  :func:`~camlens.metrics.complexity`'s entropy) and ``clip(2 · ROADCombined, 0, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.metrics._scoring import check_batch, relevance_ranks
from camlens.metrics.faithfulness import RoadResult, confidence_change, road, seeded_normal
from camlens.metrics.imputation import noisy_linear_imputation

__all__ = [
    "ARCC",
    "CamMultImageConfidenceChange",
    "DropInConfidence",
    "IncreaseInConfidence",
    "ROADCombined",
    "ROADLeastRelevantFirst",
    "ROADLeastRelevantFirstAverage",
    "ROADMostRelevantFirst",
    "ROADMostRelevantFirstAverage",
]

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def _maps(cams: Any, like: torch.Tensor) -> torch.Tensor:
    maps = torch.as_tensor(np.asarray(cams) if not isinstance(cams, torch.Tensor) else cams)
    return maps.detach().to(device=like.device, dtype=like.dtype)


def _numpy(scores: torch.Tensor) -> np.ndarray:  # upstream's float32 per-image scores
    return scores.detach().cpu().numpy().astype(np.float32)


class CamMultImageConfidenceChange:
    """The target score on ``input_tensor · cam`` minus the score on the input (upstream's
    ``PerturbationConfidenceMetric(multiply_tensor_with_cam)``); ``cams`` in [0, 1]."""

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: Any,
        targets: Sequence[Callable] | None,
        model: nn.Module,
        return_visualization: bool = False,
        return_diff: bool = True,
    ) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
        maps = _maps(cams, input_tensor)
        result = confidence_change(model, input_tensor, maps, targets, score="raw")
        scores = self._transform(
            _numpy(result.masked - result.original if return_diff else result.masked)
        )
        if return_visualization:
            return scores, input_tensor * maps.unsqueeze(1)
        return scores

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        return scores


class DropInConfidence(CamMultImageConfidenceChange):
    """``max(0, Y − O)`` per image (upstream: not divided by ``Y``)."""

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        return np.maximum(-scores, 0)


class IncreaseInConfidence(CamMultImageConfidenceChange):
    """``1.0`` where ``O > Y``, else ``0.0``."""

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        return np.float32(scores > 0)


def removed_share(percentile: float, pixels: int) -> float:
    """The share of pixels (percent) that upstream's percentile ``p`` removes from a tie-free
    map of ``pixels`` pixels: ``N − ceil(p/100 · (N − 1))`` pixels, as camlens's ``road``
    percentile (which removes ``round(share/100 · N)``)."""
    if isinstance(percentile, str) or not 0 < float(percentile) <= 100:
        raise ValueError(
            f"`percentile` must be a number in (0, 100] ('auto' is not supported), "
            f"got {percentile!r}"
        )
    kept = math.ceil(float(percentile) / 100 * (pixels - 1))
    return 100 * (pixels - kept) / pixels


class _Road:
    """Shared set-up of the ROAD front ends: one :func:`road` call over all percentiles."""

    def __init__(self, percentiles: Sequence[float], noise_std: float, seed: int, tolerance: float):
        self.percentiles = list(percentiles)
        self.noise_std, self.seed, self.tolerance = float(noise_std), int(seed), float(tolerance)

    def _road(self, input_tensor: torch.Tensor, cams: Any, targets: Any, model: nn.Module):
        pixels = input_tensor.shape[-2] * input_tensor.shape[-1]
        shares = [removed_share(p, pixels) for p in self.percentiles]
        maps = _maps(cams, input_tensor)
        options = {"noise_std": self.noise_std, "seed": self.seed, "tolerance": self.tolerance}
        result = road(
            model, input_tensor, maps, targets, percentiles=shares, score="raw", **options
        )
        return result, maps, shares


class ROADMostRelevantFirst(_Road):
    """Upstream's ``ROADMostRelevantFirst(percentile)``: the score after removing the
    ``100 − percentile`` % most relevant pixels by noisy linear imputation, minus the score on
    the input (``return_diff``). Keyword-only extras: ``noise_std`` (upstream: 0.01),
    ``seed`` (camlens's noise is seeded; upstream's comes from torch's global generator),
    ``tolerance`` of the imputation solver. See the module notes on exactness."""

    least_relevant_first = False

    def __init__(
        self,
        percentile: float = 80,
        *,
        noise_std: float = 0.01,
        seed: int = 0,
        tolerance: float = 1e-6,
    ):
        super().__init__([percentile], noise_std, seed, tolerance)
        self.percentile = percentile

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: Any,
        targets: Sequence[Callable] | None,
        model: nn.Module,
        return_visualization: bool = False,
        return_diff: bool = True,
    ) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
        result, maps, shares = self._road(input_tensor, cams, targets, model)
        after = (result.lerf if self.least_relevant_first else result.morf)[:, 0]
        scores = _numpy(after - result.original if return_diff else after)
        if return_visualization:
            return scores, self._images(model, input_tensor, maps, shares[0])
        return scores

    def _images(
        self, model: nn.Module, inputs: torch.Tensor, maps: torch.Tensor, share: float
    ) -> torch.Tensor:
        """The images :func:`road` scored: with one percentile, image ``i``'s MoRF copy is
        perturbed image ``2 i``, its LeRF copy ``2 i + 1`` (noise seeds ``seed + j``)."""
        inputs, maps = check_batch(model, inputs, maps)
        order = int(self.least_relevant_first)
        ranks = relevance_ranks(maps, descending=not self.least_relevant_first)
        count = round(share * ranks.shape[1] / 100)
        removed = (ranks < count).view(maps.shape)
        noise = None
        if self.noise_std > 0:
            shape = tuple(inputs.shape[1:])
            noise = torch.stack(
                [
                    seeded_normal(self.seed + 2 * i + order, shape, inputs)
                    for i in range(len(inputs))
                ]
            )
        return noisy_linear_imputation(
            inputs, removed, noise_std=self.noise_std, noise=noise, tolerance=self.tolerance
        )


class ROADLeastRelevantFirst(ROADMostRelevantFirst):
    """Upstream's ``ROADLeastRelevantFirst(percentile)``: removes the ``100 − percentile`` %
    least relevant pixels (so the default 20 keeps the 20 % most relevant)."""

    least_relevant_first = True

    def __init__(self, percentile: float = 20, **options: Any):  # options as MoRF's
        super().__init__(percentile, **options)


class ROADMostRelevantFirstAverage(_Road):
    """``ROADMostRelevantFirst(p)`` averaged over ``percentiles`` (score differences)."""

    least_relevant_first = False

    def __init__(
        self,
        percentiles: Sequence[float] = PERCENTILES,
        *,
        noise_std: float = 0.01,
        seed: int = 0,
        tolerance: float = 1e-6,
    ):
        super().__init__(percentiles, noise_std, seed, tolerance)

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: Any,
        targets: Sequence[Callable] | None,
        model: nn.Module,
    ) -> np.ndarray:
        result, _, _ = self._road(input_tensor, cams, targets, model)
        return _numpy(self._summary(result))

    def _summary(self, result: RoadResult) -> torch.Tensor:
        return -(result.lerf_drop if self.least_relevant_first else result.morf_drop)


class ROADLeastRelevantFirstAverage(ROADMostRelevantFirstAverage):
    """``ROADLeastRelevantFirst(p)`` averaged over ``percentiles`` (score differences)."""

    least_relevant_first = True


class ROADCombined(ROADMostRelevantFirstAverage):
    """``(LeRF average − MoRF average) / 2`` = camlens's ``road(...).gap / 2``; higher is
    more faithful."""

    def _summary(self, result: RoadResult) -> torch.Tensor:
        return result.gap / 2


class ARCC:
    """Upstream's ARCC: ``3 / (1/coherency + 1/(1 − complexity) + 1/road)`` (each + 1e-8).

    ``complexity`` is the mean ``|cam|``; ``coherency`` is ``(ρ + 1) / 2`` with ``ρ`` the
    Pearson correlation between ``cams`` and ``base_method(input_tensor=x · cam,
    targets=targets)`` (any familiar CAM class, e.g. ``camlens.GradCAM``); ``road`` is
    ``clip(2 · ROADCombined(road_percentiles), 0, 1)``. Keyword extras as in the ROAD classes.
    """

    def __init__(
        self,
        base_method: Callable[..., Any],
        road_percentiles: Sequence[float] = (20, 40, 60, 80),
        *,
        noise_std: float = 0.01,
        seed: int = 0,
        tolerance: float = 1e-6,
    ):
        self.base_method = base_method
        self.road = ROADCombined(
            road_percentiles, noise_std=noise_std, seed=seed, tolerance=tolerance
        )

    def __call__(
        self,
        input_tensor: torch.Tensor,
        grayscale_cams: Any,
        targets: Sequence[Callable] | None,
        model: nn.Module,
    ) -> np.ndarray:
        maps = _maps(grayscale_cams, input_tensor)
        cams = maps.cpu().numpy()
        complexity = np.abs(cams.reshape(len(cams), -1)).mean(1)
        mixed = input_tensor * maps.unsqueeze(1)
        mixed_cams = np.asarray(self.base_method(input_tensor=mixed, targets=targets))
        coherency = (_pearson(mixed_cams, cams) + 1) / 2
        road_score = (self.road(input_tensor, cams, targets, model) * 2).clip(0, 1)
        inverse = 1 / (coherency + 1e-8) + 1 / ((1 - complexity) + 1e-8) + 1 / (road_score + 1e-8)
        return np.float32(3 / inverse)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Pearson correlation as upstream's ``batch_pearson_coherency`` (eps 1e-8)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    scale = a.shape[1] - 1
    cov = (a * b).sum(1) / scale
    return cov / (np.sqrt((a**2).sum(1) / scale) * np.sqrt((b**2).sum(1) / scale) + 1e-8)
