"""Targets: what number about one image's model output an explanation explains.

A target is a callable that takes the output of ONE image (``[K]`` for a classifier,
``[K, *spatial]`` for a segmenter, ``[D]`` for an embedding) and returns a scalar tensor,
exactly as in pytorch-grad-cam, so custom targets written for it keep working. The
targets here also check their input and say what to fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from camlens.errors import InputShapeError, TargetError

__all__ = [
    "BinaryClassifierOutputTarget",
    "ClassifierOutputReST",
    "ClassifierOutputSoftmaxTarget",
    "ClassifierOutputTarget",
    "EmbeddingSimilarityTarget",
    "FasterRCNNBoxScoreTarget",
    "FinerWeightedTarget",
    "RawScoresOutputTarget",
    "SemanticSegmentationTarget",
    "SimilarityToConceptTarget",
    "SoftmaxOutputTarget",
    "class_label",
    "target_score",
]


def class_label(class_id: int, class_names: Sequence[str] | None) -> str:
    """The display name of ``class_id``: its entry in ``class_names``, else ``"class N"``."""
    if class_names is not None and 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"


def target_score(target: Any, output: torch.Tensor, where: str) -> torch.Tensor:
    """``target(output)`` as a 0-d tensor; anything else is a :class:`TargetError` naming
    ``where`` (e.g. ``"target 2"``). The one place that checks what a target returns."""
    value = target(output)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise TargetError(
            f"{where} ({target!r}) returned {shape}; a target must return one scalar tensor "
            "per image."
        )
    return value.reshape(())


def _class_scores(output: torch.Tensor, category: int, what: str, axis: int = 0) -> torch.Tensor:
    """``output[category]`` along the class ``axis`` (the first axis of one image's output)."""
    if output.dim() == 0:
        raise TargetError(f"{what} needs per-class scores, but the model output is a scalar")
    classes = output.shape[axis]
    if not -classes <= category < classes:
        raise TargetError(
            f"class index {category} is out of range for a model output with {classes} classes "
            f"(valid: 0..{classes - 1}); check `category` in {what}."
        )
    return output.select(axis, category)


class ClassifierOutputTarget:
    """The logit of class ``category``: ``output[category]`` for one image's ``[K]`` output
    (and ``output[:, category]`` for a ``[B, K]`` batch, as in pytorch-grad-cam)."""

    def __init__(self, category: int) -> None:
        self.category = int(category)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        axis = 1 if model_output.dim() == 2 else 0
        return _class_scores(model_output, self.category, type(self).__name__, axis)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category})"


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """The softmax probability of class ``category`` (competes with the other classes)."""

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        axis = 1 if model_output.dim() == 2 else 0
        _class_scores(model_output, self.category, type(self).__name__, axis)
        return torch.softmax(model_output, dim=-1).select(axis, self.category)


class BinaryClassifierOutputTarget(ClassifierOutputTarget):
    """For a single-logit binary classifier: the logit for ``category == 1``, its negation
    for ``category == 0`` (evidence for the negative class)."""

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        sign = 1.0 if self.category == 1 else -1.0
        return model_output.sum() * sign if model_output.numel() == 1 else model_output * sign


class ClassifierOutputReST(ClassifierOutputTarget):
    """ReST, the Residual Softmax Target-class score of ShapleyCAM (Cai, "CAMs as Shapley
    value-based explainers", arXiv:2501.06261): the logit of ``category`` plus its log-softmax,

    ``output[c] - cross_entropy(output, c) = output[c] + log_softmax(output)[c]
    = 2·output[c] - logsumexp(output)``,

    so it rewards the class's own evidence (pre-softmax) and its margin over the other classes
    (post-softmax) together. Same numbers as pytorch-grad-cam's ``ClassifierOutputReST``; one
    image's ``[K]`` output gives a scalar, a ``[B, K]`` batch gives ``[B]``, as there.
    """

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        axis = 1 if model_output.dim() == 2 else 0
        logit = _class_scores(model_output, self.category, type(self).__name__, axis)
        return 2 * logit - torch.logsumexp(model_output, dim=axis)


