"""Dataset audit: does a class's evidence sit in one fixed place that is not the class?

A classifier that learned a shortcut — a marker stamped in a corner, a ruler, a scanner
tag — looks at the same few pixels in every image of the class, wherever the object is.
:func:`audit_dataset` explains the predicted class of every image, accumulates each class's
mean map in image coordinates (running sums: no map is kept), and flags a class when all
three of these hold:

1. **Concentrated.** Each image's positive map is scaled to unit mass and the class mean
   ``M`` is taken (so ``M`` sums to one). The *region* ``R`` is the top ``area`` share of
   ``M``'s pixels (default 10 %). Concentrated: ``M`` puts at least ``min_concentration``
   of its mass in ``R`` (default 0.4, four times what a uniform map puts there).
2. **Consistent.** The share of images whose own map peaks within ``radius`` pixels
   (Euclidean; default 1/8 of the image side) of ``M``'s peak is at least
   ``min_consistency`` (default 0.8). Evidence that follows the object around does not
   pass: its peaks scatter, and its mean map is diffuse.
3. **Not on the class.** With masks of where the class appears (optional, per image; empty
   masks count as "not given"): the region lies mostly outside them — the mean share of
   ``R`` covered by a class mask is below ``max_overlap`` (default 0.5). Without any mask for
   the class a weaker rule stands in and the reason says so: the region sits at the image
   border — at least ``min_border_share`` (default 0.5) of ``M``'s mass in ``R`` lies within
   ``border`` pixels of an edge (default 1/6 of the side). A class that truly appears at the
   same border place in every image is then flagged too, and a shortcut in the middle of
   the image is missed; give masks where you can.

Classes with fewer than ``min_images`` explained images are reported but never flagged.

The demo runs this audit on its leaky and control shortcut classifiers (``camlens demo``;
the figures are in its report and checked by ``tests/test_metrics_audit.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from camlens.capture import borrowed
from camlens.errors import InputShapeError, ModelOutputError
from camlens.masks import resample_positive
from camlens.metrics._scoring import device_for
from camlens.outputs import as_score_tensor, is_dense
from camlens.targets import ClassifierOutputTarget, class_label

__all__ = ["ClassAudit", "DatasetAudit", "audit_dataset"]

#: ``explain(inputs, classes) -> (B, H, W)`` maps of the given class of each image.
ExplainClasses = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ClassAudit:
    """What the audit found for one predicted class.

    Attributes:
        class_id, name: the class.
        count: images predicted as this class.
        explained: of those, images whose map has positive mass (the ones averaged).
        mean_map: ``(H, W)`` the mean of the unit-mass positive maps (sums to 1; zeros if
            no image was explained).
        peak: ``(y, x)`` of the mean map's maximum.
        region: ``(H, W)`` bool, the top ``area`` share of the mean map's pixels.
        concentration: the mean map's mass inside ``region``.
        consistency: share of explained images whose own peak lies within ``radius`` px
            of ``peak``.
        masked: explained images that came with a non-empty class mask.
        overlap: mean share of ``region`` covered by the class mask, over the masked
            images (None without masks).
        mass_in_masks: mean share of each masked image's positive map mass inside its own
            mask (None without masks).
        border_share: share of the mean map's mass in ``region`` lying within ``border`` px
            of an image edge.
        rule: ``"masks"`` (criterion 3 used the masks) or ``"border"`` (no masks: the
            border rule stood in).
        flagged: whether the class looks like a fixed-place shortcut.
        reason: a sentence with the figures behind ``flagged``.
    """

    class_id: int
    name: str
    count: int
    explained: int
    mean_map: torch.Tensor
    peak: tuple[int, int]
    region: torch.Tensor
    concentration: float
    consistency: float
    masked: int
    overlap: float | None
    mass_in_masks: float | None
    border_share: float
    rule: Literal["masks", "border"]
    flagged: bool
    reason: str


@dataclass
class DatasetAudit:
    """Per predicted class, a :class:`ClassAudit`; ``settings`` records the thresholds."""

    classes: dict[int, ClassAudit]
    image_size: tuple[int, int]
    settings: dict[str, float] = field(default_factory=dict)

    @property
    def flagged(self) -> list[int]:
        """The ids of the flagged classes."""
        return [k for k, audit in self.classes.items() if audit.flagged]

    def summary(self) -> str:
        """One line per class: its reason."""
        return "\n".join(audit.reason for audit in self.classes.values())


class _Sums:
    """Running sums for every class (``K`` classes, ``H × W`` images)."""

    def __init__(self, classes: int, size: tuple[int, int], device: torch.device) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.maps = torch.zeros(classes, *size, device=device, dtype=dtype)
        self.masks = torch.zeros(classes, *size, device=device, dtype=dtype)
        self.counts = torch.zeros(classes, dtype=torch.long, device=device)
        self.explained = torch.zeros(classes, dtype=torch.long, device=device)
        self.masked = torch.zeros(classes, dtype=torch.long, device=device)
        self.in_mask = torch.zeros(classes, device=device, dtype=dtype)
        self.peaks: list[torch.Tensor] = []  # (n, 3): class, y, x of each explained image


def _explainer(explain: Any) -> ExplainClasses:
    """Accept ``explain(inputs, classes) -> maps`` or an explainer object with ``.explain``
    (a :class:`~camlens.explainer.Explainer`), whose single-layer raw maps (else final maps) are
    used."""
    method = getattr(explain, "explain", None)
    if callable(method):

        def from_explainer(inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
            targets = [ClassifierOutputTarget(int(c)) for c in classes.tolist()]
            result = method(inputs, targets)
            if len(getattr(result, "layer_maps", [])) == 1:
                return result.raw_maps()
            return result.maps

        return from_explainer
    if not callable(explain):
        raise TypeError(
            f"`explain` must be a callable explain(inputs, classes) -> (B, H, W) maps or an "
            f"explainer such as HiResCAM(model, 'layer4'), got {type(explain).__name__}"
        )
    return explain


def _split(item: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(item, torch.Tensor):
        return item, None
    if isinstance(item, tuple | list) and len(item) == 2:
        images, masks = item
        return images, None if masks is None else torch.as_tensor(masks)
    raise TypeError(
        f"each batch must be an image tensor (B, 3, H, W) or a pair (images, masks), got "
        f"{type(item).__name__}"
    )


def _predict(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The predicted class of each image, and the number of classes."""
    with borrowed(model), torch.inference_mode():
        scores = as_score_tensor(model(inputs))
    if is_dense(scores) or scores.dim() != 2:
        raise ModelOutputError(
            f"audit_dataset audits classifiers with (B, K) outputs, got shape "
            f"{tuple(scores.shape)}; for segmenters see camlens.metrics.regions."
        )
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0).long().clone(), 2
    return scores.argmax(1).clone(), int(scores.shape[1])


