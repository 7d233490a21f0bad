"""``camlens report OUT``: rebuild ``summary.json`` and ``report.html`` from the manifests.

After an interrupted run, or when several shards (``--shard i/N``) wrote into ``OUT``:
their manifests are merged into one summary and one report. Nothing is recomputed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from camlens.cli.explain import finish
from camlens.cli.options import UsageError
from camlens.jobs.evaluate import build_outputs as evaluate_outputs
from camlens.jobs.folder import RUN_FILE, RunFolder
from camlens.jobs.summary import build_outputs as explain_outputs

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Declare ``report`` on the ``commands`` of the top-level parser."""
    parser = commands.add_parser(
        "report",
        help="rebuild the summary and report of an explain or evaluate run (merging shards)",
        description="Rebuild summary.json and report.html in OUT from its manifests: after "
        "an interruption, or to merge the shards of a run.",
    )
    parser.add_argument("out", type=Path, help="the --out folder of a camlens explain run")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def run(args: argparse.Namespace) -> int:
    """Rebuild the outputs; the exit status as for ``explain`` (1 if anything is missing)."""
    folder = RunFolder(args.out)
    identity = folder.recorded() if args.out.is_dir() else None
    if identity is None:
        raise UsageError(
            f"{args.out} holds no camlens run ({RUN_FILE} is missing or unreadable); give the "
            "--out folder of a `camlens explain` run"
        )
    builders = {"explain": explain_outputs, "evaluate": evaluate_outputs}
    build = builders.get(identity.get("command"))
    if build is None:
        raise UsageError(
            f"{args.out} holds a {identity.get('command')!r} run, not explain/evaluate"
        )
    totals = build(args.out, identity, expected=identity.get("inputs"))
    return finish("report", args.out, totals)
