"""Report sections for explanations: what ``camlens explain`` and ``camlens demo`` show.

For a segmentation: the image, the predicted segmentation, then per class a row of method
overlays side by side (Grad-CAM vs HiResCAM, ...) with the share of positive CAM mass inside
the class mask under each, and a row of the signed raw maps (blue negative, red positive, one
symmetric scale per class so methods compare honestly). For a classifier: the same rows per
explained class. Built only on :class:`~camlens.report.html.Report`'s public API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camlens.explanation import Explanation
from camlens.image import make_grid, mask_to_rgb, overlay, show_cam_on_image, signed_heatmap
from camlens.methods import get_method
from camlens.report.html import Report, Section
from camlens.segmentation import SegmentationExplanation
from camlens.targets import class_label

__all__ = ["add_classification_image", "add_metrics_section", "add_segmentation_image"]


def _title(method: str) -> str:
    return get_method(method).label


def _signed_row(
    section: Section,
    caption: str,
    raw_maps: dict[str, np.ndarray],
    name: str,
) -> None:
    """Signed raw maps of several methods, each on its own symmetric scale ±max|map|."""
    row = section.figure_row(caption=caption, pixelated=True)
    for method, raw in raw_maps.items():
        limit = float(np.abs(raw).max())
        row.figure(
            signed_heatmap(raw, limit=limit if limit > 0 else None),
            caption=f"{_title(method)} (signed)",
            note=f"±{limit:.3g} at the layer grid",
            name=f"{name}-{method}-signed",
        )


def _class_name(result: SegmentationExplanation, class_id: int) -> str:
    return class_label(class_id, result.class_names)


def _highlight(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image inside ``mask``, a dim grey version of it outside."""
    grey = image.mean(axis=-1, keepdims=True)
    return np.where(mask[..., None], image, 0.15 + 0.3 * grey).astype(np.float32)


def _legend(names: Sequence[str], colours: np.ndarray) -> np.ndarray:
    """A column of colour swatches with their class names, as an RGB image."""
    swatches = [np.broadcast_to(colour, (14, 120, 3)).astype(np.uint8) for colour in colours]
    return make_grid(swatches, labels=list(names), ncols=1, pad=3)


def add_segmentation_image(
    report: Report,
    title: str,
    image: np.ndarray,
    result: SegmentationExplanation,
    index: int,
    *,
    facts: dict[str, Any] | None = None,
    truth: np.ndarray | None = None,
    name: str = "image",
    palette: np.ndarray | None = None,
) -> Section:
    """Add one image of a :class:`SegmentationExplanation` as a report section.

    Args:
        image: ``(H, W, 3)`` float RGB in [0, 1], the picture the model saw.
        index: the image's position in the explained batch.
        facts: extra key/values shown at the top (file name, model, ...).
        truth: optional ``(H, W)`` ground-truth labels shown next to the prediction.
        name: prefix of the PNG file names (``<name>-<class>-<method>.png``).
        palette: ``(C, 3)`` uint8 class colours for the label maps (default: camlens').
    """
    height, width = image.shape[:2]
    section = report.section(title)
    section.key_values(
        {
            "image size": f"{width} × {height} px",
            "target layer(s)": ", ".join(result.layer_names),
            "target": "class logits "
            + {"sum": "summed", "mean": "averaged"}[result.extras.get("reduction", "sum")]
            + " over the class mask",
            **(facts or {}),
        }
    )
    predicted = result.predicted[index].cpu().numpy()
    row = section.figure_row(caption="Input and prediction")
    row.figure(image, caption="image", name=name)
    row.figure(
        overlay(image, mask_to_rgb(predicted, palette), 0.55),
        caption="predicted segmentation",
        name=f"{name}-prediction",
    )
    if truth is not None:
        row.figure(
            overlay(image, mask_to_rgb(truth, palette), 0.55),
            caption="ground truth",
            name=f"{name}-truth",
        )
    shown = sorted(
        set(np.unique(predicted).tolist()) | set([] if truth is None else np.unique(truth).tolist())
    )
    row.figure(
        _legend([_class_name(result, c) for c in shown], mask_to_rgb(np.asarray(shown), palette)),
        caption="classes",
        name=f"{name}-legend",
        width=150,
    )
    pixels = (result.masks[index] > 0).flatten(1).sum(-1).cpu()
    table_rows = []
    for position, class_id in enumerate(result.classes):
        if int(pixels[position]) == 0:
            continue
        name_of_class = result.class_label(position)
        mask = (result.masks[index, position] > 0).cpu().numpy()
        sub = section.subsection(f"{name_of_class} (class {class_id})")
        share_text = {}
        stem = f"{name}-{class_id}-{name_of_class}"
        row = sub.figure_row(caption=f"{name_of_class}: where each method looks")
        row.figure(
            _highlight(image, mask),
            caption="class mask",
            note=f"{int(pixels[position])} px",
            name=f"{stem}-mask",
        )
        raw = {}
        for method in result.methods:
            final = result[method][index, position].cpu().numpy()
            share = float(result.mass_in_mask[method][index, position])
            share_text[method] = share
            row.figure(
                show_cam_on_image(image, final, use_rgb=True),
                caption=_title(method),
                note="mass in mask –" if np.isnan(share) else f"mass in mask {share:.2f}",
                name=f"{stem}-{method}",
            )
            raw[method] = result.layer_maps[method][0][index, position].cpu().numpy()
        _signed_row(sub, f"{name_of_class}: signed raw maps", raw, stem)
        table_rows.append(
            [name_of_class, int(pixels[position]), float(result.scores[index, position])]
            + [share_text[m] for m in result.methods]
        )
    section.table(
        ["class", "mask px", "target score"]
        + [f"{_title(m)} mass in mask" for m in result.methods],
        table_rows,
        caption="Share of positive CAM mass inside each class mask (1 = all inside)",
    )
    return section