class SoftmaxOutputTarget:
    """The softmax over the last axis of the output: ``softmax(output, dim=-1)``, a ``[K]``
    vector per image (pytorch-grad-cam's ``SoftmaxOutputTarget``, same numbers).

    Not a scalar, so not an explanation target: camlens's explainers reject it with a
    :class:`~camlens.errors.TargetError` (in pytorch-grad-cam it fails at ``backward``). It
    scores whole probability vectors for metrics and for your own code; to explain one
    class's probability use :class:`ClassifierOutputSoftmaxTarget`.
    """

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if model_output.dim() == 0:
            raise TargetError(f"{type(self).__name__} needs per-class scores, got a scalar")
        return torch.softmax(model_output, dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RawScoresOutputTarget:
    """The model output itself, unchanged (pytorch-grad-cam's ``RawScoresOutputTarget``).

    A scalar only when the model gives one number per image (a regressor, a single-logit
    classifier); otherwise, like :class:`SoftmaxOutputTarget`, a score vector that the
    explainers reject with a :class:`~camlens.errors.TargetError`.
    """

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FinerWeightedTarget:
    """Finer-CAM's target (Zhang et al., "Finer-CAM: Spotting the Difference Reveals
    Finer Details for Visual Explanation", CVPR 2025): the main class's logit against
    similar classes, each weighted by its softmax probability,

    ``Σ_i p_i · (y_main - alpha · y_i) / (Σ_i p_i + 1e-9)``, ``p = softmax(y)``, ``i`` over
    ``comparison_categories``

    (``alpha = 0`` is the plain main logit, ``alpha = 1`` the probability-weighted logit
    difference). Classes are on the last axis, as in pytorch-grad-cam's class of the same
    name and signature, with the same numbers: one image's ``[K]`` output gives a scalar.
    Unlike pytorch-grad-cam (whose empty sum gives a Python ``0.0`` that cannot be
    back-propagated), an empty ``comparison_categories`` is refused when the target is made.
    """

    def __init__(
        self, main_category: int, comparison_categories: Sequence[int], alpha: float
    ) -> None:
        self.main_category = int(main_category)
        self.comparison_categories = [int(c) for c in comparison_categories]
        if not self.comparison_categories:
            raise ValueError(
                "FinerWeightedTarget needs at least one comparison category to weigh the "
                "main class against; use ClassifierOutputTarget for the main logit alone."
            )
        self.alpha = float(alpha)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        main = _class_scores(model_output, self.main_category, name, axis=-1)
        for category in self.comparison_categories:
            _class_scores(model_output, category, f"{name}'s comparison_categories", axis=-1)
        classes = model_output.shape[-1]
        index = torch.tensor(
            [c % classes for c in self.comparison_categories], device=model_output.device
        )
        others = model_output.index_select(-1, index)
        weights = torch.softmax(model_output, dim=-1).index_select(-1, index)
        numerator = (weights * (main.unsqueeze(-1) - self.alpha * others)).sum(-1)
        return numerator / (weights.sum(-1) + 1e-9)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.main_category}, {self.comparison_categories}, "
            f"alpha={self.alpha})"
        )


