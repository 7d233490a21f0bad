"""Shared pieces of the benchmarks: the cases (model, layer, input, target), timing, and the
optional pytorch-grad-cam import.

Timings interleave the contenders repeat by repeat, rotating their order each repeat, so
that drift in machine load and the after-effects of one contender on the next hit all of
them alike, and report medians.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from camlens.models import deeplabv3plus_resnet50, resnet50
from camlens.targets import ClassifierOutputTarget, SemanticSegmentationTarget

#: camlens registry name → pytorch-grad-cam class name.
GRADCAM_CLASSES = {
    "gradcam": "GradCAM",
    "hirescam": "HiResCAM",
    "gradcam_elementwise": "GradCAMElementWise",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
}


@dataclass
class Case:
    """One benchmark situation."""

    name: str
    model: nn.Module
    layer: nn.Module
    inputs: torch.Tensor
    targets: list[Any]


def make_case(name: str, batch: int, size: int, seed: int = 0) -> Case:
    """``resnet50`` (target ``layer4[-1]``, class 281) or ``deeplabv3plus`` (target
    ``encoder.layer4``, class 1 over its predicted mask) with random weights."""
    torch.manual_seed(seed)
    inputs = torch.randn(batch, 3, size, size)
    if name == "resnet50":
        model = resnet50(num_classes=1000).eval()
        return Case(name, model, model.layer4[-1], inputs, [ClassifierOutputTarget(281)] * batch)
    if name == "deeplabv3plus":
        model = deeplabv3plus_resnet50(num_classes=13).eval()
        with torch.no_grad():
            predicted = model(inputs).argmax(1)
        category = int(torch.mode(predicted.flatten()).values)
        targets = [
            SemanticSegmentationTarget(category, (predicted[i] == category).float().numpy())
            for i in range(batch)
        ]
        return Case(name, model, model.encoder.layer4, inputs, targets)
    raise ValueError(f"unknown case {name!r}")


#: What to do where a script needs pytorch-grad-cam and it is not importable.
NO_PEER = (
    "pytorch-grad-cam is not importable here; run bash bench/setup_gradcam_env.sh and "
    "use bench/.env-gradcam/bin/python"
)


def import_pytorch_grad_cam() -> ModuleType | None:
    """pytorch_grad_cam, or None where it is not installed (see bench/setup_gradcam_env.sh)."""
    try:
        import pytorch_grad_cam
    except ImportError:
        return None
    return pytorch_grad_cam


#: The clock ``time_interleaved`` reads (a script may switch to ``time.process_time``).
CLOCK = time.perf_counter


def time_interleaved(
    contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median time in seconds (of :data:`CLOCK`, wall time by default) of each contender,
    run in turn ``repeats`` times."""
    for _ in range(warmup):
        for run in contenders.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for repeat in range(repeats):
        # Rotate the order each repeat, so that no contender always runs right after the
        # same other one (e.g. after pytorch-grad-cam's full backward, which leaves the
        # allocator and caches in a state that slows whatever runs next).
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            start = CLOCK()
            contenders[name]()
            samples[name].append(CLOCK() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def add_clock_options(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` and ``--cpu-time``: on a shared machine, the process's CPU time at one
    torch thread leaves out the time spent descheduled (see :func:`use_clock_options`)."""
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--cpu-time", action="store_true", help="CPU time, not wall time")


def use_clock_options(args: argparse.Namespace) -> str:
    """Apply :func:`add_clock_options`' choices (torch threads, :data:`CLOCK`); returns
    what the figures measure, for the header line."""
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        CLOCK = time.process_time
    return "CPU time" if args.cpu_time else "wall time"


def machine_line() -> str:
    """What the figures were measured on."""
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )
