"""``pytorch_grad_cam.ablation_cam`` → camlens's AblationCAM, taking upstream's
``ablation_layer=`` selectors (:mod:`camlens.compat.ablation_layer`) without a warning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from camlens.compat.ablation_layer import AblationLayer
from camlens.familiar import AblationCAM as _AblationCAM
from camlens.layers import LayerSpec
from camlens.reshape import ReshapeTransform

__all__ = ["AblationCAM"]


class AblationCAM(_AblationCAM):
    """:class:`camlens.AblationCAM` with upstream's signature
    ``(model, target_layers, reshape_transform=None, ablation_layer=..., batch_size=...,
    ratio_channels_to_ablate=1.0)``.

    An :class:`~camlens.compat.ablation_layer.AblationLayer` or ``AblationLayerVit`` selects
    what camlens does anyway (see that module); any other module is ignored with a warning,
    as by :class:`camlens.AblationCAM`. ``batch_size=None`` (camlens's default; upstream's is
    32) sizes chunks from ``memory_budget_mb``: the maps are the same. The other keyword
    options (``memory_budget_mb``, ``progress``, ``rerun``, ``use_cuda``) are camlens's.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        ablation_layer: nn.Module | None = None,
        batch_size: int | None = None,
        ratio_channels_to_ablate: float = 1.0,
        **options: Any,
    ) -> None:
        if isinstance(ablation_layer, AblationLayer):
            ablation_layer = None
        super().__init__(
            model,
            target_layers,
            reshape_transform,
            ablation_layer,
            batch_size,
            ratio_channels_to_ablate,
            **options,
        )