def _box_iou(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` intersection over union of boxes ``(N, 4)`` and ``(M, 4)`` given as
    ``(x1, y1, x2, y2)``; a pair whose union is empty has IoU 0 (never NaN)."""
    top_left = torch.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = torch.minimum(first[:, None, 2:], second[None, :, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(-1)
    areas = [(b[:, 2:] - b[:, :2]).clamp_min(0).prod(-1) for b in (first, second)]
    union = areas[0][:, None] + areas[1][None, :] - intersection
    return intersection / union.clamp_min(torch.finfo(union.dtype).tiny)


class FasterRCNNBoxScoreTarget:
    """How well a detector still finds given boxes: for torchvision-style detection outputs
    (one image's ``{"boxes": (M, 4), "labels": (M,), "scores": (M,)}``), as
    pytorch-grad-cam's class of the same name and signature.

    For each requested box and label, the detected box with the highest IoU counts if that
    IoU is above ``iou_threshold`` and its label is the requested one; it adds its IoU plus
    its score. The target is the sum over requested boxes. When nothing matches (or nothing
    is detected) the score is 0 and still connected to the output, so gradients are zeros
    rather than an error (pytorch-grad-cam returns a constant there, which cannot be
    back-propagated). Boxes are ``(x1, y1, x2, y2)``, as numpy, lists or tensors.

    The engine hands each such target its image's detection dict (a detector's output, a
    list of ``{"boxes", "labels", "scores"}``), so gradient methods and EigenCAM explain
    detectors as in pytorch-grad-cam's Faster R-CNN example, with
    ``fasterrcnn_reshape_transform`` turning the FPN's feature dict into one grid.
    """

    def __init__(self, labels: Sequence[int], bounding_boxes: Any, iou_threshold: float = 0.5):
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
        self.bounding_boxes = torch.as_tensor(np.asarray(bounding_boxes, dtype=np.float64))
        self.bounding_boxes = self.bounding_boxes.reshape(-1, 4)
        if self.bounding_boxes.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"FasterRCNNBoxScoreTarget: {self.labels.shape[0]} labels for "
                f"{self.bounding_boxes.shape[0]} boxes; pass one label per box."
            )
        self.iou_threshold = float(iou_threshold)

    def __call__(self, model_outputs: Any) -> torch.Tensor:
        keys = ("boxes", "labels", "scores")
        missing = [
            k for k in keys if not isinstance(model_outputs, Mapping) or k not in model_outputs
        ]
        if missing:
            raise TargetError(
                f"{type(self).__name__} needs one image's detections, a dict with 'boxes', "
                f"'labels' and 'scores' (torchvision's detection output); missing {missing}."
            )
        boxes, labels = model_outputs["boxes"], model_outputs["labels"]
        scores = model_outputs["scores"]
        zero = scores.sum() * 0 + (boxes.sum() * 0 if boxes.is_floating_point() else 0)
        if boxes.shape[0] == 0 or self.labels.shape[0] == 0:
            return zero
        requested = self.bounding_boxes.to(boxes.device, boxes.dtype)
        overlaps = _box_iou(requested, boxes)  # (requested, detected)
        best = overlaps.argmax(dim=1)
        best_iou = overlaps.gather(1, best[:, None])[:, 0]
        matched = (best_iou > self.iou_threshold) & (labels[best] == self.labels.to(labels.device))
        contribution = torch.where(matched, best_iou + scores[best], torch.zeros_like(best_iou))
        return contribution.sum() + zero

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(labels={self.labels.tolist()}, "
            f"{self.bounding_boxes.shape[0]} boxes, iou_threshold={self.iou_threshold})"
        )


def _as_mask(mask: Any) -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, torch.Tensor):
        raise TypeError(
            f"`mask` must be a numpy array or a torch tensor, got {type(mask).__name__}"
        )
    return mask


class SemanticSegmentationTarget:
    """The class-``category`` logits of a segmenter, reduced over ``mask``.

    ``reduction="sum"`` (the pytorch-grad-cam convention) sums ``output[category] * mask``,
    so HiResCAM's raw map adds up to this score minus the head's constant offset;
    ``"mean"`` divides by the mask's total weight, making scores comparable across regions
    of different sizes. ``mask`` may be numpy or torch, boolean or float (soft masks
    weight pixels), on any device; it must have the output's spatial shape. An empty mask
    gives a score of zero (and so an all-zero gradient map) with a warning, never NaN.

    Calling it involves no data-dependent branch, so perturbation methods score many outputs
    at once with ``torch.vmap``. ``warn_if_empty=False`` silences the empty-mask warning for
    callers that report empty classes themselves.
    """

    def __init__(
        self,
        category: int,
        mask: Any,
        reduction: Literal["sum", "mean"] = "sum",
        *,
        warn_if_empty: bool = True,
    ) -> None:
        if reduction not in ("sum", "mean"):
            raise ValueError(f"`reduction` must be 'sum' or 'mean', got {reduction!r}")
        self.category = int(category)
        self.mask = _as_mask(mask)
        self.reduction = reduction
        self.empty = not bool(self.mask.sum() != 0)
        self.warn_if_empty = warn_if_empty
        self._cache: tuple[torch.device, torch.dtype, torch.Tensor] | None = None

    def _mask_like(self, scores: torch.Tensor) -> torch.Tensor:
        cached = self._cache
        if cached is None or cached[0] != scores.device or cached[1] != scores.dtype:
            mask = self.mask.to(device=scores.device, dtype=scores.dtype)
            self._cache = cached = (scores.device, scores.dtype, mask)
        return cached[2]

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        if model_output.dim() < 2:
            raise TargetError(
                f"{name} needs a dense output [K, H, W] per image, got shape "
                f"{tuple(model_output.shape)}; use ClassifierOutputTarget for classifiers."
            )
        scores = _class_scores(model_output, self.category, name)
        if tuple(self.mask.shape) != tuple(scores.shape):
            raise InputShapeError(
                f"{name}: mask shape {tuple(self.mask.shape)} does not match the output's "
                f"spatial shape {tuple(scores.shape)}; resize the mask to the model's output "
                "size (nearest-neighbour for label masks)."
            )
        mask = self._mask_like(scores)
        total = (scores * mask).sum()
        if self.empty:
            if self.warn_if_empty:
                warnings.warn(
                    f"{name}(category={self.category}): the mask is empty, so the score is 0 "
                    "and gradient maps are all zeros.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return total
        return total / mask.sum() if self.reduction == "mean" else total

    def __repr__(self) -> str:
        pixels = int((self.mask != 0).sum())
        return f"{type(self).__name__}({self.category}, mask={pixels} px, {self.reduction})"


class EmbeddingSimilarityTarget:
    """Cosine similarity between the model's embedding and ``reference`` (``[D]``).

    Explains "what makes this image look like that one" for embedding models (retrieval,
    self-supervised backbones). Multi-dimensional outputs are flattened per image.
    """

    def __init__(self, reference: Any) -> None:
        self.reference = _as_mask(reference).flatten()

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        embedding = model_output.flatten()
        if embedding.numel() != self.reference.numel():
            raise TargetError(
                f"{type(self).__name__}: the embedding has {embedding.numel()} values but the "
                f"reference has {self.reference.numel()}; use a reference from the same layer."
            )
        reference = self.reference.to(device=embedding.device, dtype=embedding.dtype)
        return F.cosine_similarity(embedding, reference, dim=0)


#: pytorch-grad-cam's name for the same target.
SimilarityToConceptTarget = EmbeddingSimilarityTarget
