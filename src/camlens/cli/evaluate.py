"""``camlens evaluate``: score the explanations of several methods.

Prints a table of the mean scores; writes ``metrics.json``, ``metrics.csv`` and
``report.html`` into ``--out``.
"""

from __future__ import annotations

import argparse
from typing import Any

from camlens.atomic import write_json
from camlens.cli.explain import claim, run_job
from camlens.cli.job import Arguments, Prepared, check_arguments, prepare, shared_settings
from camlens.cli.options import (
    HelpFormatter,
    UsageError,
    add_job_arguments,
    add_model_arguments,
)
from camlens.evaluation import sanity_checks
from camlens.jobs.evaluate import (
    SANITY_FILE,
    EvaluateBatch,
    EvaluateSettings,
    build_outputs,
    metric_columns,
    sanity_record,
)
from camlens.jobs.folder import RunFolder, Totals
from camlens.jobs.reader import read_image

__all__ = ["add_parser", "run"]


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
    add_job_arguments(parser, pad=False)
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


def run(args: argparse.Namespace) -> int:
    """Score every image; the exit status as for ``explain``."""
    _check(args)
    checked = check_arguments(args)
    folder = RunFolder(args.out, checked.shard)
    folder.check_writable()  # before the model loads; nothing is created yet
    ready = prepare(args, checked)
    with folder:
        if ready.task == "cls" and ready.classes is not None and len(ready.classes) > 1:
            raise UsageError("evaluate scores one target per image: give one --class (or top)")
        settings = EvaluateSettings(
            **shared_settings(args, checked, ready),
            steps=args.steps,
            near=args.near,
            sanity=args.sanity,
        )
        identity = settings.identity() | {"inputs": ready.plan.total_items}
        process = EvaluateBatch(ready.model, settings, checked.device)
        if args.sanity:
            claim(args, folder, identity)
            _sanity_check(args, ready, process, checked)
        return run_job(args, folder, ready, identity, process, build_outputs, _print_means)


def _sanity_check(args, ready: Prepared, process: EvaluateBatch, checked: Arguments) -> None:
    """The cascading randomisation check on the first batch, once per run (``sanity.json``;
    a resumed run keeps the result it has)."""
    target = args.out / SANITY_FILE
    if (args.resume and target.exists()) or not ready.plan.batches:
        return
    first = ready.plan.batches[0]
    images = [read_image(item.path, ready.size, max_pixels=args.max_pixels) for item in first.items]
    layers = args.layer if len(args.layer) > 1 else args.layer[0]
    checks = sanity_checks(
        process.model, process.inputs(images), checked.methods, layers, options=checked.options
    )
    record = sanity_record(checks)
    for method, result in record.items():
        print(f"sanity check, {method}: {result['reason']}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(target, record)


def _print_means(totals: Totals) -> None:
    """The table of means, on the terminal."""
    details = totals.details or {}
    task = details.get("task", "cls")
    columns = ["method"] + (["class_name"] if task == "seg" else []) + ["images"]
    print(_table(details.get("means", []), columns + metric_columns(task)))
    seconds = details.get("seconds", {})
    print("seconds per step: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table of ``rows`` (floats with 3 decimals), for the terminal."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "–" if value != value else f"{value:.3f}"
        return "–" if value is None else str(value)

    body = [[cell(row.get(column, float("nan"))) for column in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in body)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in body]
    return "\n".join(lines)
