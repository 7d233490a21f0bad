"""The set-up that ``explain`` and ``evaluate`` share: every check before the first image is
decoded, then the model, the plan and the run's settings.

:func:`check_arguments` needs nothing but the arguments (numbers, device, methods and their
options, shard, padding); :func:`prepare` then loads the model and weights, checks the layer
names, plans the batches from the images' headers, and learns the task and the number of
classes from one forward pass of zeros, so that ``--class`` is checked against the model.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from camlens.cli.options import (
    UsageError,
    check_class_ids,
    check_numbers,
    class_ids,
    parse_device,
    parse_methods,
    parse_options,
)
from camlens.engine import plan_methods
from camlens.jobs.folder import Shard
from camlens.jobs.padding import model_multiple, pad_batch, padding_for, parse_pad
from camlens.jobs.plan import Plan, make_plan
from camlens.jobs.reader import probe_size
from camlens.layers import resolve_layers
from camlens.loading import load_labels, load_model, load_weights
from camlens.outputs import as_score_tensor, is_dense
from camlens.steps import model_device, model_dtype

__all__ = ["Arguments", "Prepared", "check_arguments", "prepare", "shared_settings"]


@dataclass(frozen=True)
class Arguments:
    """What the arguments alone tell, checked."""

    methods: list[str]
    options: dict[str, dict[str, Any]]
    device: torch.device
    shard: Shard
    pad: Any  # "auto" | int | None


@dataclass
class Prepared:
    """The model and the plan, ready to run."""

    model: torch.nn.Module
    labels: list[str] | None
    plan: Plan
    size: tuple[int, int] | None
    multiple: int | None
    task: str
    classes: Any  # seg: "present" | "all" | [ids]; cls: None (top class) or [ids]


def check_arguments(args: argparse.Namespace) -> Arguments:
    """Everything the arguments alone can be checked for (raises ``UsageError`` and co)."""
    check_numbers(args)
    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        raise UsageError("--resume continues a run and --overwrite clears it: pass one")
    try:
        shard = Shard.parse(args.shard)
        pad = parse_pad(getattr(args, "pad", "none"))
    except ValueError as error:
        raise UsageError(str(error)) from None
    device = parse_device(args.device)
    methods = parse_methods(args.method)
    options = parse_options(args.options, methods)
    plan_methods(methods, options)
    return Arguments(methods, options, device, shard, pad)


def shared_settings(args: argparse.Namespace, checked: Arguments, ready: Prepared) -> dict:
    """The fields of :class:`camlens.jobs.settings.JobSettings`, from the checked arguments
    and the prepared run; each command adds its own."""
    return {
        "model": args.model,
        "weights": str(args.weights) if args.weights else None,
        "layers": list(args.layer),
        "methods": checked.methods,
        "options": checked.options,
        "task": ready.task,
        "classes": ready.classes,
        "class_names": ready.labels,
        "mean": tuple(args.mean),
        "std": tuple(args.std),
        "size": ready.size,
        "batch_size": args.batch_size,
        "shards": checked.shard.count,
    }


def prepare(args: argparse.Namespace, checked: Arguments) -> Prepared:
    """Model, weights, labels, layers, the plan of this shard, task and classes."""
    model = load_model(args.model)
    if args.weights is not None:
        load_weights(model, args.weights)
    model = model.to(checked.device).eval()
    labels = load_labels(args.labels) if args.labels is not None else None
    layers = args.layer if len(args.layer) > 1 else args.layer[0]
    if "auto" not in args.layer:
        resolve_layers(model, layers)  # unknown names fail here, with the close names
    size = tuple(args.size) if args.size is not None else None
    plan = make_plan(
        args.images,
        batch_size=args.batch_size,
        probe=partial(probe_size, max_pixels=args.max_pixels),
        size=size,
        shard=checked.shard,
    )
    if plan.total_items == 0:
        reasons = "; ".join(f"{argument}: {reason}" for argument, reason in plan.missing)
        raise UsageError(f"no image to use: {reasons}")
    multiple = model_multiple(model) if checked.pad == "auto" else checked.pad
    task, count = _probe_model(args.task, model, plan, multiple)
    classes = _classes(args.classes, task, count, labels)
    return Prepared(model, labels, plan, size, multiple, task, classes)


def _probe_model(
    requested: str, model: torch.nn.Module, plan: Plan, multiple: int | None
) -> tuple[str, int]:
    """``(task, number of classes)`` from one forward pass of zeros at a size of the plan
    (the most common first, then sizes most models take); no image is decoded for it. The
    sizes are the whole run's, so every shard learns the same."""
    sizes = plan.sizes
    if not sizes:  # nothing readable at all: nothing to check against
        return ("seg" if requested == "seg" else "cls"), 0
    dtype = model_dtype(model)
    common = sorted(sizes, key=lambda size: -sizes[size])[:3]
    # An image the model cannot take is skipped later with its reason; here the sizes only
    # serve to learn the task and the classes.
    rounded = [(-(-h // 32) * 32, -(-w // 32) * 32) for h, w in common]
    errors = []
    for height, width in dict.fromkeys([*common, *rounded, (224, 224)]):
        zeros = torch.zeros(1, 3, height, width, dtype=dtype, device=model_device(model))
        if multiple is not None:
            zeros = pad_batch(zeros, padding_for(height, width, multiple))
        try:
            with torch.no_grad():
                scores = as_score_tensor(model(zeros))
        except Exception as error:  # this size does not fit the model: try another
            errors.append(f"{height}×{width}: {type(error).__name__}: {str(error)[:200]}")
            continue
        dense = is_dense(scores)
        task = requested if requested != "auto" else ("seg" if dense else "cls")
        if task == "seg" and not dense:
            raise UsageError(
                f"--task seg, but the model returns {tuple(scores.shape)}, not (B, C, H, W) logits"
            )
        return task, int(scores.shape[1])
    raise UsageError(
        "the model runs on none of the sizes tried ("
        + "; ".join(errors)
        + "); check --size, --pad and the model (inputs are float32 unless the model is not)"
    )


def _classes(text: str | None, task: str, count: int, labels: list[str] | None) -> Any:
    """``--class`` checked against the model's ``count`` classes."""
    if task == "seg":
        if text in (None, "present", "all"):
            return text or "present"
    elif text in (None, "top"):
        return None
    elif text in ("present", "all"):
        raise UsageError(f"--class {text} is for segmenters; a classifier takes top or ids")
    ids = class_ids(text, labels)
    if not ids:
        raise UsageError("--class lists no class")
    if count:
        check_class_ids(ids, count)
    if len(set(ids)) != len(ids):
        raise UsageError(f"--class lists a class twice: {ids}")
    return ids
