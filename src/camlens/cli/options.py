"""The arguments ``explain`` and ``evaluate`` share, and the parsing of their values.

:func:`add_model_arguments` declares the model, image, preprocessing and output options;
the helpers below turn their strings (``--method``, ``--class``) into what the library takes.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from camlens.errors import CamlensError
from camlens.image.preprocess import IMAGENET_MEAN, IMAGENET_STD
from camlens.jobs.reader import DEFAULT_MAX_PIXELS, MAX_SIZE_SIDE
from camlens.methods import available_methods, get_method
from camlens.targets import ClassifierOutputTarget

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "HelpFormatter",
    "UsageError",
    "add_engine_arguments",
    "add_job_arguments",
    "add_model_arguments",
    "check_class_ids",
    "check_numbers",
    "class_ids",
    "classification_targets",
    "parse_device",
    "parse_methods",
    "parse_options",
    "segmentation_classes",
]


class UsageError(CamlensError, ValueError):
    """A command-line argument cannot be used as given."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to an option's help, unless the help already states one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help
        return super()._get_help_string(action)


# -- declarations ---------------------------------------------------------------------------
def add_model_arguments(
    parser: argparse.ArgumentParser,
    default_method: str,
    *,
    inputs: str = "image files, folders or glob patterns",
    metavar: str | None = None,
    size: bool = True,
    segmentation_only: bool = False,
) -> None:
    """The arguments ``explain``, ``evaluate`` and ``slide`` share: model, inputs,
    preprocessing (``--size`` where images are resized), output. ``segmentation_only``
    (slides): no ``--task``, and ``--class`` takes ``all`` or ids."""
    parser.add_argument("images", nargs="+", metavar=metavar, help=inputs)
    _add_model(parser, default_method, task=not segmentation_only)
    _add_classes(parser, segmentation_only=segmentation_only)
    _add_preprocessing(parser, size=size)
    parser.add_argument(
        "--batch-size", type=int, default=4, help="images per forward pass (same-size images only)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def add_job_arguments(parser: argparse.ArgumentParser, *, pad: bool = True) -> None:
    """The arguments of a resumable, shardable job (``explain``, ``evaluate``; ``--pad``
    only where maps can be cropped back)."""
    group = parser.add_argument_group("running as a job")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out: images in its manifest are not explained again",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="clear --out (a previous camlens run) before starting",
    )
    group.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help="explain a stable 1/N share of the images (0 ≤ I < N); N processes can share "
        "one --out, and `camlens report OUT` merges them",
    )
    if pad:
        group.add_argument(
            "--pad",
            default="none",
            metavar="auto|N|none",
            help="pad images whose sides are not multiples of N (auto: the model's declared "
            "stride or patch size) and crop the maps back",
        )
    group.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="PIXELS",
        help="refuse larger images (H × W) from their header, before decoding them",
    )


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the job runs: this process (``local``) or a Ray cluster (``--engine ray``,
    with the ``camlens[ray]`` extra)."""
    group = parser.add_argument_group('running on a Ray cluster (pip install "camlens[ray]")')
    group.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: a pool of Ray workers, each building the model once, "
        "writing into --out (which every node must see)",
    )
    group.add_argument(
        "--address",
        default=None,
        help="the Ray cluster to join (auto, ray://head:10001, host:6379); default: this "
        "machine, started for the run",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="Ray workers (default: one per GPU, or half the CPUs on a CPU-only cluster)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        metavar="G",
        help="GPUs each Ray worker takes (default: 1 where the cluster has GPUs, else 0)",
    )
    group.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        metavar="T",
        help="torch threads in each Ray worker (default: its share of the CPUs); maps are "
        "byte-identical to a local run with as many threads",
    )


def _add_model(parser: argparse.ArgumentParser, default_method: str, *, task: bool) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="factory returning the model: pkg.module:function or path/to/file.py:function",
    )
    parser.add_argument("--weights", type=Path, help="state dict to load (weights_only)")
    parser.add_argument(
        "--layer",
        required=True,
        action="append",
        help="target layer: dotted name such as encoder.layer4 or "
        "layer4[-1], or 'auto'; repeat for several layers",
    )
    parser.add_argument(
        "--method",
        default=default_method,
        help=f"comma-separated methods, from: {', '.join(available_methods())}",
    )
    parser.add_argument(
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="[METHOD.]NAME=VALUE",
        help="a method option, e.g. pool_size=4 or scorecam.batch_size=32 (repeatable; "
        "`camlens methods` lists each method's options)",
    )
    if not task:
        return
    parser.add_argument(
        "--task",
        choices=["auto", "seg", "cls"],
        default="auto",
        help="segmentation or classification; 'auto' looks at the output",
    )


def _add_classes(parser: argparse.ArgumentParser, *, segmentation_only: bool) -> None:
    parser.add_argument(
        "--class",
        dest="classes",
        default=None,
        help="all | ids/names (comma-separated) (default: all)"
        if segmentation_only
        else "seg: present | all | ids/names (comma-separated); "
        "cls: top | ids/names (default: present for seg, top for cls)",
    )
    parser.add_argument(
        "--labels", type=Path, help="JSON list of class names (or mapping id -> name)"
    )


def _add_preprocessing(parser: argparse.ArgumentParser, *, size: bool = True) -> None:
    for name, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        parser.add_argument(
            f"--{name}",
            type=float,
            nargs=3,
            default=default,
            metavar=("R", "G", "B"),
            help=f"normalisation {name}",
        )
    if not size:
        return
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="resize images to H × W before the model (default: native)",
    )


# -- checks before any work ----------------------------------------------------------------------
def check_numbers(args: argparse.Namespace) -> None:
    """``--batch-size``, ``--size``, ``--mean``, ``--std`` (and ``--max-pixels``) make sense."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    max_pixels = getattr(args, "max_pixels", DEFAULT_MAX_PIXELS)
    if max_pixels < 1:
        raise UsageError(f"--max-pixels must be positive, got {max_pixels}")
    if getattr(args, "size", None) is not None:
        height, width = args.size
        if not (1 <= height <= MAX_SIZE_SIDE and 1 <= width <= MAX_SIZE_SIDE):
            raise UsageError(
                f"--size {height} {width}: each side must be between 1 and {MAX_SIZE_SIDE} px"
            )
        if height * width > max_pixels:
            raise UsageError(
                f"--size {height} {width} is {height * width:,} px, over --max-pixels "
                f"{max_pixels:,}"
            )
    for name in ("mean", "std"):
        values = getattr(args, name)
        if not all(math.isfinite(v) for v in values):
            raise UsageError(f"--{name} must be finite numbers, got {values}")
    if not all(v > 0 for v in args.std):
        raise UsageError(f"--std must be positive (it divides the image), got {args.std}")


