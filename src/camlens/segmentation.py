"""Every class of a segmentation, explained from one forward pass.

Users of segmenters ask, class by class, "is my model looking at the right tissue?". For
each requested class ``k`` of each image the target is the class-``k`` logits summed (or
averaged) over the class mask — the predicted mask by default, a ground-truth label map on
request, optionally restricted to a box or to the largest connected component. One forward
pass serves all classes of the batch; the gradient of each class's score reuses its graph
(``strategy="loop"``: one backward pass per class over the retained graph;
``strategy="batched"``: all classes at once with batched vector-Jacobian products — see
bench/RESULTS.md for which is faster where). Perturbation methods (ScoreCAM, AblationCAM)
score every class from one set of masked or ablated re-runs, and FullGrad takes one
backward pass per class from one forward pass. Each class's maps are identical to what a
single-class call with the same mask gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from camlens._renamed import renamed_keywords
from camlens.engine import Strategy, explain_batch, plan_methods, prepare_input
from camlens.errors import InputShapeError, ModelOutputError, TargetError
from camlens.explanation import pick_layer
from camlens.layers import LayerSpec, layer_name, resolve_layers
from camlens.masks import (
    box_mask,
    largest_component,
    positive_mass_in_mask,
    resample_positive,
)
from camlens.methods import get_method
from camlens.outputs import is_dense
from camlens.postprocess import upsample
from camlens.reshape import ReshapeTransform
from camlens.target_sets import ClassMaskTargets
from camlens.targets import class_label

__all__ = ["SegmentationExplanation", "explain_segmentation"]

Region = Literal["largest-component"] | tuple[int, int, int, int] | torch.Tensor | np.ndarray


@dataclass
class SegmentationExplanation:
    """Per image, class and method: raw maps, final maps, class masks, scores, mass in mask.

    ``K`` below is the number of explained classes, in :attr:`classes` order.

    Attributes:
        classes: the explained class ids.
        class_names: their names, when given.
        methods: registry names of the methods.
        layer_names: dotted names of the target layers.
        map_names: per method, the names of its raw maps: the target layers, or the
            method's own map names for methods without target layers (FullGrad).
        layer_maps: per method, one ``(B, K, *grid)`` signed, unnormalised map per name.
        maps: per method, ``(B, K, *input_spatial)`` final maps in [0, 1];
            ``result[method]`` is this tensor.
        masks: ``(B, K, *output_spatial)`` the class masks (float weights) the targets used.
        scores: ``(B, K)`` the target scores.
        mass_in_mask: per method, ``(B, K)`` the share of positive CAM mass inside the class
            mask (NaN where the map has no positive mass, e.g. an empty mask).
        outputs: ``(B, C, *output_spatial)`` the model's logits; ``predicted`` their argmax.
    """

    classes: list[int]
    class_names: list[str] | None
    methods: list[str]
    layer_names: list[str]
    map_names: dict[str, list[str]]
    layer_maps: dict[str, list[torch.Tensor]]
    maps: dict[str, torch.Tensor]
    masks: torch.Tensor
    scores: torch.Tensor
    mass_in_mask: dict[str, torch.Tensor]
    outputs: torch.Tensor
    predicted: torch.Tensor
    input_size: tuple[int, ...]
    extras: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, method: str) -> torch.Tensor:
        return self.maps[get_method(method).name]

    def class_label(self, index: int) -> str:
        """The display name of the ``index``-th explained class."""
        return class_label(self.classes[index], self.class_names)

    def raw_maps(self, method: str | None = None, layer: int | str | None = None) -> torch.Tensor:
        """``(B, K, *input_spatial)`` signed, unnormalised maps of one layer, upsampled.

        ``method`` may be omitted when one method was run, ``layer`` (an index or a name of
        ``map_names[method]``) when it has one map.
        """
        if method is None:
            if len(self.methods) != 1:
                raise ValueError(
                    f"{len(self.methods)} methods: pass `method=`, one of {self.methods}"
                )
            method = self.methods[0]
        name = get_method(method).name
        maps = self.layer_maps[name][pick_layer(self.map_names[name], layer)]
        batch, classes = maps.shape[:2]
        flat = upsample(maps.flatten(0, 1), self.input_size)
        return flat.reshape(batch, classes, *flat.shape[1:])

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per (image, class, method): score, mask pixels, mass in mask."""
        rows = []
        pixels = (self.masks > 0).flatten(2).sum(-1)
        for image in range(self.scores.shape[0]):
            for index, class_id in enumerate(self.classes):
                for method in self.methods:
                    share = float(self.mass_in_mask[method][image, index])
                    rows.append(
                        {
                            "image": image,
                            "class_id": class_id,
                            "class_name": self.class_label(index),
                            "method": method,
                            "score": float(self.scores[image, index]),
                            "mask_pixels": int(pixels[image, index]),
                            "mass_in_mask": None if np.isnan(share) else share,
                        }
                    )
        return rows