def audit_dataset(
    model: nn.Module,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]],
    explain: ExplainClasses | Any,
    *,
    class_names: Sequence[str] | None = None,
    area: float = 0.1,
    min_concentration: float = 0.4,
    radius: float | None = None,
    min_consistency: float = 0.8,
    max_overlap: float = 0.5,
    border: int | None = None,
    min_border_share: float = 0.5,
    min_images: int = 5,
) -> DatasetAudit:
    """Audit where a classifier looks, class by class, over a dataset (see the module
    docstring for the exact criteria).

    Args:
        model: the classifier (``(B, K)`` outputs; one logit means binary); borrowed.
        batches: image batches ``(B, 3, H, W)`` as the model takes them, all of one
            ``H × W``, or pairs ``(images, masks)`` with ``(B, H, W)`` bool masks of where
            each image's class appears (empty: not known).
        explain: ``explain(inputs, classes) -> (B, H, W)`` maps (any resolution; upsampled
            bilinearly) explaining ``classes[i]`` for image ``i``, or an explainer object
            such as ``HiResCAM(model, "layer2")``.
        class_names: names for the reasons.
        area, min_concentration: criterion 1.
        radius, min_consistency: criterion 2; ``radius`` defaults to ``max(H, W) / 8``.
        max_overlap: criterion 3 with masks.
        border, min_border_share: criterion 3 without masks; ``border`` defaults to
            ``max(H, W) / 6``.
        min_images: fewer explained images than this are never flagged.

    Returns:
        A :class:`DatasetAudit` with one :class:`ClassAudit` per predicted class.

    Example:
        >>> audit = audit_dataset(model, loader_batches, HiResCAM(model, "layer2"))
        >>> audit.flagged, print(audit.summary())
    """
    if not 0 < area < 1:
        raise ValueError(f"`area` must be a share of the image in (0, 1), got {area}")
    explain_classes = _explainer(explain)
    sums: _Sums | None = None
    size: tuple[int, int] | None = None
    for item in batches:
        images, masks = _split(item)
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise InputShapeError(
                f"each batch must be (B, 3, H, W) images, got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)}"
            )
        device = device_for(model, images.device)
        images = images.detach().to(device)
        if size is None:
            size = (int(images.shape[-2]), int(images.shape[-1]))
        elif tuple(images.shape[-2:]) != size:
            raise InputShapeError(
                f"all images must share one size for a mean map in image coordinates; got "
                f"{tuple(images.shape[-2:])} after {size}. Resize or crop them first."
            )
        predicted, classes = _predict(model, images)
        if sums is None:
            sums = _Sums(classes, size, device)
        maps = explain_classes(images, predicted)
        if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or maps.shape[0] != len(images):
            got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
            raise InputShapeError(
                f"`explain` must return (B, H, W) maps, one per image (B={len(images)}), got {got}"
            )
        _accumulate(sums, maps.detach().to(device), predicted, masks, size)
    if sums is None or size is None:
        raise ValueError("`batches` held no images")
    height, width = size
    side = max(height, width)
    radius = float(radius) if radius is not None else max(1.0, side / 8)
    border = int(border) if border is not None else max(1, round(side / 6))
    settings = {
        "area": area,
        "min_concentration": min_concentration,
        "radius": radius,
        "min_consistency": min_consistency,
        "max_overlap": max_overlap,
        "border": border,
        "min_border_share": min_border_share,
        "min_images": min_images,
    }
    peaks = torch.cat(sums.peaks) if sums.peaks else torch.zeros(0, 3, dtype=torch.long)
    results: dict[int, ClassAudit] = {}
    for class_id in range(sums.counts.shape[0]):
        if int(sums.counts[class_id]) == 0:
            continue
        name = class_label(class_id, class_names)
        own = peaks[peaks[:, 0] == class_id, 1:]
        results[class_id] = _judge(sums, class_id, name, own, size, settings)
    return DatasetAudit(classes=results, image_size=size, settings=settings)


