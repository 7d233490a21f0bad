"""``camlens explain``: explain a model on image files, as a resumable, shardable job.

Everything is checked before the first image is decoded (numbers, device, methods and
options, model and weights, layers, ``--out``, image headers, class ids against the model's
classes); then :func:`camlens.jobs.runner.run_plan` streams the images through
:class:`camlens.jobs.explain.ExplainBatch`. ``--out`` holds ``raw/<name>.npz`` and
``images/<name>/`` per image, ``manifest*.jsonl`` (what is done), ``run.json`` (the run's
settings), ``summary.json`` and ``report.html`` (built from the manifests).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from camlens.cli.options import (
    HelpFormatter,
    UsageError,
    add_job_arguments,
    add_model_arguments,
    check_class_ids,
    check_numbers,
    class_ids,
    parse_device,
    parse_methods,
    parse_options,
)
from camlens.engine import plan_methods
from camlens.jobs.explain import ExplainBatch, ExplainSettings
from camlens.jobs.folder import RunFolder, Shard
from camlens.jobs.padding import model_multiple, pad_batch, padding_for, parse_pad
from camlens.jobs.plan import Plan, make_plan
from camlens.jobs.reader import probe_size, read_image
from camlens.jobs.runner import run_plan
from camlens.jobs.summary import Totals, build_outputs
from camlens.layers import resolve_layers
from camlens.loading import load_labels, load_model, load_weights
from camlens.outputs import as_score_tensor, is_dense
from camlens.steps import model_device

__all__ = ["add_parser", "finish", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Declare ``explain`` on the ``commands`` of the top-level parser."""
    parser = commands.add_parser(
        "explain",
        help="explain your own model on your images",
        description="Explain a model on image files, folders or globs (natural order). "
        "Writes PNG overlays, raw maps (.npz), summary.json and report.html into --out; "
        "resumable (--resume) and shardable (--shard i/N).",
        formatter_class=HelpFormatter,
    )
    add_model_arguments(parser, default_method="hirescam,gradcam")
    add_job_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the job; the exit status (0 all done, 1 some skipped, 130 interrupted)."""
    check_numbers(args)
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run and --overwrite clears it: pass one")
    try:
        shard = Shard.parse(args.shard)
        pad = parse_pad(args.pad)
    except ValueError as error:
        raise UsageError(str(error)) from None
    device = parse_device(args.device)
    methods = parse_methods(args.method)
    options = parse_options(args.options, methods)
    plan_methods(methods, options)
    folder = RunFolder(args.out, shard)
    with folder:
        model = _load(args, device)
        labels = load_labels(args.labels) if args.labels is not None else None
        layers = args.layer if len(args.layer) > 1 else args.layer[0]
        if "auto" not in args.layer:
            resolve_layers(model, layers)  # unknown names fail here, with close names
        probe = partial(probe_size, max_pixels=args.max_pixels)
        size = tuple(args.size) if args.size is not None else None
        plan = make_plan(
            args.images, batch_size=args.batch_size, probe=probe, size=size, shard=shard
        )
        if plan.total_items == 0:
            raise UsageError(
                "no image to explain: " + "; ".join(f"{a}: {r}" for a, r in plan.missing)
            )
        multiple = model_multiple(model) if pad == "auto" else pad
        task, count = _probe_model(args, model, plan, multiple)
        settings = ExplainSettings(
            model=args.model,
            weights=str(args.weights) if args.weights else None,
            layers=list(args.layer),
            methods=methods,
            options=options,
            task=task,
            classes=_classes(args.classes, task, count, labels),
            class_names=labels,
            mean=tuple(args.mean),
            std=tuple(args.std),
            size=size,
            pad=pad,
            multiple=multiple,
            batch_size=args.batch_size,
            shards=shard.count,
        )
        identity = settings.identity() | {"inputs": plan.total_items}
        folder.claim(identity, resume=args.resume, overwrite=args.overwrite)
        folder.remove_stale_partials()
        done = folder.entries() if args.resume else {}
        process = ExplainBatch(model, settings, args.out, device)
        total = len(plan.items) + len(plan.unusable)
        with tqdm(total=total, desc="explain", unit="image", disable=args.quiet) as progress:
            try:
                run_plan(
                    plan,
                    folder,
                    process,
                    read=lambda item: read_image(item.path, size, max_pixels=args.max_pixels),
                    done=done,
                    progress=progress,
                )
            except KeyboardInterrupt:
                progress.close()
                totals = build_outputs(args.out, identity, missing=plan.missing,
                                       expected=plan.total_items, interrupted=True)  # fmt: skip
                print(
                    f"camlens explain: interrupted; {totals.done} image(s) done — the partial "
                    f"report is {args.out / 'report.html'}; rerun with --resume to finish",
                    file=sys.stderr,
                )
                return 130
        totals = build_outputs(args.out, identity, missing=plan.missing, expected=plan.total_items)
    return finish("explain", args.out, totals)


def _load(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    model = load_model(args.model)
    if args.weights is not None:
        load_weights(model, args.weights)
    return model.to(device).eval()


def _probe_model(
    args: argparse.Namespace, model: torch.nn.Module, plan: Plan, multiple: int | None
) -> tuple[str, int]:
    """``(task, number of classes)`` from one forward pass of zeros at an image size of the
    plan (the most common first); no image is decoded for it."""
    sizes: dict[tuple[int, int], int] = {}
    for batch in plan.batches:
        sizes[batch.size] = sizes.get(batch.size, 0) + len(batch.items)
    if not sizes:
        return ("seg" if args.task == "seg" else "cls"), 0
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    errors = []
    common = sorted(sizes, key=lambda s: -sizes[s])[:3]
    # then sizes most models take (multiples of 32), only to learn the task and classes: an
    # image the model cannot take is skipped later, with its reason, not refused here
    rounded = [(-(-h // 32) * 32, -(-w // 32) * 32) for h, w in common]
    for height, width in dict.fromkeys([*common, *rounded, (224, 224)]):
        zeros = torch.zeros(1, 3, height, width, dtype=dtype, device=model_device(model))
        if multiple is not None:
            zeros = pad_batch(zeros, padding_for(height, width, multiple))
        try:
            with torch.no_grad():
                scores = as_score_tensor(model(zeros))
        except Exception as error:  # the model cannot take this size: try another
            errors.append(f"{height}×{width}: {type(error).__name__}: {str(error)[:200]}")
            continue
        dense = is_dense(scores)
        task = args.task if args.task != "auto" else ("seg" if dense else "cls")
        if task == "seg" and not dense:
            raise UsageError(
                f"--task seg, but the model returns {tuple(scores.shape)}, not (B, C, H, W) logits"
            )
        return task, int(scores.shape[1])
    raise UsageError(
        "the model runs on none of the image sizes tried ("
        + "; ".join(errors)
        + "); try --pad auto, --size H W, or check the model (and its dtype: inputs are float32)"
    )


def _classes(text: str | None, task: str, count: int, labels: list[str] | None) -> Any:
    """``--class`` checked against the model's classes: seg → present | all | ids; cls →
    ``None`` (top class) or ids."""
    if task == "seg":
        if text in (None, "present", "all"):
            return text or "present"
        ids = class_ids(text, labels)
    else:
        if text in (None, "top"):
            return None
        if text in ("present", "all"):
            raise UsageError(f"--class {text} is for segmenters; a classifier takes top or ids")
        ids = class_ids(text, labels)
    if not ids:
        raise UsageError("--class lists no class")
    check_class_ids(ids, count)
    if len(set(ids)) != len(ids):
        raise UsageError(f"--class lists a class twice: {ids}")
    return ids


def finish(command: str, out: Path, totals: Totals) -> int:
    """Say where the report is and what was skipped; the exit status: 1 if an input was
    skipped or images remain (another shard's, or an unfinished run), else 0."""
    print(f"wrote {out / 'report.html'}")
    for failure in totals.failed:
        print(f"camlens {command}: skipped {failure['input']}: {failure['error']}", file=sys.stderr)
    if totals.remaining:
        print(f"camlens {command}: {totals.remaining} image(s) not explained yet (other shards, or "
              "an interrupted run: --resume)", file=sys.stderr)  # fmt: skip
    return 1 if totals.failed or totals.remaining else 0