def parse_device(text: str) -> torch.device:
    """``--device``: a device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {text!r} is not a device name (cpu, cuda, cuda:1, mps)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {text}: this PyTorch build or machine has no CUDA device; "
                "use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {text}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise UsageError(f"--device {text}: camlens runs on cpu, cuda or mps")
    return device


def check_class_ids(ids: list[int], count: int) -> None:
    """Class ids are within the model's ``count`` classes (negative ids are refused)."""
    for class_id in ids:
        if not 0 <= class_id < count:
            raise UsageError(
                f"--class {class_id}: the model has {count} classes (ids 0..{count - 1})"
            )


# -- values -----------------------------------------------------------------------------------
def parse_methods(text: str) -> list[str]:
    """``--method``: comma-separated names → registry names; unknown names raise."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--method lists no method")
    return [get_method(name).name for name in names]


def parse_options(texts: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``--option [METHOD.]NAME=VALUE`` → options nested by method, each value parsed and
    checked by the method's declaration. Without ``METHOD.`` an option goes to every
    requested method that declares it; an option that none declares is an error."""
    nested: dict[str, dict[str, Any]] = {}
    for text in texts:
        key, separator, value = text.partition("=")
        if not separator or not key.strip():
            raise UsageError(
                f"--option is written [METHOD.]NAME=VALUE (e.g. pool_size=4), got {text!r}"
            )
        owner, dot, name = key.strip().rpartition(".")
        if dot:
            method = get_method(owner).name
            if method not in methods:
                raise UsageError(f"--option {text!r} is for {method}, which --method does not list")
            receivers = [method]
        else:
            receivers = [m for m in methods if name in _option_names(m)]
            if not receivers:
                offered = "; ".join(
                    f"{m}: {', '.join(_option_names(m)) or 'none'}" for m in methods
                )
                raise UsageError(
                    f"--option {name!r} is not an option of {', '.join(methods)} ({offered})"
                )
        for method in receivers:
            parsed_name, parsed = get_method(method).parse_option(f"{name}={value}")
            nested.setdefault(method, {})[parsed_name] = parsed
    return nested


def _option_names(method: str) -> list[str]:
    return [option.name for option in get_method(method).options]


def class_ids(text: str, labels: list[str] | None) -> list[int]:
    """``--class``: comma-separated ids or names (names need ``labels``) → class ids."""
    ids = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lstrip("-").isdigit():
            if part.startswith("-"):
                raise UsageError(f"--class {part}: class ids are 0 or more")
            ids.append(int(part))
        elif labels is not None and part in labels:
            ids.append(labels.index(part))
        else:
            known = f"; known names: {', '.join(labels)}" if labels else " (give --labels)"
            raise UsageError(f"--class {part!r} is neither a class id nor a known name{known}")
    return ids


def segmentation_classes(args: argparse.Namespace, labels: list[str] | None) -> Any:
    """``--class`` for a segmenter: ``"present"`` (default), ``"all"`` or a list of ids."""
    classes = args.classes or "present"
    return classes if classes in ("present", "all") else class_ids(classes, labels)


def classification_targets(
    args: argparse.Namespace, labels: list[str] | None
) -> list[ClassifierOutputTarget] | None:
    """``--class`` for a classifier: ``None`` for the top class (default), else one target
    per listed class."""
    spec = args.classes or "top"
    return None if spec == "top" else [ClassifierOutputTarget(c) for c in class_ids(spec, labels)]