def add_classification_image(
    report: Report,
    title: str,
    image: np.ndarray,
    explanations: dict[str, Explanation],
    index: int,
    *,
    class_names: Sequence[str] | None = None,
    facts: dict[str, Any] | None = None,
    name: str = "image",
) -> Section:
    """Add one image explained by several methods (one :class:`Explanation` per method)."""
    height, width = image.shape[:2]
    first = next(iter(explanations.values()))
    target = first.targets[index]
    category = getattr(target, "category", None)
    label = (
        class_names[category]
        if class_names is not None and category is not None and 0 <= category < len(class_names)
        else repr(target)
    )
    probabilities = torch.softmax(first.outputs[index].flatten().float(), dim=0)
    top = int(probabilities.argmax())
    top_name = class_names[top] if class_names is not None and top < len(class_names) else top
    section = report.section(title)
    section.key_values(
        {
            "image size": f"{width} × {height} px",
            "target layer(s)": ", ".join(first.layer_names),
            "explained": label,
            "target score": f"{float(first.scores[index]):.4g}",
            "top prediction": f"{top_name} (p = {float(probabilities[top]):.3f})",
            **(facts or {}),
        }
    )
    row = section.figure_row(caption=f"Where the model looks for {label}")
    row.figure(image, caption="image", name=name)
    raw = {}
    for method, explanation in explanations.items():
        row.figure(
            show_cam_on_image(image, explanation.numpy()[index], use_rgb=True),
            caption=_title(method),
            name=f"{name}-{method}",
        )
        raw[method] = explanation.layer_maps[0][index].cpu().numpy()
    _signed_row(section, "Signed raw maps", raw, name)
    return section


#: What each metric column means, for the report.
METRIC_HELP = {
    "deletion_auc": "deletion AUC (lower: removing the top pixels kills the score sooner)",
    "insertion_auc": "insertion AUC (higher: the top pixels alone restore the score)",
    "road_gap": "ROAD gap, LeRF − MoRF (higher: more faithful)",
    "average_drop": "average drop in confidence, % (lower is better)",
    "increase": "rate of increase in confidence (higher is better)",
    "inside": "share of positive evidence inside the class mask",
    "near": "share in a ring around the mask",
    "far": "share farther away",
    "pointing_game": "share of maps whose peak lies on the mask",
}


def add_metrics_section(
    report: Report,
    means: list[dict[str, Any]],
    columns: list[str],
    *,
    task: str,
    seconds: dict[str, float],
    images: int,
) -> Section:
    """A section with the mean of every metric per method (and class), and the timings."""
    section = report.section("Metrics")
    section.paragraph(
        f"Means over {images} image(s); "
        + ("per method and class." if task == "seg" else "per method.")
        + " "
        + "; ".join(f"{key}: {text}" for key, text in METRIC_HELP.items() if key in columns)
        + "."
    )
    section.table(
        columns,
        [[row.get(c, float("nan")) for c in columns] for row in means],
        caption="Mean metric per method" + (" and class" if task == "seg" else ""),
    )
    section.table(
        ["step", "seconds"], [[k, v] for k, v in seconds.items()], caption="Time spent per step"
    )
    return section
