"""The arguments ``explain`` and ``evaluate`` share, and the parsing of their values.

:func:`add_model_arguments` declares the model, image, preprocessing and output options;
the helpers below turn their strings (``--method``, ``--class``) into what the library takes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from camlens.errors import CamlensError
from camlens.methods import available_methods, get_method
from camlens.targets import ClassifierOutputTarget

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "HelpFormatter",
    "UsageError",
    "add_model_arguments",
    "class_ids",
    "classification_targets",
    "parse_methods",
    "parse_options",
    "segmentation_classes",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UsageError(CamlensError, ValueError):
    """A command-line argument cannot be used as given."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to an option's help, unless the help already states one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help
        return super()._get_help_string(action)


# -- declarations ---------------------------------------------------------------------------
def add_model_arguments(parser: argparse.ArgumentParser, default_method: str) -> None:
    """The arguments ``explain`` and ``evaluate`` share: model, images, preprocessing, output."""
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    _add_model(parser, default_method)
    _add_classes(parser)
    _add_preprocessing(parser)
    parser.add_argument(
        "--batch-size", type=int, default=4, help="images per forward pass (same-size images only)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_model(parser: argparse.ArgumentParser, default_method: str) -> None:
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
    parser.add_argument(
        "--task",
        choices=["auto", "seg", "cls"],
        default="auto",
        help="segmentation or classification; 'auto' looks at the output",
    )


def _add_classes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--class",
        dest="classes",
        default=None,
        help="seg: present | all | ids/names (comma-separated); "
        "cls: top | ids/names (default: present for seg, top for cls)",
    )
    parser.add_argument(
        "--labels", type=Path, help="JSON list of class names (or mapping id -> name)"
    )


def _add_preprocessing(parser: argparse.ArgumentParser) -> None:
    for name, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        parser.add_argument(
            f"--{name}",
            type=float,
            nargs=3,
            default=default,
            metavar=("R", "G", "B"),
            help=f"normalisation {name}",
        )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="resize images to H × W before the model (default: native)",
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
