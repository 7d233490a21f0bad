"""Evaluate explanations with numbers: the engine of ``camlens evaluate`` and its benchmark.

For a classifier, each method's maps get perturbation faithfulness scores — deletion and
insertion AUC (RISE), the ROAD gap (LeRF − MoRF) and Grad-CAM++'s average drop and increase
in confidence. For a segmenter, each method's map of each class gets localisation scores —
the share of positive evidence inside / near / far from the class mask and the pointing game
— and deletion / insertion AUC of the class target (the class logits averaged over its mask,
raw scores). Rows are JSON/CSV-ready dicts; the time spent in each metric is recorded.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camlens.capture import borrowed
from camlens.explainer import Explainer
from camlens.layers import LayerSpec
from camlens.metrics import (
    RandomisationResult,
    cascading_randomisation,
    confidence_change,
    deletion,
    insertion,
    road,
    segmentation_energy_by_region,
    segmentation_pointing_game,
)
from camlens.outputs import as_score_tensor
from camlens.segmentation import explain_segmentation
from camlens.target_sets import resolve_targets
from camlens.targets import SemanticSegmentationTarget, class_label

__all__ = [
    "CLASSIFICATION_METRICS",
    "SEGMENTATION_METRICS",
    "Evaluation",
    "evaluate",
    "sanity_checks",
]

CLASSIFICATION_METRICS = ("deletion_auc", "insertion_auc", "road_gap", "average_drop", "increase")
#: ROAD's removal percentiles and imputation tolerance here: five thresholds, and a solver
#: stopped at a relative residual of 1e-3 (the ROAD gap is a difference of two curves of
#: model scores and does not need a tighter solve).
ROAD_PERCENTILES = (10, 30, 50, 70, 90)
ROAD_TOLERANCE = 1e-3
#: Method options nested by method name (``{"scorecam": {"batch_size": 32}}``).
Options = Mapping[str, Mapping[str, Any]]

SEGMENTATION_METRICS = ("inside", "near", "far", "pointing_game", "deletion_auc", "insertion_auc")


@dataclass
class Evaluation:
    """Rows (one per image × class × method) and the seconds spent per step."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - start

    def extend(self, other: Evaluation, image_offset: int = 0) -> None:
        """Append ``other``'s rows (image indices shifted) and add up its timings."""
        for row in other.rows:
            self.rows.append({**row, "image": row["image"] + image_offset})
        for step, seconds in other.seconds.items():
            self.seconds[step] += seconds

    def means(self) -> list[dict[str, Any]]:
        """Mean of every metric per method (and class, for segmentation), NaN-aware."""
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in self.rows:
            groups[(row["method"], row.get("class_name"))].append(row)
        summary = []
        for (method, class_name), rows in groups.items():
            entry: dict[str, Any] = {"method": method, "images": len(rows)}
            if class_name is not None:
                entry["class_name"] = class_name
            for key in rows[0]:
                values = [r[key] for r in rows if isinstance(r[key], float | bool)]
                finite = [float(v) for v in values if v == v]  # drop NaN
                if values and key not in ("image", "class_id"):
                    entry[key] = sum(finite) / len(finite) if finite else float("nan")
            summary.append(entry)
        return summary


def _value(tensor: torch.Tensor) -> float:
    return float(tensor.detach().float().cpu())


def _evaluate_classifier(
    model: nn.Module,
    inputs: torch.Tensor,
    methods: Sequence[str],
    layers: LayerSpec | Sequence[LayerSpec],
    targets: Sequence[Any] | None,
    steps: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    class_names: Sequence[str] | None,
    options: Options,
) -> Evaluation:
    result = Evaluation()
    for method in methods:
        with result.timed("explain"):
            explainer = Explainer(model, layers, method, options=options.get(method))
            explanation = explainer.explain(inputs, targets)
        maps, chosen = explanation.maps, explanation.targets
        with result.timed("deletion"):
            deleted = deletion(model, inputs, maps, chosen, steps=steps)
        with result.timed("insertion"):
            inserted = insertion(model, inputs, maps, chosen, steps=steps)
        with result.timed("road"):
            roaded = road(
                model, inputs, maps, chosen, percentiles=ROAD_PERCENTILES, tolerance=ROAD_TOLERANCE
            )
        with result.timed("confidence"):
            confidence = confidence_change(model, inputs, maps, chosen, mean=mean, std=std)
        for image, target in enumerate(chosen):
            category = getattr(target, "category", None)
            result.rows.append(
                {
                    "image": image,
                    "method": method,
                    "class_id": category,
                    "class_name": (
                        None if category is None else class_label(category, class_names)
                    ),
                    "deletion_auc": _value(deleted.auc[image]),
                    "insertion_auc": _value(inserted.auc[image]),
                    "road_gap": _value(roaded.gap[image]),
                    "average_drop": 100 * _value(confidence.drop[image]),
                    "increase": bool(confidence.increase[image]),
                }
            )
    return result


