"""One-call entry point: ``camlens.explain(model, x, method="hirescam", layers="layer4")``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from camlens.base import BaseCAM
from camlens.explanation import Explanation
from camlens.layers import LayerSpec
from camlens.reshape import ReshapeTransform

__all__ = ["explain"]


def explain(
    model: nn.Module,
    input_tensor: torch.Tensor,
    method: str = "gradcam",
    layers: LayerSpec | Sequence[LayerSpec] = "auto",
    targets: Sequence[Any] | Any | None = None,
    *,
    reshape_transform: ReshapeTransform | None = None,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    fc_layer: nn.Module | str | None = None,
    method_options: Mapping[str, Any] | None = None,
) -> Explanation:
    """Explain ``input_tensor`` with ``method`` at ``layers`` and return an Explanation.

    ``method`` is a registry name (``"gradcam"``, ``"hirescam"``, ``"gradcam++"``, ...; see
    :func:`camlens.methods.available_methods`); ``layers`` are modules, dotted names or
    ``"auto"``; ``targets`` are target callables, class indices or ``None`` (the prediction);
    ``method_options`` are the method's parameters (``{"pool_size": 2}`` for Seg-XRes-CAM,
    ``{"batch_size": 32}`` or ``{"memory_budget_mb": 1024}`` for ScoreCAM / AblationCAM, ...).

    Example:
        >>> exp = camlens.explain(model, x, method="hirescam", layers="encoder.layer4")
        >>> exp.layer_maps[0].shape  # signed, unnormalised, at the layer's grid
    """
    if targets is not None and (callable(targets) or isinstance(targets, int)):
        targets = [targets]
    explainer = BaseCAM(
        model,
        layers,
        reshape_transform=reshape_transform,
        method=method,
        fc_layer=fc_layer,
        method_options=method_options,
    )
    return explainer.explain(
        input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth
    )
