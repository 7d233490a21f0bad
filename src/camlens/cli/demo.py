"""``camlens demo``: the embedded demo, with no download."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from camlens.cli.options import UsageError, parse_methods

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Declare ``demo`` on the ``commands`` of the top-level parser."""
    parser = commands.add_parser(
        "demo",
        help="explain the embedded H&E segmentation model and the shortcut classifiers",
        description="Run the embedded demo: synthetic H&E skin tiles segmented by a small "
        "DeepLabV3+-style model shipped with camlens, Grad-CAM vs HiResCAM per class, and a "
        "classifier that learned a corner marker instead of the lesion. No download.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("camlens-demo"),
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--tiles", type=int, default=3, help="number of sample tiles (default: %(default)s)"
    )
    parser.add_argument(
        "--method",
        default="gradcam,hirescam",
        help="comma-separated methods (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the sample tiles")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the demo's report into ``--out``; the exit status."""
    from camlens.demo.run import run_demo  # the demo's data and models load only when asked

    if not 1 <= args.tiles <= 48:
        raise UsageError(f"--tiles must be between 1 and 48, got {args.tiles}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    page = run_demo(
        args.out,
        tiles=args.tiles,
        methods=parse_methods(args.method),
        seed=args.seed,
        progress=not args.quiet,
    )
    print(f"wrote {page}")
    return 0