def _accumulate(
    sums: _Sums,
    maps: torch.Tensor,
    predicted: torch.Tensor,
    masks: torch.Tensor | None,
    size: tuple[int, int],
) -> None:
    dtype = sums.maps.dtype
    positive = resample_positive(torch.relu(maps.to(dtype)), size)  # no cell cancelled
    mass = positive.flatten(1).sum(1)
    explained = mass > 0
    unit = positive / mass.clamp_min(1e-30)[:, None, None]
    classes = predicted.to(sums.counts.device)
    sums.counts += torch.bincount(classes, minlength=sums.counts.numel())
    sums.explained += torch.bincount(classes[explained], minlength=sums.counts.numel())
    sums.maps.index_add_(0, classes[explained], unit[explained])
    flat = unit.flatten(1).argmax(1)
    peaks = torch.stack([classes, flat // size[1], flat % size[1]], 1)[explained]
    sums.peaks.append(peaks.cpu())
    if masks is None:
        return
    masks = masks.to(device=maps.device)
    if tuple(masks.shape) != (len(maps), *size):
        raise InputShapeError(
            f"masks must be (B, H, W) = {(len(maps), *size)} bool, one per image, got "
            f"{tuple(masks.shape)}"
        )
    inside = masks > 0
    given = inside.flatten(1).any(1) & explained
    sums.masked += torch.bincount(classes[given], minlength=sums.counts.numel())
    sums.masks.index_add_(0, classes[given], inside[given].to(dtype))
    share = (unit * inside).flatten(1).sum(1)
    sums.in_mask.index_add_(0, classes[given], share[given])


def _judge(
    sums: _Sums,
    class_id: int,
    name: str,
    peaks: torch.Tensor,
    size: tuple[int, int],
    settings: dict[str, float],
) -> ClassAudit:
    height, width = size
    explained = int(sums.explained[class_id])
    count = int(sums.counts[class_id])
    mean_map = sums.maps[class_id] / max(explained, 1)
    flat = mean_map.flatten()
    top = max(1, round(settings["area"] * flat.numel()))
    order = torch.sort(flat, descending=True, stable=True).indices[:top]
    region = torch.zeros_like(flat, dtype=torch.bool)
    region[order] = True
    region = region.view(height, width)
    concentration = float(flat[order].sum())
    peak_index = int(order[0])
    peak = (peak_index // width, peak_index % width)
    if len(peaks):
        offsets = peaks.to(torch.float64) - torch.tensor(peak, dtype=torch.float64)
        consistency = float((offsets.norm(dim=1) <= settings["radius"]).to(torch.float64).mean())
    else:
        consistency = 0.0
    ys = torch.arange(height, device=flat.device)[:, None]
    xs = torch.arange(width, device=flat.device)[None, :]
    edge = torch.minimum(torch.minimum(ys, height - 1 - ys), torch.minimum(xs, width - 1 - xs))
    in_region = mean_map * region
    region_mass = float(in_region.sum())
    border_share = (
        float((in_region * (edge < settings["border"])).sum()) / region_mass
        if region_mass > 0
        else 0.0
    )
    masked = int(sums.masked[class_id])
    overlap = mass_in_masks = None
    if masked:
        frequency = sums.masks[class_id] / masked
        overlap = float(frequency[region].mean())
        mass_in_masks = float(sums.in_mask[class_id]) / masked
    rule: Literal["masks", "border"] = "masks" if masked else "border"

    concentrated = concentration >= settings["min_concentration"]
    consistent = consistency >= settings["min_consistency"]
    if overlap is not None:
        misplaced = overlap < settings["max_overlap"]
        place = (
            f"{overlap:.0%} of that region lies on the class masks ({masked} masked images; "
            f"flag below {settings['max_overlap']:.0%})"
        )
    else:
        misplaced = border_share >= settings["min_border_share"]
        place = (
            f"no masks, so the border rule stands in: {border_share:.0%} of the region's mass "
            f"lies within {settings['border']:g} px of the image edge (flag from "
            f"{settings['min_border_share']:.0%}; a class that truly sits there is flagged too)"
        )
    enough = explained >= settings["min_images"]
    flagged = enough and concentrated and consistent and misplaced
    figures = (
        f"over {explained} explained of {count} predicted images, the top "
        f"{settings['area']:.0%} of the mean map's pixels hold {concentration:.0%} of its mass "
        f"(flag from {settings['min_concentration']:.0%}), {consistency:.0%} of the images peak "
        f"within {settings['radius']:g} px of its peak at (y={peak[0]}, x={peak[1]}) (flag from "
        f"{settings['min_consistency']:.0%}); {place}"
    )
    if flagged:
        reason = f"{name}: SHORTCUT SUSPECTED: attention sits in one fixed place off the class: "
    elif not enough:
        reason = f"{name}: not judged: fewer than {settings['min_images']:g} explained images; "
    else:
        failed = [
            label
            for label, passed in (
                ("attention is spread out", concentrated),
                ("images disagree on where", consistent),
                ("the region is where the class is" if masked else "not at the border", misplaced),
            )
            if not passed
        ]
        reason = f"{name}: not flagged ({'; '.join(failed)}): "
    return ClassAudit(
        class_id=class_id,
        name=name,
        count=count,
        explained=explained,
        mean_map=mean_map,
        peak=peak,
        region=region,
        concentration=concentration,
        consistency=consistency,
        masked=masked,
        overlap=overlap,
        mass_in_masks=mass_in_masks,
        border_share=border_share,
        rule=rule,
        flagged=flagged,
        reason=reason + figures,
    )
