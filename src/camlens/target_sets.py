"""Targets for a batch: ``K`` targets per image, and the scores they give, ``(B, K)``.

The engine explains a ``(B, K)`` grid of targets from one forward pass: ``K = 1`` for the
familiar classes (one target per image), ``K`` classes of a segmentation for
:func:`~camlens.explain_segmentation`. A :class:`TargetSet` holds the per-image target
callables (what methods that re-run the model score their copies with) and computes the
``(B, K)`` scores on the unperturbed output — one call per target in general, one vectorised
masked sum for the class masks of a segmentation.

:func:`resolve_targets` turns the user's ``targets`` argument into one target per image:
``None`` means "the prediction" (the top class of a classifier; for a segmenter, each image's
dominant predicted class over its predicted mask, with a warning saying which); integers are
class indices; one target is broadcast to every image; any other count that is not the batch
size is an error, never a silent truncation.

A detector's output (:class:`~camlens.outputs.Detections`, one dict per image) goes through
the same :meth:`TargetSet.scores`: each target receives its image's dict, as
pytorch-grad-cam's targets do; such outputs need explicit callable targets (there is no
"predicted class" of a set of boxes).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from camlens.errors import InputShapeError, TargetError
from camlens.outputs import Detections, is_dense
from camlens.targets import ClassifierOutputTarget, SemanticSegmentationTarget, target_score

__all__ = ["ClassMaskTargets", "NoDetectionTarget", "TargetSet", "resolve_targets"]

Target = Callable[[torch.Tensor], torch.Tensor]


def _batch_size(outputs: torch.Tensor | Detections) -> int:
    """Images in a model output: the first axis of a tensor, the entries of detections."""
    return len(outputs) if isinstance(outputs, Detections) else outputs.shape[0]


class TargetSet:
    """``K`` target callables for each of ``B`` images.

    Args:
        rows: per image, its ``K`` targets (each: one image's scores → a scalar tensor).
    """

    def __init__(self, rows: Sequence[Sequence[Target]]) -> None:
        self._rows = [list(row) for row in rows]
        counts = {len(row) for row in self._rows}
        if len(counts) > 1:
            raise InputShapeError(f"every image needs the same number of targets, got {counts}")

    @property
    def rows(self) -> list[list[Target]]:
        """Per image, its ``K`` targets."""
        return self._rows

    @property
    def num_targets(self) -> int:
        """``K``."""
        return len(self._rows[0]) if self._rows else 0

    def column(self, index: int) -> list[Target]:
        """The ``index``-th target of every image."""
        return [row[index] for row in self.rows]

    def scores(self, outputs: torch.Tensor | Detections) -> torch.Tensor:
        """``(B, K)`` target scores of ``outputs`` (the score tensor, or a detector's
        per-image dicts: each target gets its own image's item); differentiable where
        ``outputs`` is."""
        batch = _batch_size(outputs)
        if len(self.rows) != batch:
            raise InputShapeError(f"got targets for {len(self.rows)} images but {batch} outputs")
        single = self.num_targets == 1
        return torch.stack(
            [
                torch.stack(
                    [
                        target_score(
                            target,
                            output,
                            f"target {image}" if single else f"target {k} of image {image}",
                        )
                        for k, target in enumerate(row)
                    ]
                )
                for image, (row, output) in enumerate(zip(self.rows, outputs, strict=True))
            ]
        )


class NoDetectionTarget:
    """What ``targets=None`` gives each image of a detector's output: a score of 0, still
    connected to the output. Only methods that read no target (EigenCAM) may explain it;
    :func:`camlens.engine.explain_batch` refuses it for the others, whose maps would be
    zeros — a detector has no "predicted class" to default to."""

    def __call__(self, detections: Any) -> torch.Tensor:
        scores = detections["scores"]
        return scores.sum() * 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ClassMaskTargets(TargetSet):
    """The class logits of a segmenter summed (or averaged) over each class's mask.

    Args:
        class_ids: the ``K`` explained classes.
        masks: ``(B, K, *spatial)`` float weights at the output grid.
        reduction: ``"sum"`` or ``"mean"`` (divided by the mask's pixel count, at least 1).

    :meth:`scores` is one masked sum over the output; :attr:`rows` holds the equivalent
    :class:`~camlens.targets.SemanticSegmentationTarget` per image and class (built on first
    use), which give the same values for the binary masks used here.
    """

    def __init__(self, class_ids: Sequence[int], masks: torch.Tensor, reduction: str) -> None:
        self.class_ids = [int(c) for c in class_ids]
        self.masks = masks
        self.reduction = reduction
        self._cached_rows: list[list[Target]] | None = None

    @property
    def rows(self) -> list[list[Target]]:
        if self._cached_rows is None:
            masks = self.masks.detach()
            self._cached_rows = [
                [
                    SemanticSegmentationTarget(
                        class_id, masks[image, k], self.reduction, warn_if_empty=False
                    )
                    for k, class_id in enumerate(self.class_ids)
                ]
                for image in range(masks.shape[0])
            ]
        return self._cached_rows

    @property
    def num_targets(self) -> int:
        return len(self.class_ids)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        ids = torch.tensor(self.class_ids, device=outputs.device)
        selected = outputs.index_select(1, ids)  # (B, K, *spatial)
        masks = self.masks.to(outputs.dtype)
        scores = (selected * masks).flatten(2).sum(-1)
        if self.reduction == "mean":
            scores = scores / masks.flatten(2).sum(-1).clamp_min(1)
        return scores


def _dominant_class_targets(
    scores: torch.Tensor, announce: bool
) -> list[SemanticSegmentationTarget]:
    predicted = scores.detach().argmax(dim=1)  # (B, *spatial)
    counts = torch.stack(
        [torch.bincount(p.flatten(), minlength=scores.shape[1]) for p in predicted]
    )
    dominant = counts.argmax(dim=1).tolist()
    if announce:
        warnings.warn(
            "targets=None on a segmentation output: explaining each image's dominant predicted "
            f"class over its predicted mask (classes {dominant}); pass "
            "SemanticSegmentationTarget(category, mask) to choose.",
            UserWarning,
            stacklevel=5,
        )
    return [
        SemanticSegmentationTarget(category, predicted[index] == category)
        for index, category in enumerate(dominant)
    ]


def _from_int(category: int, scores: torch.Tensor, index: int) -> Any:
    if not is_dense(scores):
        return ClassifierOutputTarget(category)
    predicted = scores[index].detach().argmax(dim=0)
    return SemanticSegmentationTarget(category, predicted == category)


def resolve_targets(
    targets: Sequence[Any] | Any | None,
    scores: torch.Tensor | Detections,
    *,
    announce: bool = True,
) -> list[Any]:
    """One target callable per image of ``scores`` (``[B, ...]``, or a detector's per-image
    dicts, which take callable targets only); ``announce=False`` skips the warning that
    says which classes ``None`` chose for a segmenter."""
    batch = _batch_size(scores)
    if isinstance(scores, Detections):
        if targets is None:
            return [NoDetectionTarget() for _ in range(batch)]
        if isinstance(targets, int) or (
            isinstance(targets, Sequence) and any(not callable(t) for t in targets)
        ):
            raise TargetError(
                "a detector's output (per-image boxes, labels, scores) needs a callable "
                "target per image, e.g. camlens.targets.FasterRCNNBoxScoreTarget(labels, "
                "boxes); class indices name classes of a score tensor."
            )
    if targets is None:
        if is_dense(scores):
            return list(_dominant_class_targets(scores, announce))
        return [ClassifierOutputTarget(int(c)) for c in scores.detach().flatten(1).argmax(1)]
    if callable(targets) or isinstance(targets, int):
        targets = [targets]
    targets = list(targets)
    if len(targets) == 1 and batch > 1:
        targets = targets * batch
    if len(targets) != batch:
        raise InputShapeError(
            f"got {len(targets)} targets for a batch of {batch} images; pass one target per "
            "image, or a single target to use for every image."
        )
    resolved = []
    for index, target in enumerate(targets):
        if isinstance(target, bool) or not (isinstance(target, int) or callable(target)):
            raise TypeError(
                f"target {index} is a {type(target).__name__}; use a class index or a target "
                "callable such as camlens.targets.ClassifierOutputTarget(3)."
            )
        resolved.append(_from_int(target, scores, index) if isinstance(target, int) else target)
    return resolved
