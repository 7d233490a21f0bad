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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from camlens.engine import (
    check_finite,
    forward_capture,
    layer_gradients,
    layer_map,
    prepare_input,
    run_method,
)
from camlens.errors import InputShapeError, ModelOutputError, TargetError
from camlens.layers import LayerSpec, layer_name, resolve_layers
from camlens.methods import get_method
from camlens.metrics.localisation import positive_mass_in_mask
from camlens.outputs import as_score_tensor, is_dense
from camlens.postprocess import familiar_maps, upsample
from camlens.regions import box_mask, largest_component
from camlens.reshape import ReshapeTransform

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
        layer_names: dotted names of the target layers (methods that use none, such as
            FullGrad, name their maps in ``extras["map_names"][method]``).
        layer_maps: per method, one ``(B, K, *grid)`` signed, unnormalised map per layer.
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
        class_id = self.classes[index]
        if self.class_names is not None and 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return f"class {class_id}"

    def raw_maps(self, method: str, layer: int = 0) -> torch.Tensor:
        """``(B, K, *input_spatial)`` signed, unnormalised maps of one layer, upsampled."""
        maps = self.layer_maps[get_method(method).name][layer]
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


class _MaskedClassScore:
    """Target of a perturbation method: one class's logits summed (or averaged) over a fixed
    mask, exactly the score :func:`explain_segmentation` computes for that class."""

    def __init__(self, category: int, mask: torch.Tensor, mean: bool) -> None:
        self.category = category
        self.mask = mask
        self.weight = mask.sum().clamp_min(1) if mean else None

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        total = (output[self.category] * self.mask).sum()
        return total if self.weight is None else total / self.weight

    def __repr__(self) -> str:
        return f"class {self.category} over its mask"


def _class_targets(
    class_ids: list[int], masks: torch.Tensor, reduction: str
) -> list[list[_MaskedClassScore]]:
    """Per image, one target per explained class, for the methods that re-run the model."""
    return [
        [
            _MaskedClassScore(class_id, masks[image, index], reduction == "mean")
            for index, class_id in enumerate(class_ids)
        ]
        for image in range(masks.shape[0])
    ]


def _label_maps(masks: Any, logits: torch.Tensor) -> torch.Tensor:
    predicted = logits.detach().argmax(dim=1)
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
        positive = torch.relu(upsample(maps.flatten(0, 1), size))
        peak = positive.flatten(1).amax(1).clamp_min(1e-30)
        scaled.append(positive / peak.view(-1, *[1] * len(size)))
    combined = torch.stack(scaled).sum(0)
    return positive_mass_in_mask(combined.reshape(masks.shape), masks)