def _label_maps(masks: Any, predicted: torch.Tensor) -> torch.Tensor:
    """The label maps the class masks come from: ``predicted`` (the logits' argmax) or the
    user's, checked against its shape."""
    if isinstance(masks, str):
        if masks != "predicted":
            raise ValueError(f"`masks` must be 'predicted' or a label map, got {masks!r}")
        return predicted
    labels = torch.from_numpy(np.asarray(masks)) if not isinstance(masks, torch.Tensor) else masks
    labels = labels.to(predicted.device)
    if labels.dim() == predicted.dim() - 1:
        labels = labels.unsqueeze(0)
    if tuple(labels.shape) != tuple(predicted.shape) or labels.is_floating_point():
        raise InputShapeError(
            f"`masks` must be an integer label map of shape {tuple(predicted.shape)} (batch × "
            f"the model's output grid), got {tuple(labels.shape)} {labels.dtype}; resize "
            "ground truth with nearest-neighbour interpolation."
        )
    return labels.long()


def _class_ids(classes: Any, labels: torch.Tensor, num_classes: int) -> list[int]:
    if isinstance(classes, str):
        if classes == "all":
            return list(range(num_classes))
        if classes == "present":
            present = torch.unique(labels)
            return [int(c) for c in present if 0 <= int(c) < num_classes]
        raise ValueError(f"`classes` must be 'present', 'all' or a list of ids, got {classes!r}")
    ids = [int(c) for c in ([classes] if isinstance(classes, int) else classes)]
    for class_id in ids:
        if not 0 <= class_id < num_classes:
            raise TargetError(
                f"class index {class_id} is out of range for a segmenter with {num_classes} "
                f"classes (valid: 0..{num_classes - 1})."
            )
    if len(set(ids)) != len(ids):
        raise ValueError(f"`classes` lists a class twice: {ids}")
    return ids


def _restrict(masks: torch.Tensor, region: Region | None) -> torch.Tensor:
    """Apply ``region`` to boolean class masks ``(B, K, H, W)``."""
    if region is None:
        return masks
    if isinstance(region, str):
        if region != "largest-component":
            raise ValueError(f"`region` must be 'largest-component', a box or a mask: {region!r}")
        restricted = torch.zeros_like(masks)
        for image in range(masks.shape[0]):
            for index in range(masks.shape[1]):
                restricted[image, index] = largest_component(masks[image, index])
        return restricted
    if isinstance(region, tuple | list):
        return masks & box_mask(masks.shape, region, device=masks.device)
    area = torch.as_tensor(np.asarray(region) if isinstance(region, np.ndarray) else region)
    area = area.to(device=masks.device, dtype=torch.bool)
    if tuple(area.shape[-2:]) != tuple(masks.shape[-2:]):
        raise InputShapeError(
            f"`region` mask shape {tuple(area.shape)} does not match the output grid "
            f"{tuple(masks.shape[-2:])}"
        )
    return masks & (area[:, None] if area.dim() == 3 else area)


