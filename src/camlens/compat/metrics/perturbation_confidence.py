"""``pytorch_grad_cam.metrics.perturbation_confidence`` → camlens: the building blocks of
upstream's confidence metrics, for scripts that compose their own.

A :class:`PerturbationConfidenceMetric` scores each image's targets on the input and on a
perturbed copy (the perturbation sees one image ``(C, H, W)`` and its map ``(H, W)``, on the
input's device) and returns the change (or the new score) as float32 numpy, per image. The
model is borrowed (eval mode for the call, restored after). camlens's own metrics
(:mod:`camlens.metrics`: deletion, insertion, ROAD, confidence change) compute the same
quantities batched; :mod:`camlens.compat.metrics.road` and ``cam_mult_image`` use those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.capture import borrowed
from camlens.errors import InputShapeError, OptionError
from camlens.target_sets import resolve_targets
from camlens.targets import target_score

__all__ = [
    "AveragerAcrossThresholds",
    "PerturbationConfidenceMetric",
    "RemoveLeastRelevantFirst",
    "RemoveMostRelevantFirst",
]

#: ``(image (C, H, W), map (H, W)) -> perturbed image (C, H, W)``.
Perturbation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _scores(model: nn.Module, inputs: torch.Tensor, targets: Sequence[Any]) -> np.ndarray:
    with torch.no_grad():
        outputs = model(inputs)
    return np.float32(
        [
            target_score(target, output, f"target {index}").item()
            for index, (target, output) in enumerate(zip(targets, outputs, strict=True))
        ]
    )


class PerturbationConfidenceMetric:
    """Target scores after ``perturbation`` minus before (``return_diff``), per image."""

    def __init__(self, perturbation: Perturbation) -> None:
        self.perturbation = perturbation

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: Any,
        targets: Sequence[Any] | None,
        model: nn.Module,
        return_visualization: bool = False,
        return_diff: bool = True,
    ) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
        """``cams``: ``(B, H, W)`` maps at the input's resolution (numpy or tensor);
        ``targets``: one per image (or one for all, class indices, ``None``: the top class)."""
        maps = torch.as_tensor(np.asarray(cams) if not isinstance(cams, torch.Tensor) else cams)
        if maps.shape != (input_tensor.shape[0], *input_tensor.shape[2:]):
            raise InputShapeError(
                f"`cams` must be (B, H, W) = {(input_tensor.shape[0], *input_tensor.shape[2:])}, "
                f"got {tuple(maps.shape)}"
            )
        maps = maps.to(input_tensor.device, input_tensor.dtype)
        with borrowed(model):
            with torch.no_grad():
                resolved = resolve_targets(targets, model(input_tensor))
            perturbed = torch.stack(
                [
                    self.perturbation(image, cam)
                    for image, cam in zip(input_tensor, maps, strict=True)
                ]
            ).to(input_tensor.device)
            after = _scores(model, perturbed, resolved)
            result = after - _scores(model, input_tensor, resolved) if return_diff else after
        return (result, perturbed) if return_visualization else result


class RemoveMostRelevantFirst:
    """A perturbation: keep the pixels whose map value is below the ``percentile``-th
    percentile of the map and let ``imputer(image, keep)`` fill the others (``keep``: 1 for
    kept pixels, 0 for removed). ``"auto"`` (upstream's Otsu threshold) is not supported."""

    def __init__(self, percentile: float, imputer: Callable[[torch.Tensor, torch.Tensor], Any]):
        if isinstance(percentile, str):
            raise OptionError(
                f"percentile {percentile!r} (Otsu) is not supported; pass a number in [0, 100]."
            )
        self.percentile = float(percentile)
        self.imputer = imputer

    def __call__(self, input_tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        threshold = torch.quantile(mask.double().flatten(), self.percentile / 100)
        keep = (mask.double() < threshold).to(input_tensor.dtype)
        return self.imputer(input_tensor, keep)


class RemoveLeastRelevantFirst(RemoveMostRelevantFirst):
    """:class:`RemoveMostRelevantFirst` on ``1 − map``: the least relevant pixels go first."""

    def __call__(self, input_tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return super().__call__(input_tensor, 1 - mask)


class AveragerAcrossThresholds:
    """The mean over ``percentiles`` of ``imputer(percentile)(input_tensor, cams, targets,
    model)`` — ``imputer`` being a metric class such as ``ROADMostRelevantFirst``."""

    def __init__(
        self,
        imputer: Callable[[float], Callable[..., Any]],
        percentiles: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    ) -> None:
        self.imputer = imputer
        self.percentiles = list(percentiles)

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: Any,
        targets: Sequence[Any] | None,
        model: nn.Module,
    ) -> np.ndarray:
        scores = [
            self.imputer(percentile)(input_tensor, cams, targets, model)
            for percentile in self.percentiles
        ]
        return np.mean(np.float32(scores), axis=0)
