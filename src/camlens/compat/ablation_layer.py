"""``pytorch_grad_cam.ablation_layer`` → camlens: what an ablation layer selects.

Upstream swaps an ``AblationLayer`` module into the model in place of the target layer to
produce ablated copies of its output. camlens never swaps modules: AblationCAM returns the
ablated copies from a temporary forward hook (:mod:`camlens.methods.ablation`), zeroing a
channel at every grid position the reshape reads — for a CNN the channel's map, for a ViT
the channel in every patch token (the class and register tokens keep their values). So the
layer classes here are *selectors* that :class:`camlens.compat.AblationCAM` accepts:

* :class:`AblationLayer` — channels of a ``(B, C, h, w)`` feature map (the default);
* :class:`AblationLayerVit` — channels of a token layer ``(B, tokens, C)`` (what camlens does
  for a token layer anyway, through the model's token layout or ``reshape_transform``);
* :class:`AblationLayerFasterRCNN` — a detector's feature pyramid: not supported (a target
  layer must output one tensor), so constructing it raises.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from camlens.errors import CamlensError

__all__ = ["AblationLayer", "AblationLayerFasterRCNN", "AblationLayerVit"]


class AblationLayer(nn.Module):
    """Selects AblationCAM's channel ablation of a feature map (camlens's default).

    It holds no state and is never put into the model; calling it is an error, because
    camlens ablates through a temporary hook instead.
    """

    def forward(self, *_args: Any) -> Any:
        """Not a layer of the model: camlens does not swap modules."""
        raise CamlensError(
            f"{type(self).__name__} only selects AblationCAM's behaviour; camlens never puts it "
            "into the model (ablation runs through a temporary forward hook). Pass it as "
            "AblationCAM(..., ablation_layer=...)."
        )


class AblationLayerVit(AblationLayer):
    """Selects ablation of a token layer's channels: in every patch token, prefix tokens
    kept (camlens does this for any token layer; the selector documents it)."""


class AblationLayerFasterRCNN(AblationLayer):
    """A detector's feature-pyramid ablation: not supported by camlens."""

    def __init__(self) -> None:
        raise CamlensError(
            "AblationLayerFasterRCNN is not supported: camlens explains layers that output one "
            "tensor and models whose output is a score tensor, not a detector's boxes; for a "
            "detector's backbone use camlens.EigenCAM on one feature map (gradient-free)."
        )
