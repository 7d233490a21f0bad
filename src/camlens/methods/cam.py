"""CAM: the original class activation map, from the classifier's weights.

Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, eq. 2:
for a network ending in global average pooling and one linear layer, the map of class k
is ``Σ_c W[k, c] · A_c``. No gradients are needed; the linear layer is the ``fc_layer``
option (a module or a dotted name) or, if omitted, the last ``nn.Linear`` whose input size
equals the layer's channel count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from camlens.errors import InputShapeError, LayerNotFoundError, TargetError
from camlens.layers import layer_by_name
from camlens.methods.registry import LayerData, Method, Option, register
from camlens.targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

__all__ = ["cam", "classifier_rows", "linear_classifier"]


def cam(data: LayerData, fc_layer: nn.Module | str | None = None) -> torch.Tensor:
    """CAM contribution: ``W[k, c] · A_c`` for each image's target class ``k``.

    ``fc_layer`` is read by :func:`classifier_rows`, which supplies ``data.class_weights``.
    """
    del fc_layer
    assert data.class_weights is not None, "CAM called without class weights"
    return data.per_channel(data.class_weights)


def linear_classifier(
    model: nn.Module, channels: int, fc_layer: nn.Module | str | None
) -> nn.Linear:
    """The linear classifier CAM reads: ``fc_layer`` (module or dotted name), or the last
    ``nn.Linear`` of ``model`` with ``channels`` input features."""
    layer = layer_by_name(model, fc_layer) if isinstance(fc_layer, str) else fc_layer
    if layer is None:
        matching = [
            module
            for module in model.modules()
            if isinstance(module, nn.Linear) and module.in_features == channels
        ]
        if not matching:
            raise LayerNotFoundError(
                f"CAM needs the linear classifier after global pooling, but no nn.Linear "
                f"with {channels} input features was found; pass `fc_layer=` or use GradCAM "
                "(equal to CAM up to a constant for such models)."
            )
        layer = matching[-1]
    if not isinstance(layer, nn.Linear) or layer.in_features != channels:
        raise InputShapeError(
            f"`fc_layer` must be an nn.Linear with {channels} input features (the target "
            f"layer's channels), got {layer!r}."
        )
    return layer


def classifier_rows(
    model: nn.Module, targets: Sequence[Any], channels: int, options: Mapping[str, Any]
) -> torch.Tensor:
    """``(B, C)``: the classifier row of each image's target class."""
    weight = linear_classifier(model, channels, options.get("fc_layer")).weight.detach()
    rows = []
    for target in targets:
        if type(target) is ClassifierOutputTarget:
            if not -weight.shape[0] <= target.category < weight.shape[0]:
                raise TargetError(
                    f"class index {target.category} is out of range for a classifier with "
                    f"{weight.shape[0]} classes."
                )
            rows.append(weight[target.category])
        elif type(target) is BinaryClassifierOutputTarget and weight.shape[0] == 1:
            rows.append(weight[0] * (1.0 if target.category == 1 else -1.0))
        else:
            raise TargetError(
                f"CAM explains one class logit of a linear classifier; {target!r} is not "
                "such a target. Use ClassifierOutputTarget, or a gradient method."
            )
    return torch.stack(rows)


register(
    Method(
        name="cam",
        label="CAM",
        class_name="CAM",
        reference="Zhou et al., CVPR 2016",
        contributions=cam,
        needs_gradients=False,
        class_weights=classifier_rows,
        options=(
            Option(
                name="fc_layer",
                kind=(nn.Module, str),
                default=None,
                nullable=True,
                help="the linear classifier (module or dotted name); None: found by width",
            ),
        ),
    )
)