def explain_segmentation(
    model: nn.Module,
    input_tensor: torch.Tensor,
    classes: Literal["present", "all"] | Sequence[int] | int = "present",
    methods: Sequence[str] | str = ("gradcam", "hirescam"),
    layers: LayerSpec | Sequence[LayerSpec] = "auto",
    masks: Literal["predicted"] | torch.Tensor | np.ndarray = "predicted",
    *,
    reduction: Literal["sum", "mean"] = "sum",
    region: Region | None = None,
    reshape_transform: ReshapeTransform | None = None,
    eigen_smooth: bool = False,
    method_options: dict[str, dict[str, Any]] | None = None,
    strategy: Literal["loop", "batched"] = "loop",
    class_names: Sequence[str] | None = None,
) -> SegmentationExplanation:
    """Explain every requested class of each image with one forward pass per batch.

    Args:
        model: a segmenter returning ``(B, C, H, W)`` logits (or ``{"out": ...}``, ...).
        input_tensor: ``(B, 3, H, W)`` images.
        classes: ``"present"`` (classes in any image's mask), ``"all"``, or class ids.
        methods: registry names, e.g. ``["gradcam", "hirescam", "segxrescam"]``.
        layers: target layers (modules, dotted names or ``"auto"``).
        masks: ``"predicted"`` (argmax of the logits) or an integer label map
            ``(B, H, W)`` at the output grid (ground truth).
        reduction: ``"sum"`` (HiResCAM's raw map then adds up to the score minus the head's
            offset) or ``"mean"`` over the mask.
        region: restrict each class mask to a box ``(top, bottom, left, right)``, a boolean
            mask, or ``"largest-component"`` (its largest connected component).
        method_options: per method name, its parameters (``{"segxrescam": {"pool_size": 2}}``,
            ``{"scorecam": {"batch_size": 32}}``, ``{"ablationcam": {"ratio": 0.25}}``).
        strategy: ``"loop"`` (a backward pass per class over the retained graph) or
            ``"batched"`` (one batched vector-Jacobian product for all classes).
        class_names: names for reports and records.
    """
    method_list = [get_method(m) for m in ([methods] if isinstance(methods, str) else methods)]
    if reduction not in ("sum", "mean"):
        raise ValueError(f"`reduction` must be 'sum' or 'mean', got {reduction!r}")
    for method in method_list:
        if method.needs_class_weights:
            raise TargetError(
                f"{method.title} needs a linear classifier after global pooling; a segmenter has "
                "none. Use gradcam or hirescam (CAM's generalisations)."
            )
    inputs = prepare_input(input_tensor, model)
    layer_modules = (
        resolve_layers(model, layers, probe_input=inputs[:1])
        if any(m.uses_target_layers for m in method_list)
        else []
    )
    names = [layer_name(model, layer) for layer in layer_modules]
    needs_gradients = any(m.needs_layer_gradients for m in method_list)
    output, activations = forward_capture(
        model, layer_modules, inputs, track_gradients=needs_gradients
    )
    with torch.enable_grad():
        logits = as_score_tensor(output)
        if not is_dense(logits):
            raise ModelOutputError(
                f"explain_segmentation needs dense logits (B, C, H, W), got shape "
                f"{tuple(logits.shape)}; for classifiers use camlens.explain."
            )
        for name, activation in zip(names, activations, strict=True):
            check_finite(activation, f"the activations of layer {name!r}")
        check_finite(logits, "the model output")
        labels = _label_maps(masks, logits)
        class_ids = _class_ids(classes, labels, logits.shape[1])
        if not class_ids:
            raise TargetError("no class to explain: the masks contain no valid class id")
        ids = torch.tensor(class_ids, device=labels.device)
        boolean = labels.unsqueeze(1) == ids.view(1, -1, *[1] * (labels.dim() - 1))
        class_masks = _restrict(boolean, region).to(logits.dtype)
        selected = logits.index_select(1, ids)  # (B, K, *spatial)
        scores = (selected * class_masks).flatten(2).sum(-1)
        if reduction == "mean":
            scores = scores / class_masks.flatten(2).sum(-1).clamp_min(1)
        check_finite(scores, "the target scores")
        per_class: list[list[torch.Tensor | None]]
        if not needs_gradients:
            per_class = [[None] * len(layer_modules) for _ in class_ids]
        elif strategy == "batched":
            count = len(class_ids)
            grad_outputs = torch.eye(count, dtype=scores.dtype, device=scores.device)
            grad_outputs = grad_outputs[:, None, :].expand(count, *scores.shape)
            stacked = layer_gradients(scores, activations, names, grad_outputs=grad_outputs)
            per_class = [[g[index] for g in stacked] for index in range(count)]
        elif strategy == "loop":
            per_class = [
                list(
                    layer_gradients(
                        scores[:, index],
                        activations,
                        names,
                        retain_graph=index < len(class_ids) - 1,
                    )
                )
                for index in range(len(class_ids))
            ]
        else:
            raise ValueError(f"`strategy` must be 'loop' or 'batched', got {strategy!r}")
    options = method_options or {}
    layer_maps: dict[str, list[torch.Tensor]] = {}
    maps: dict[str, torch.Tensor] = {}
    shares: dict[str, torch.Tensor] = {}
    map_names: dict[str, list[str]] = {}
    size = tuple(inputs.shape[2:])
    detached_masks = class_masks.detach()
    for method in method_list:
        map_names[method.name] = list(method.map_names or names)
        if method.runner is not None:
            uses_layers = method.uses_target_layers
            per_layer = run_method(
                method,
                model,
                inputs,
                layer_modules if uses_layers else [],
                names if uses_layers else [],
                activations if uses_layers else [],
                score_tensor=as_score_tensor,
                targets=_class_targets(class_ids, detached_masks, reduction),
                scores=scores,
                reshape_transform=reshape_transform,
                eigen_smooth=eigen_smooth,
                options=options.get(method.name),
            )
        else:
            per_layer = []
            for position, (layer, activation) in enumerate(
                zip(layer_modules, activations, strict=True)
            ):
                # class-agnostic methods (no gradients): one map serves every class
                gradients = [g[position] for g in per_class] if method.needs_gradients else [None]
                class_maps = [
                    layer_map(
                        method,
                        layer,
                        activation,
                        gradient,
                        reshape_transform=reshape_transform,
                        eigen_smooth=eigen_smooth,
                        options=options.get(method.name),
                    )
                    for gradient in gradients
                ]
                if len(class_maps) == 1:
                    class_maps = class_maps * len(class_ids)
                per_layer.append(torch.stack(class_maps, dim=1))  # (B, K, *grid)
        layer_maps[method.name] = per_layer
        final = familiar_maps([m.flatten(0, 1) for m in per_layer], size)
        maps[method.name] = final.reshape(*per_layer[0].shape[:2], *size)
        shares[method.name] = _positive_share(per_layer, detached_masks)
    return SegmentationExplanation(
        classes=class_ids,
        class_names=list(class_names) if class_names is not None else None,
        methods=[m.name for m in method_list],
        layer_names=names,
        layer_maps=layer_maps,
        maps=maps,
        masks=class_masks.detach(),
        scores=scores.detach(),
        mass_in_mask=shares,
        outputs=logits.detach(),
        predicted=logits.detach().argmax(dim=1),
        input_size=size,
        extras={
            "reduction": reduction,
            "strategy": strategy,
            "region": region,
            "map_names": map_names,
        },
    )
