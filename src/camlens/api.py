"""One-call entry point: ``camlens.explain(model, inputs, method="hirescam", layers="layer4")``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from camlens._renamed import renamed_keywords
from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.layers import LayerSpec
from camlens.reshape import ReshapeTransform

__all__ = ["explain"]


@renamed_keywords(input_tensor="inputs", method_options="options")
def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    method: str = "gradcam",
    layers: LayerSpec | Sequence[LayerSpec] = "auto",
    targets: Sequence[Any] | Any | None = None,
    *,
    reshape_transform: ReshapeTransform | None = None,
    grid: tuple[int, int] | None = None,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    fc_layer: nn.Module | str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Explanation:
    """Explain ``inputs`` with ``method`` at ``layers`` and return an Explanation.

    ``method`` is a registry name (``"gradcam"``, ``"hirescam"``, ``"gradcam++"``, ...; see
    :func:`camlens.methods.available_methods`); ``layers`` are modules, dotted names or
    ``"auto"``; ``targets`` are target callables, class indices or ``None`` (the prediction);
    ``options`` are the method's declared options (``{"pool_size": 2}`` for Seg-XRes-CAM,
    ``{"batch_size": 32}`` for ScoreCAM / AblationCAM; ``camlens methods`` lists them);
    ``fc_layer`` is CAM's ``fc_layer`` option; ``grid=(h, w)`` is the patch grid of token
    layers when the model's token layout cannot be read from its attributes.
    ``input_tensor=`` and ``method_options=`` are the deprecated spellings of ``inputs=`` and
    ``options=``.

    Example:
        >>> exp = camlens.explain(model, x, method="hirescam", layers="encoder.layer4")
        >>> exp.layer_maps[0].shape  # signed, unnormalised, at the layer's grid
    """
    merged = dict(options or {})
    if fc_layer is not None:
        merged["fc_layer"] = fc_layer
    explainer = Explainer(
        model, layers, method, reshape_transform=reshape_transform, grid=grid, options=merged
    )
    return explainer.explain(inputs, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
