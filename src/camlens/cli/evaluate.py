"""``camlens evaluate``: score the explanations of several methods.

Prints a table of the mean scores; writes ``metrics.json``, ``metrics.csv`` and
``report.html`` into ``--out``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camlens.cli import artefacts
from camlens.cli.job import Job, batches, detect_task, finish, model_inputs, open_job
from camlens.cli.options import (
    HelpFormatter,
    UsageError,
    add_model_arguments,
    classification_targets,
    segmentation_classes,
)
from camlens.evaluation import (
    CLASSIFICATION_METRICS,
    SEGMENTATION_METRICS,
    Evaluation,
    evaluate,
    sanity_checks,
)
from camlens.report import Report
from camlens.report.content import add_metrics_section

__all__ = ["add_parser", "run"]

_SANITY_TEXT = (
    "Adebayo et al. (2018): layers are re-initialised from the output end; a method "
    "whose maps still resemble the original ones once half of the layers are random "
    "does not depend on what the model learned, and is flagged."
)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Declare ``evaluate`` on the ``commands`` of the top-level parser."""
    parser = commands.add_parser(
        "evaluate",
        help="score explanations: faithfulness and localisation metrics",
        description="Explain a model on images with several methods and score each map: "
        "deletion/insertion AUC, ROAD gap, average drop and increase in confidence "
        "(classifiers); inside/near/far share of evidence, pointing game and deletion/"
        "insertion AUC per class (segmenters). Prints a table; writes metrics.json, "
        "metrics.csv and report.html into --out.",
        formatter_class=HelpFormatter,
    )
    add_model_arguments(parser, default_method="gradcam,hirescam")
    parser.add_argument(
        "--steps", type=int, default=20, help="points of the deletion and insertion curves"
    )
    parser.add_argument(
        "--sanity",
        action="store_true",
        help="also run the cascading parameter-randomisation sanity check (on the first batch)",
    )
    parser.add_argument(
        "--near",
        type=int,
        default=8,
        help="seg: width in px of the 'near' ring around a class mask",
    )
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.steps < 2:
        raise UsageError(f"--steps must be at least 2 (points of a curve), got {args.steps}")
    if args.near < 0:
        raise UsageError(f"--near must be 0 or more pixels, got {args.near}")


@dataclass
class _Scores:
    """The scores of every explained image, and the task they were scored for."""

    task: str
    total: Evaluation
    explained: list[Path]

    def rows(self) -> list[dict[str, Any]]:
        """One row per image, method (and class), with the image's file first."""
        return [{"file": str(self.explained[row["image"]]), **row} for row in self.total.rows]


def run(args: argparse.Namespace) -> int:
    """Score every readable image; the exit status (1 if an input was skipped)."""
    _check(args)
    job = open_job(args)
    args.out.mkdir(parents=True, exist_ok=True)
    scores = _score(args, job)
    task, rows, means = scores.task, scores.rows(), scores.total.means()
    metrics = list(SEGMENTATION_METRICS if task == "seg" else CLASSIFICATION_METRICS)
    columns = ["method"] + (["class_name"] if task == "seg" else []) + ["images", *metrics]
    print(_table(means, columns))
    seconds = {step: round(value, 3) for step, value in scores.total.seconds.items()}
    print("seconds per step: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    report = Report(
        "camlens evaluate", subtitle=f"{args.model} · {', '.join(job.methods)}", out_dir=args.out
    )
    sanity = _sanity_check(args, job, report) if args.sanity and job.loaded else None
    document = artefacts.metrics_document(
        model=args.model,
        layers=args.layer,
        task=task,
        methods=job.methods,
        means=means,
        rows=rows,
        seconds=seconds,
        failed=job.failed,
        sanity=sanity,
    )
    artefacts.write_metrics(args.out, document, rows, metrics)
    images = len(scores.explained)
    add_metrics_section(report, means, columns, task=task, seconds=seconds, images=images)
    return finish(report, job.failed, images)


def _score(args: argparse.Namespace, job: Job) -> _Scores:
    """Explain and score the images batch by batch."""
    scores = _Scores(args.task, Evaluation(), [])
    for batch in batches(job.loaded, args.batch_size):
        inputs = model_inputs(batch, args, job.device)
        task = scores.task = detect_task(scores.task, job.model, inputs)
        result = evaluate(
            job.model,
            inputs,
            job.methods,
            job.layers,
            options=job.options,
            task=task,
            targets=classification_targets(args, job.labels) if task == "cls" else None,
            classes=segmentation_classes(args, job.labels) if task == "seg" else "present",
            steps=args.steps,
            near=args.near,
            mean=args.mean,
            std=args.std,
            class_names=job.labels,
        )
        scores.total.extend(result, image_offset=len(scores.explained))
        scores.explained.extend(path for path, _ in batch)
        job.progress.update(len(batch))
    job.progress.close()
    return scores


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table of ``rows`` (floats with 3 decimals), for the terminal."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "–" if value != value else f"{value:.3f}"
        return str(value)

    body = [[cell(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in body)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in body]
    return "\n".join(lines)


def _sanity_check(args: argparse.Namespace, job: Job, report: Report) -> dict[str, dict[str, Any]]:
    """Run the cascading randomisation check on the first batch; print a line per method,
    add a section to ``report``; the results per method, for ``metrics.json``."""
    first = model_inputs(job.loaded[: args.batch_size], args, job.device)
    checks = sanity_checks(job.model, first, job.methods, job.layers, options=job.options)
    rows = []
    for method, check in checks.items():
        print(f"sanity check, {method}: {check.reason}")
        step = check.checked_step
        rows.append(
            [
                method,
                f"{step + 1} of {len(check.layers)}",
                float(check.spearman[step].nanmean()),
                float(check.ssim[step].nanmean()),
                "yes" if check.flagged else "no",
                check.reason,
            ]
        )
    section = report.section("Sanity check: cascading parameter randomisation")
    section.paragraph(_SANITY_TEXT)
    section.table(["method", "random layers", "Spearman", "SSIM", "flagged", "reason"], rows)
    return {
        method: {
            "random_layers": layers,
            "spearman": spearman,
            "ssim": ssim,
            "flagged": flagged == "yes",
            "reason": reason,
        }
        for method, layers, spearman, ssim, flagged, reason in rows
    }
