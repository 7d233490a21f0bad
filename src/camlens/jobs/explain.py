"""The work of ``camlens explain`` on one batch: the engine, then one item's files.

:class:`ExplainSettings` holds everything that decides the outputs (it is the run's identity
in ``run.json``); :class:`ExplainBatch` is the runner's processor: it normalises and, where
the model needs it, pads the batch, explains it (every requested class of a segmenter from
one forward pass; the top or the requested classes of a classifier), crops the maps back to
each image, and writes per image, atomically:

* ``raw/<key>.npz`` — the signed raw maps of every method and layer, the final maps, scores
  (and class masks and prediction for a segmenter; ``raw/<key>-class<k>.npz`` per requested
  class of a classifier);
* ``images/<key>/`` — the report's pictures of that image;

and returns the manifest entry: the summary record and the report section as data, from
which ``summary.json`` and ``report.html`` are built (:mod:`camlens.jobs.summary`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from camlens.atomic import save_npz
from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.jobs.padding import crop, pad_batch, padding_for
from camlens.jobs.plan import Item
from camlens.jobs.settings import JobSettings, batch_inputs, explain_classes
from camlens.report import Report
from camlens.report.content import add_classification_image, add_segmentation_image
from camlens.segmentation import SegmentationExplanation
from camlens.steps import model_dtype
from camlens.targets import ClassifierOutputTarget

__all__ = ["ExplainBatch", "ExplainSettings"]


@dataclass(frozen=True, kw_only=True)
class ExplainSettings(JobSettings):
    """What decides the outputs of an explain run (recorded in ``run.json``)."""

    command: ClassVar[str] = "explain"

    pad: Any  # "auto" | int | None
    multiple: int | None  # the padding multiple in force (resolved "auto")


class ExplainBatch:
    """The runner's processor for ``camlens explain`` (see the module docstring)."""

    def __init__(
        self, model: nn.Module, settings: ExplainSettings, out: Path, device: torch.device
    ) -> None:
        self.model = model
        self.settings = settings
        self.out = Path(out)
        self.device = device
        self.dtype = model_dtype(model)

    def __call__(self, items: Sequence[Item], images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        settings = self.settings
        (self.out / "raw").mkdir(parents=True, exist_ok=True)
        inputs = batch_inputs(images, settings, self.device, self.dtype)
        height, width = inputs.shape[-2:]
        padding = (0, 0, 0, 0)
        if settings.multiple is not None:
            padding = padding_for(height, width, settings.multiple)
        if any(padding):
            inputs = pad_batch(inputs, padding)
        if settings.task == "seg":
            return self._segmentation(items, images, inputs, padding)
        return self._classification(items, images, inputs, padding)

    # -- segmentation ----------------------------------------------------------------------------
    def _segmentation(self, items, images, inputs, padding) -> list[dict[str, Any]]:
        settings = self.settings
        region = None
        if any(padding):
            region = torch.zeros(inputs.shape[-2:], dtype=torch.bool, device=inputs.device)
            region = crop_assign(region, padding)
        result = explain_classes(self.model, inputs, settings, region=region)
        if any(padding):
            result = _cropped(result, padding)
        records = result.records()

        def write(index: int) -> dict[str, Any]:
            item, image = items[index], images[index]
            raw = f"raw/{item.key}.npz"
            save_npz(
                self.out / raw, _segmentation_arrays(result, index, padding), compress="non-float"
            )
            report = self._item_report(item)
            section = add_segmentation_image(
                report,
                item.path.name,
                image,
                result,
                index,
                facts=self._facts(padding),
                name=item.key,
            )
            return self._entry(item, image, raw, [section.to_data()], padding) | {
                "records": [_without_image(r) for r in records if r["image"] == index]
            }

        return _each(len(items), write)

    # -- classification --------------------------------------------------------------------------
    def _classification(self, items, images, inputs, padding) -> list[dict[str, Any]]:
        settings = self.settings
        classes = settings.classes
        targets: list[ClassifierOutputTarget | None] = (
            [None] if classes is None else [ClassifierOutputTarget(c) for c in classes]
        )
        per_target = []
        for target in targets:
            per_target.append(
                {
                    method: Explainer(
                        self.model,
                        settings.layer_spec,
                        method,
                        options=settings.options.get(method),
                    ).explain(inputs, None if target is None else [target])
                    for method in settings.methods
                }
            )

        def write(index: int) -> dict[str, Any]:
            item, image = items[index], images[index]
            report = self._item_report(item)
            sections, raws, records = [], [], []
            for explanations in per_target:
                first = explanations[settings.methods[0]]
                category = first.targets[index].category
                suffix = f"-class{category}" if classes is not None else ""
                raw = f"raw/{item.key}{suffix}.npz"
                save_npz(
                    self.out / raw,
                    _classification_arrays(explanations, index, category, padding),
                    compress="non-float",
                )
                section = add_classification_image(
                    report,
                    item.path.name + suffix,
                    image,
                    {m: _cropped_explanation(e, padding) for m, e in explanations.items()},
                    index,
                    class_names=settings.class_names,
                    facts=self._facts(padding),
                    name=item.key + suffix,
                )
                sections.append(section.to_data())
                raws.append(raw)
                names = settings.class_names
                records.append(
                    {
                        "class_id": category,
                        "class_name": names[category]
                        if names and 0 <= category < len(names)
                        else None,
                        "score": float(first.scores[index]),
                        "raw": raw,
                    }
                )
            entry = self._entry(item, image, raws[0], sections, padding)
            return entry | {"raw": raws if classes is not None else raws[0], "records": records}

        return _each(len(items), write)

    # -- shared ----------------------------------------------------------------------------------
    def _item_report(self, item: Item) -> Report:
        return Report("camlens explain", out_dir=self.out, image_dir=f"images/{item.key}")

    def _facts(self, padding: tuple[int, int, int, int]) -> dict[str, Any]:
        facts: dict[str, Any] = {"model": self.settings.model}
        if any(padding):
            top, bottom, left, right = padding
            facts["padded"] = (
                f"top {top}, bottom {bottom}, left {left}, right {right} px (cropped back)"
            )
        return facts

    @staticmethod
    def _entry(
        item: Item, image: np.ndarray, raw: str, sections: list[dict[str, Any]], padding
    ) -> dict[str, Any]:
        return {
            "key": item.key,
            "index": item.index,
            "source": item.source,
            "status": "done",
            "size": list(image.shape[:2]),
            "padding": list(padding) if any(padding) else None,
            "raw": raw,
            "sections": sections,
        }


#: Threads that write a batch's items (their PNG and zlib encoding and ``fsync`` release
#: the GIL): the engine waits meanwhile, so its cores are free.
WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))


