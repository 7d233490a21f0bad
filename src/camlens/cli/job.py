"""The set-up and the batching that ``explain`` and ``evaluate`` share.

:func:`open_job` checks the shared arguments, loads the model, its weights and the labels,
and reads the images; :func:`batches`, :func:`model_inputs` and :func:`detect_task` feed
them to the model; :func:`finish` closes a run's report and sets its exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from camlens.cli.options import (
    UsageError,
    check_numbers,
    parse_device,
    parse_methods,
    parse_options,
)
from camlens.engine import plan_methods
from camlens.errors import CamlensError
from camlens.files import collect_images
from camlens.image import load_image, preprocess_image
from camlens.layers import resolve_layers
from camlens.loading import load_labels, load_model, load_weights
from camlens.outputs import as_score_tensor, is_dense
from camlens.report import Report

__all__ = [
    "Job",
    "batches",
    "detect_task",
    "finish",
    "load_resized",
    "model_inputs",
    "open_job",
]

#: An image file and its pixels (H, W, 3) float32 in [0, 1].
Loaded = tuple[Path, np.ndarray]


@dataclass
class Job:
    """What ``explain`` and ``evaluate`` set up from their shared arguments."""

    methods: list[str]
    options: dict[str, dict[str, Any]]
    model: torch.nn.Module
    device: torch.device
    labels: list[str] | None
    layers: Any
    files: list[Path]
    loaded: list[Loaded]
    failed: list[tuple[str, str]]
    progress: tqdm


def open_job(args: argparse.Namespace) -> Job:
    """Check the arguments, load the model, weights and labels, read the images."""
    check_numbers(args)
    methods = parse_methods(args.method)
    options = parse_options(args.options, methods)
    plan_methods(methods, options)  # every option checked before any work
    device = parse_device(args.device)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    files, missing = collect_images(args.images)
    failed: list[tuple[str, str]] = list(missing)
    if not files:
        raise UsageError("no image to use: " + "; ".join(f"{a}: {r}" for a, r in missing))
    model = _load_model(args, device)
    labels = load_labels(args.labels) if args.labels is not None else None
    layers = args.layer if len(args.layer) > 1 else args.layer[0]
    if "auto" not in args.layer:
        resolve_layers(model, layers)  # fail early, with close names, before any work
    progress = tqdm(total=len(files), desc=args.command, unit="image", disable=args.quiet)
    loaded = _read_images(files, args.size, failed, progress)
    return Job(methods, options, model, device, labels, layers, files, loaded, failed, progress)


def _load_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    model = load_model(args.model)
    if args.weights is not None:
        load_weights(model, args.weights)
    return model.to(device).eval()


def _read_images(
    files: list[Path],
    size: Sequence[int] | None,
    failed: list[tuple[str, str]],
    progress: tqdm,
) -> list[Loaded]:
    """The readable ``files``; the others are appended to ``failed`` and counted as done."""
    loaded: list[Loaded] = []
    for path in files:
        try:
            loaded.append((path, load_resized(path, size)))
        except CamlensError as error:
            failed.append((str(path), str(error)))
            progress.update(1)
    return loaded


def load_resized(path: Path, size: Sequence[int] | None) -> np.ndarray:
    """The image at ``path``, resized (bilinear, through 8 bits) to ``size`` = (H, W) if given."""
    image = load_image(path)
    if size is not None and tuple(image.shape[:2]) != tuple(size):
        resized = Image.fromarray((image * 255).round().astype(np.uint8)).resize(
            (size[1], size[0]), Image.BILINEAR
        )
        image = np.asarray(resized, dtype=np.float32) / 255
    return image


def batches(items: list[Loaded], batch_size: int) -> Iterator[list[Loaded]]:
    """Consecutive runs of same-size images, at most ``batch_size`` long."""
    run: list[Loaded] = []
    for item in items:
        if run and (len(run) == batch_size or run[0][1].shape != item[1].shape):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def model_inputs(
    batch: list[Loaded], args: argparse.Namespace, device: torch.device
) -> torch.Tensor:
    """A batch's images, normalised with ``--mean``/``--std``, as one tensor on ``device``."""
    stacked = torch.cat([preprocess_image(image, args.mean, args.std) for _, image in batch])
    return stacked.to(device)


def detect_task(requested: str, model: torch.nn.Module, inputs: torch.Tensor) -> str:
    """``"seg"`` or ``"cls"``: ``requested``, or for ``"auto"`` what the model's output shows."""
    if requested != "auto":
        return requested
    with torch.no_grad():
        return "seg" if is_dense(as_score_tensor(model(inputs[:1]))) else "cls"


def finish(report: Report, failed: list[tuple[str, str]], explained: int) -> int:
    """List the skipped inputs (in the report and on stderr), write the report; the exit
    status: 1 if an input was skipped, else 0."""
    if failed:
        section = report.section("Skipped inputs")
        section.table(["input", "reason"], [list(item) for item in failed])
    page = report.write()
    print(f"wrote {page} ({explained} explained, {len(failed)} skipped)")
    for name, reason in failed:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    return 1 if failed else 0
