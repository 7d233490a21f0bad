"""``camlens explain``: explain a model on image files.

Writes into ``--out``: ``report.html`` (with its PNG overlays in ``images/``), the raw maps as
one ``raw/<image>.npz`` per image (per image and class for a classifier given ``--class``),
and ``summary.json``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camlens.cli import artefacts
from camlens.cli.job import Job, batches, detect_task, finish, model_inputs, open_job
from camlens.cli.options import (
    HelpFormatter,
    add_model_arguments,
    classification_targets,
    segmentation_classes,
)
from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.files import natural_key
from camlens.report import Report
from camlens.report.content import add_classification_image, add_segmentation_image
from camlens.segmentation import SegmentationExplanation, explain_segmentation
from camlens.targets import ClassifierOutputTarget

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Declare ``explain`` on the ``commands`` of the top-level parser."""
    parser = commands.add_parser(
        "explain",
        help="explain your own model on your images",
        description="Explain a model on image files, folders or globs (natural order). "
        "Writes PNG overlays, raw maps (.npz), summary.json and report.html into --out.",
        formatter_class=HelpFormatter,
    )
    add_model_arguments(parser, default_method="hirescam,gradcam")
    return parser


@dataclass
class _Run:
    """One ``explain`` run: its set-up, report, file stems and the summary entries so far."""

    args: argparse.Namespace
    job: Job
    report: Report
    stems: dict[Path, str]
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.args.out

    @property
    def facts(self) -> dict[str, Any]:
        return {"model": self.args.model}


def run(args: argparse.Namespace) -> int:
    """Explain every readable image; the exit status (1 if an input was skipped)."""
    job = open_job(args)
    (args.out / "raw").mkdir(parents=True, exist_ok=True)
    report = Report(
        "camlens explain", subtitle=f"{args.model} · {', '.join(job.methods)}", out_dir=args.out
    )
    state = _Run(args, job, report, _unique_stems(job.files))
    task = args.task
    for batch in batches(job.loaded, args.batch_size):
        inputs = model_inputs(batch, args, job.device)
        task = detect_task(task, job.model, inputs)
        if task == "seg":
            _segmentation_batch(state, batch, inputs)
        else:
            _classification_batch(state, batch, inputs)
    job.progress.close()
    _write_summary(state)
    return finish(report, job.failed, len(state.entries))


def _unique_stems(paths: list[Path]) -> dict[Path, str]:
    """A distinct file stem per path: ``tile``, ``tile-2``, ... for files of the same name."""
    stems: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        stem, count = path.stem, 2
        while stem in used:
            stem, count = f"{path.stem}-{count}", count + 1
        used.add(stem)
        stems[path] = stem
    return stems


# -- segmentation -------------------------------------------------------------------------------
def _segmentation_batch(
    state: _Run, batch: list[tuple[Path, np.ndarray]], inputs: torch.Tensor
) -> None:
    """Explain a batch for the ``--class`` classes; raw maps, report entry, summary entry."""
    result = _explain_segmentation(state, inputs)
    records = result.records()
    for index, (path, image) in enumerate(batch):
        stem = state.stems[path]
        raw = f"raw/{stem}.npz"
        arrays = artefacts.segmentation_arrays(result, index, state.job.methods)
        artefacts.write_npz(state.out / raw, arrays)
        add_segmentation_image(
            state.report, path.name, image, result, index, facts=state.facts, name=stem
        )
        state.entries.append(artefacts.segmentation_entry(path, image, raw, records, index))
        state.job.progress.update(1)


def _explain_segmentation(state: _Run, inputs: torch.Tensor) -> SegmentationExplanation:
    job = state.job
    classes = segmentation_classes(state.args, job.labels)
    return explain_segmentation(
        job.model,
        inputs,
        classes=classes,
        methods=job.methods,
        layers=job.layers,
        class_names=job.labels,
        options=job.options,
    )


# -- classification -----------------------------------------------------------------------------
def _classification_batch(
    state: _Run, batch: list[tuple[Path, np.ndarray]], inputs: torch.Tensor
) -> None:
    """Explain a batch for the top class, or once per ``--class`` class (files suffixed
    ``-class<id>``); raw maps, report entries, summary entries."""
    targets = classification_targets(state.args, state.job.labels)
    for target in targets or [None]:
        explanations = _explain_classification(state, inputs, target)
        for index, (path, image) in enumerate(batch):
            _classification_image(state, path, image, explanations, index, targets is not None)
    state.job.progress.update(len(batch))


def _explain_classification(
    state: _Run, inputs: torch.Tensor, target: ClassifierOutputTarget | None
) -> dict[str, Explanation]:
    job = state.job
    return {
        method: Explainer(job.model, job.layers, method, options=job.options.get(method)).explain(
            inputs, None if target is None else [target]
        )
        for method in job.methods
    }


def _classification_image(
    state: _Run,
    path: Path,
    image: np.ndarray,
    explanations: dict[str, Explanation],
    index: int,
    suffixed: bool,
) -> None:
    first = explanations[state.job.methods[0]]
    category = first.targets[index].category
    suffix = f"-class{category}" if suffixed else ""
    name = state.stems[path] + suffix
    raw = f"raw/{name}.npz"
    artefacts.write_npz(
        state.out / raw, artefacts.classification_arrays(explanations, index, category)
    )
    add_classification_image(
        state.report,
        path.name + suffix,
        image,
        explanations,
        index,
        class_names=state.job.labels,
        facts=state.facts,
        name=name,
    )
    score = float(first.scores[index])
    entry = artefacts.classification_entry(path, image, raw, category, state.job.labels, score)
    state.entries.append(entry)


# -- summary ------------------------------------------------------------------------------------
def _write_summary(state: _Run) -> None:
    """``summary.json``: the settings, the entries in natural file order, the skipped inputs."""
    args = state.args
    summary = {
        "model": args.model,
        "weights": str(args.weights) if args.weights else None,
        "layers": args.layer,
        "methods": state.job.methods,
        "images": sorted(state.entries, key=lambda item: natural_key(item["file"])),
        "failed": [{"input": name, "error": reason} for name, reason in state.job.failed],
    }
    artefacts.write_json(state.out / "summary.json", summary, indent=2)
