"""``pytorch_grad_cam.finer_cam`` → camlens: Finer-CAM (Zhang et al., CVPR 2025) over any
familiar class, with :class:`camlens.targets.FinerWeightedTarget`.

Without ``targets`` each image's main class is its top class (or ``target_idx``) and it is
compared with the classes whose scores are closest to it (ranks ``comparison_categories``
of the sorted distances, rank 0 being the main class itself). Those targets come from one
extra no-grad forward pass of the borrowed model (upstream reuses its own forward pass; the
maps are the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.capture import borrowed
from camlens.familiar import BaseCAM, GradCAM
from camlens.layers import LayerSpec
from camlens.outputs import as_score_tensor
from camlens.reshape import ReshapeTransform
from camlens.steps import prepare_input
from camlens.targets import FinerWeightedTarget

__all__ = ["DEFAULT_COMPARISON_CATEGORIES", "FinerCAM"]

#: The ranks (by closeness of score to the main class) of the classes compared with it.
DEFAULT_COMPARISON_CATEGORIES = (1, 2, 3)


class FinerCAM:
    """``FinerCAM(model, target_layers, reshape_transform=None, base_method=GradCAM)``:
    ``cam(input_tensor, targets=None, eigen_smooth=False, alpha=1, comparison_categories=None,
    target_idx=None)`` returns ``base_method``'s final maps ``(B, H, W)`` for Finer targets."""

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        base_method: type[BaseCAM] = GradCAM,
    ) -> None:
        self.base_cam = base_method(model, target_layers, reshape_transform)
        self.compute_input_gradient = self.base_cam.compute_input_gradient
        self.uses_gradients = self.base_cam.uses_gradients

    def __enter__(self) -> FinerCAM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to release: hooks exist only during a call."""
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.forward(*args, **kwargs)

    def finer_targets(
        self,
        input_tensor: torch.Tensor,
        alpha: float = 1,
        comparison_categories: Sequence[int] | None = None,
        target_idx: int | None = None,
    ) -> list[FinerWeightedTarget]:
        """One :class:`FinerWeightedTarget` per image, from the model's scores."""
        model = self.base_cam.model
        with borrowed(model), torch.no_grad():
            scores = as_score_tensor(model(prepare_input(input_tensor, model))).flatten(1)
        classes = scores.shape[-1]
        if comparison_categories is None:
            ranks = list(DEFAULT_COMPARISON_CATEGORIES[: max(classes - 1, 0)])
        else:
            ranks = [int(c) for c in comparison_categories if int(c) < classes]
        main = scores.max(dim=-1).values if target_idx is None else scores[:, target_idx]
        order = (scores - main[:, None]).abs().argsort(dim=-1, stable=True)
        return [
            FinerWeightedTarget(int(row[0]), [int(row[rank]) for rank in ranks], alpha)
            for row in order
        ]

    def forward(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        eigen_smooth: bool = False,
        alpha: float = 1,
        comparison_categories: Sequence[int] | None = None,
        target_idx: int | None = None,
    ) -> np.ndarray:
        """The final maps ``(B, H, W)`` in [0, 1] (see the class docstring)."""
        if targets is None:
            targets = self.finer_targets(input_tensor, alpha, comparison_categories, target_idx)
        return self.base_cam(input_tensor, targets, eigen_smooth=eigen_smooth)