def _positive_share(layer_maps: list[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """Share of positive map mass inside ``masks``: ``(B, K)``, NaN where there is none.

    With several layers, each layer's positive part is scaled to a maximum of 1 first, so
    no layer dominates by the scale of its activations.
    """
    if len(layer_maps) == 1:
        return positive_mass_in_mask(layer_maps[0], masks)
    size = tuple(masks.shape[2:])
    scaled = []
    for maps in layer_maps:
        positive = torch.relu(maps.flatten(0, 1))  # at the layer's grid, then resampled
        peak = positive.flatten(1).amax(1).clamp_min(1e-30)
        scaled.append(resample_positive(positive / peak.view(-1, *[1] * len(size)), size))
    combined = torch.stack(scaled).sum(0)
    return positive_mass_in_mask(combined.reshape(masks.shape), masks)


@renamed_keywords(input_tensor="inputs", method_options="options")
def explain_segmentation(
    model: nn.Module,
    inputs: torch.Tensor,
    classes: Literal["present", "all"] | Sequence[int] | int = "present",
    methods: Sequence[str] | str = ("gradcam", "hirescam"),
    layers: LayerSpec | Sequence[LayerSpec] = "auto",
    masks: Literal["predicted"] | torch.Tensor | np.ndarray = "predicted",
    *,
    reduction: Literal["sum", "mean"] = "sum",
    region: Region | None = None,
    reshape_transform: ReshapeTransform | None = None,
    grid: tuple[int, int] | None = None,
    eigen_smooth: bool = False,
    options: Mapping[str, Any] | None = None,
    strategy: Strategy = "loop",
    class_names: Sequence[str] | None = None,
) -> SegmentationExplanation:
    """Explain every requested class of each image with one forward pass per batch.

    Args:
        model: a segmenter returning ``(B, C, H, W)`` logits (or ``{"out": ...}``, ...).
        inputs: ``(B, 3, H, W)`` images.
        classes: ``"present"`` (classes in any image's mask), ``"all"``, or class ids.
        methods: registry names, e.g. ``["gradcam", "hirescam", "segxrescam"]``.
        layers: target layers (modules, dotted names or ``"auto"``).
        masks: ``"predicted"`` (argmax of the logits) or an integer label map
            ``(B, H, W)`` at the output grid (ground truth).
        reduction: ``"sum"`` (HiResCAM's raw map then adds up to the score minus the head's
            offset) or ``"mean"`` over the mask.
        region: restrict each class mask to a box ``(top, bottom, left, right)``, a boolean
            mask, or ``"largest-component"`` (its largest connected component).
        options: the methods' options: flat for one method (``{"pool_size": 2}``), nested by
            method name for several (``{"segxrescam": {"pool_size": 2}, "scorecam":
            {"batch_size": 32}}``); flat options with several methods are an error.
        strategy: ``"loop"`` (a backward pass per class over the retained graph) or
            ``"batched"`` (one batched vector-Jacobian product for all classes).
        class_names: names for reports and records.
        grid: the patch grid ``(h, w)`` of token layers (a ViT encoder), when the model's
            token layout cannot be read from its attributes.

    ``input_tensor=`` and ``method_options=`` are the deprecated spellings of ``inputs=`` and
    ``options=``.
    """
    calls = plan_methods([methods] if isinstance(methods, str) else list(methods), options)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"`reduction` must be 'sum' or 'mean', got {reduction!r}")
    for call in calls:
        if call.method.class_weights is not None:
            raise TargetError(
                f"{call.method.label} needs a linear classifier after global pooling; a "
                "segmenter has none. Use gradcam or hirescam (CAM's generalisations)."
            )
    if strategy not in ("loop", "batched"):
        raise ValueError(f"`strategy` must be 'loop' or 'batched', got {strategy!r}")
    inputs = prepare_input(inputs, model)
    layer_modules = (
        resolve_layers(model, layers, probe_input=inputs[:1], grid=grid)
        if any(call.method.uses_target_layers for call in calls)
        else []
    )
    names = [layer_name(model, layer) for layer in layer_modules]

    predicted: list[torch.Tensor] = []  # the logits' argmax, taken once (a full pass)

    def make_targets(logits: torch.Tensor) -> ClassMaskTargets:
        predicted.append(logits.detach().argmax(dim=1))
        labels = _label_maps(masks, predicted[-1])
        class_ids = _class_ids(classes, labels, logits.shape[1])
        if not class_ids:
            raise TargetError("no class to explain: the masks contain no valid class id")
        ids = torch.tensor(class_ids, device=labels.device)
        boolean = labels.unsqueeze(1) == ids.view(1, -1, *[1] * (labels.dim() - 1))
        return ClassMaskTargets(class_ids, _restrict(boolean, region).to(logits.dtype), reduction)

    result = explain_batch(
        model,
        inputs,
        calls,
        layer_modules,
        names,
        make_targets,
        reshape_transform=reshape_transform,
        grid=grid,
        eigen_smooth=eigen_smooth,
        strategy=strategy,
        check_outputs=_check_dense,
    )
    targets = result.targets
    assert isinstance(targets, ClassMaskTargets)
    class_masks = targets.masks.detach()
    return SegmentationExplanation(
        classes=targets.class_ids,
        class_names=list(class_names) if class_names is not None else None,
        methods=[call.name for call in calls],
        layer_names=names,
        map_names=result.map_names,
        layer_maps=result.layer_maps,
        maps=result.maps,
        masks=class_masks,
        scores=result.scores,
        mass_in_mask={
            name: _positive_share(maps, class_masks) for name, maps in result.layer_maps.items()
        },
        outputs=result.outputs,
        predicted=predicted[-1] if predicted else result.outputs.argmax(dim=1),
        input_size=result.input_size,
        extras={"reduction": reduction, "strategy": strategy, "region": region},
    )


def _check_dense(logits: torch.Tensor) -> None:
    if not is_dense(logits):
        raise ModelOutputError(
            f"explain_segmentation needs dense logits (B, C, H, W), got shape "
            f"{tuple(logits.shape)}; for classifiers use camlens.explain."
        )