def _evaluate_segmenter(
    model: nn.Module,
    inputs: torch.Tensor,
    methods: Sequence[str],
    layers: LayerSpec | Sequence[LayerSpec],
    classes: Any,
    steps: int,
    near: int,
    class_names: Sequence[str] | None,
    options: Options,
) -> Evaluation:
    result = Evaluation()
    with result.timed("explain"):
        explained = explain_segmentation(
            model,
            inputs,
            classes=classes,
            methods=methods,
            layers=layers,
            class_names=class_names,
            options=options,
        )
    present = (explained.masks > 0).flatten(2).any(-1)  # (B, K)
    for method in explained.methods:
        with result.timed("localisation"):
            regions = segmentation_energy_by_region(explained, method, near)
            hits = segmentation_pointing_game(explained, method, tolerance=near)
        auc = torch.full((*present.shape, 2), float("nan"))  # (B, K, deletion/insertion)
        for index, class_id in enumerate(explained.classes):
            images = present[:, index].nonzero().flatten()
            if images.numel() == 0:
                continue
            targets = [
                SemanticSegmentationTarget(
                    class_id, explained.masks[i, index] > 0, reduction="mean"
                )
                for i in images.tolist()
            ]
            maps = explained[method][images, index]
            with result.timed("deletion"):
                deleted = deletion(model, inputs[images], maps, targets, steps=steps, score="raw")
            with result.timed("insertion"):
                inserted = insertion(model, inputs[images], maps, targets, steps=steps, score="raw")
            auc[images.cpu(), index] = torch.stack([deleted.auc, inserted.auc], dim=1).cpu()
        for image in range(inputs.shape[0]):
            for index, class_id in enumerate(explained.classes):
                if not bool(present[image, index]):
                    continue
                inside, near_share, far = (float(v) for v in regions[image, index])
                curves = auc[image, index]
                result.rows.append(
                    {
                        "image": image,
                        "method": method,
                        "class_id": class_id,
                        "class_name": explained.class_label(index),
                        "inside": inside,
                        "near": near_share,
                        "far": far,
                        "pointing_game": bool(hits[image, index]),
                        "deletion_auc": _value(curves[0]),
                        "insertion_auc": _value(curves[1]),
                    }
                )
    return result


def evaluate(
    model: nn.Module,
    inputs: torch.Tensor,
    methods: Sequence[str],
    layers: LayerSpec | Sequence[LayerSpec],
    *,
    task: str,
    targets: Sequence[Any] | None = None,
    classes: Any = "present",
    steps: int = 20,
    near: int = 8,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    options: Options | None = None,
) -> Evaluation:
    """Explain one batch with every method and score the explanations.

    Args:
        task: ``"cls"`` (faithfulness metrics) or ``"seg"`` (localisation + faithfulness per
            class).
        targets: classification targets (``None``: the predicted class).
        classes: segmentation classes (``"present"``, ``"all"`` or ids).
        steps: points of the deletion / insertion curves.
        near: width in pixels of the "near" ring around a class mask, and the pointing
            game's tolerance.
        mean, std: the input normalisation, so the confidence metric multiplies the
            unnormalised image by the map.
        options: the methods' options, nested by method name.
    """
    options = dict(options or {})
    if task == "seg":
        return _evaluate_segmenter(
            model, inputs, methods, layers, classes, steps, near, class_names, options
        )
    if task == "cls":
        return _evaluate_classifier(
            model, inputs, methods, layers, targets, steps, mean, std, class_names, options
        )
    raise ValueError(f"`task` must be 'cls' or 'seg', got {task!r}")


def sanity_checks(
    model: nn.Module,
    inputs: torch.Tensor,
    methods: Sequence[str],
    layers: LayerSpec | Sequence[LayerSpec],
    *,
    seed: int = 0,
    options: Options | None = None,
) -> dict[str, RandomisationResult]:
    """Cascading parameter randomisation (Adebayo et al. 2018) of each method on ``inputs``.

    The targets are fixed to what the unchanged model predicts (the top class; for a
    segmenter the dominant predicted class over its predicted mask), so that the maps of
    the randomised models answer the same question. The model is restored exactly.
    """
    with borrowed(model), torch.no_grad():
        targets = resolve_targets(None, as_score_tensor(model(inputs)), announce=False)
    options = dict(options or {})
    results = {}
    for method in methods:

        def explain(randomised: nn.Module, images: torch.Tensor, method: str = method):
            explainer = Explainer(randomised, layers, method, options=options.get(method))
            explanation = explainer.explain(images, targets)
            if len(explanation.layer_maps) == 1:
                return explanation.raw_maps()
            return explanation.maps

        results[method] = cascading_randomisation(model, inputs, explain, seed=seed)
    return results
