"""The work of ``camlens evaluate`` on one batch, and its outputs built from the manifests.

:class:`EvaluateBatch` explains a batch with every method and scores the maps
(:func:`camlens.evaluation.evaluate`); each image's manifest entry holds its metric rows and
its share of the time spent per step. :func:`build_outputs` then writes ``metrics.json`` (the
means per method and class, every row, the timings, the skipped inputs, the sanity check if
it ran), ``metrics.csv`` (one row per image, class and method; cells that a spreadsheet would
run as formulas are neutralised) and ``report.html`` — at the end, after an interruption and
for ``camlens report OUT``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from camlens.atomic import write_json, write_text
from camlens.evaluation import (
    CLASSIFICATION_METRICS,
    SEGMENTATION_METRICS,
    Evaluation,
    evaluate,
)
from camlens.jobs.folder import Totals
from camlens.jobs.names import safe_csv_cell
from camlens.jobs.plan import Item
from camlens.jobs.settings import JobSettings, batch_inputs
from camlens.jobs.summary import partial_notice, skipped_section, split_entries
from camlens.report import Report
from camlens.report.content import add_metrics_section
from camlens.steps import model_dtype
from camlens.targets import ClassifierOutputTarget

__all__ = ["SANITY_FILE", "EvaluateBatch", "EvaluateSettings", "build_outputs", "metric_columns"]

#: The sanity check's results, written once per run (on the first batch).
SANITY_FILE = "sanity.json"

_SANITY_TEXT = (
    "Adebayo et al. (2018): layers are re-initialised from the output end; a method "
    "whose maps still resemble the original ones once half of the layers are random "
    "does not depend on what the model learned, and is flagged."
)


@dataclass(frozen=True, kw_only=True)
class EvaluateSettings(JobSettings):
    """What decides the outputs of an evaluate run (recorded in ``run.json``)."""

    command: ClassVar[str] = "evaluate"

    steps: int
    near: int
    sanity: bool


def metric_columns(task: str) -> list[str]:
    """The metrics of a task, in table order."""
    return list(SEGMENTATION_METRICS if task == "seg" else CLASSIFICATION_METRICS)


class EvaluateBatch:
    """The runner's processor for ``camlens evaluate``."""

    def __init__(self, model: nn.Module, settings: EvaluateSettings, device: torch.device) -> None:
        self.model = model
        self.settings = settings
        self.device = device
        self.dtype = model_dtype(model)

    def inputs(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """The images normalised, as one batch on the model's device and dtype."""
        return batch_inputs(images, self.settings, self.device, self.dtype)

    def __call__(self, items: Sequence[Item], images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        settings = self.settings
        classes = settings.classes
        targets = None
        if settings.task == "cls" and classes is not None:  # one class (checked up front)
            targets = [ClassifierOutputTarget(classes[0])]
        result = evaluate(
            self.model,
            self.inputs(images),
            settings.methods,
            settings.layer_spec,
            options=settings.options,
            task=settings.task,
            targets=targets,
            classes=classes if settings.task == "seg" else "present",
            steps=settings.steps,
            near=settings.near,
            mean=settings.mean,
            std=settings.std,
            class_names=settings.class_names,
        )
        share = {step: seconds / len(items) for step, seconds in result.seconds.items()}
        return [
            {
                "key": item.key,
                "index": item.index,
                "source": item.source,
                "status": "done",
                "rows": [_clean(row) for row in result.rows if row["image"] == position],
                "seconds": share,
            }
            for position, item in enumerate(items)
        ]


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    """A metric row for the manifest: no batch position; NaN (undefined, e.g. no positive
    evidence) as ``None``, which the means leave out as they leave out NaN."""
    clean = {}
    for key, value in row.items():
        if key == "image":
            continue
        if isinstance(value, float | np.floating):
            value = float(value) if value == value else None
        clean[key] = value
    return clean


def build_outputs(
    out: Path,
    identity: Mapping[str, Any],
    *,
    missing: Sequence[tuple[str, str]] = (),
    expected: int | None = None,
    interrupted: bool = False,
) -> Totals:
    """``metrics.json``, ``metrics.csv`` and ``report.html`` of an evaluate run, from its
    manifests (see the module docstring)."""
    out = Path(out)
    done, failed, remaining = split_entries(out, missing, expected)
    settings = dict(identity.get("settings", {}))
    task = settings.get("task", "cls")
    metrics = metric_columns(task)
    rows = [{"file": entry["source"], **row} for entry in done for row in entry.get("rows", [])]
    seconds: dict[str, float] = {}
    for entry in done:
        for step, value in entry.get("seconds", {}).items():
            seconds[step] = seconds.get(step, 0.0) + float(value)
    seconds = {step: round(value, 3) for step, value in seconds.items()}
    means = Evaluation(rows=[{**row, "image": 0} for row in rows]).means()
    sanity = _read_sanity(out)
    document: dict[str, Any] = {
        "model": settings.get("model"),
        "layers": settings.get("layers"),
        "task": task,
        "methods": settings.get("methods"),
        "complete": not interrupted and not remaining,
        "means": means,
        "rows": rows,
        "seconds": seconds,
        "failed": failed,
    }
    if sanity is not None:
        document["sanity"] = sanity
    write_json(out / "metrics.json", document)
    _write_csv(out / "metrics.csv", rows, ["file", "method", "class_id", "class_name", *metrics])
    columns = ["method"] + (["class_name"] if task == "seg" else []) + ["images", *metrics]
    methods = ", ".join(settings.get("methods") or [])
    report = Report(
        "camlens evaluate", subtitle=f"{settings.get('model')} · {methods}", out_dir=out
    )
    partial_notice(report, len(done), remaining, interrupted=interrupted)
    add_metrics_section(report, means, columns, task=task, seconds=seconds, images=len(done))
    if sanity is not None:
        _sanity_section(report, sanity)
    skipped_section(report, failed)
    report.write()
    return Totals(len(done), failed, remaining, {"task": task, "means": means, "seconds": seconds})


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: safe_csv_cell(v) for k, v in row.items()} for row in rows)
    write_text(path, buffer.getvalue())


def _read_sanity(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / SANITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sanity_record(checks: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The sanity check's results per method, JSON-ready (``sanity.json``)."""
    record = {}
    for method, check in checks.items():
        step = check.checked_step
        record[method] = {
            "random_layers": f"{step + 1} of {len(check.layers)}",
            "spearman": float(check.spearman[step].nanmean()),
            "ssim": float(check.ssim[step].nanmean()),
            "flagged": bool(check.flagged),
            "reason": check.reason,
        }
    return record


def _sanity_section(report: Report, sanity: Mapping[str, Mapping[str, Any]]) -> None:
    section = report.section("Sanity check: cascading parameter randomisation")
    section.paragraph(_SANITY_TEXT)
    section.table(
        ["method", "random layers", "Spearman", "SSIM", "flagged", "reason"],
        [
            [
                method,
                result["random_layers"],
                result["spearman"],
                result["ssim"],
                "yes" if result["flagged"] else "no",
                result["reason"],
            ]
            for method, result in sanity.items()
        ],
    )