def _each(count: int, write: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    """``[write(0), ..., write(count - 1)]``, the items written in :data:`WRITE_THREADS`
    threads (each item's files and report section are its own). The first error is raised
    after the items already started are finished (their files are complete; without a
    manifest line they are written again on ``--resume``)."""
    if count <= 1 or WRITE_THREADS == 1:
        return [write(index) for index in range(count)]
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, count)) as pool:
        return list(pool.map(write, range(count)))


def crop_assign(region: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """``region`` (H', W') with True on the unpadded image."""
    top, bottom, left, right = padding
    height, width = region.shape[-2:]
    region[top : height - bottom, left : width - right] = True
    return region


def _without_image(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "image"}


def _cropped(result: SegmentationExplanation, padding) -> SegmentationExplanation:
    """The result on the unpadded images: final maps, masks, outputs and prediction cropped
    (raw layer maps stay at the layer's grid, which covers the padded image)."""
    return dataclasses.replace(
        result,
        maps={method: crop(maps, padding) for method, maps in result.maps.items()},
        masks=crop(result.masks, padding),
        outputs=crop(result.outputs, padding),
        predicted=crop(result.predicted, padding),
        input_size=tuple(crop(result.masks[:1, :1], padding).shape[-2:]),
    )


def _cropped_explanation(explanation: Explanation, padding) -> Explanation:
    if not any(padding):
        return explanation
    cropped = crop(explanation.maps, padding)
    return dataclasses.replace(explanation, maps=cropped, input_size=tuple(cropped.shape[-2:]))


def _compact(labels: np.ndarray) -> np.ndarray:
    """Class labels in the smallest unsigned integer type that holds them (uint8 for up to
    256 classes): a quarter or less of int64's bytes, the same values."""
    top = int(labels.max(initial=0))
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max and int(labels.min(initial=0)) >= 0:
            return labels.astype(dtype)
    return labels


def _segmentation_arrays(
    result: SegmentationExplanation, index: int, padding
) -> dict[str, np.ndarray]:
    arrays = {
        "classes": np.asarray(result.classes),
        "scores": result.scores[index].cpu().numpy(),
        "masks": (result.masks[index] > 0).cpu().numpy(),
        "predicted": _compact(result.predicted[index].cpu().numpy()),
    }
    for method in result.methods:
        for number, maps in enumerate(result.layer_maps[method]):
            arrays[f"{method}_layer{number}"] = maps[index].cpu().numpy()
        arrays[f"{method}_maps"] = result[method][index].cpu().numpy()
    if any(padding):
        arrays["padding"] = np.asarray(padding)
    return arrays


def _classification_arrays(
    explanations: dict[str, Explanation], index: int, category: int, padding
) -> dict[str, np.ndarray]:
    first = next(iter(explanations.values()))
    arrays = {"class": np.asarray(category), "score": first.scores[index].cpu().numpy()}
    for method, explanation in explanations.items():
        for number, maps in enumerate(explanation.layer_maps):
            arrays[f"{method}_layer{number}"] = maps[index].cpu().numpy()
        arrays[f"{method}_maps"] = crop(explanation.maps, padding)[index].cpu().numpy()
    if any(padding):
        arrays["padding"] = np.asarray(padding)
    return arrays
