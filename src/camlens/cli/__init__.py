"""The ``camlens`` command: ``demo``, ``explain``, ``evaluate`` and ``methods``.

``camlens explain`` runs the library on users' own models and images and writes, into
``--out``: ``report.html`` (with its PNG overlays in ``images/``), the raw maps as one
``raw/<image>.npz`` per image, and ``summary.json``. Images that cannot be read are skipped
and listed at the end; the exit status is then 1 (2 for usage and set-up errors).

One module per command (:mod:`~camlens.cli.explain`, :mod:`~camlens.cli.evaluate`,
:mod:`~camlens.cli.demo`, :mod:`~camlens.cli.methods`), each with ``add_parser`` and ``run``;
:mod:`~camlens.cli.options` holds the arguments ``explain`` and ``evaluate`` share,
:mod:`~camlens.cli.job` their set-up, :mod:`~camlens.cli.artefacts` the files they write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from camlens.cli import demo, evaluate, explain, methods
from camlens.cli.options import UsageError
from camlens.errors import CamlensError

__all__ = ["UsageError", "main"]

#: The commands, in the order ``camlens --help`` lists them.
_COMMANDS = {"demo": demo, "explain": explain, "evaluate": evaluate, "methods": methods}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camlens",
        description="Class activation maps for image classifiers and segmenters: where does "
        "the model look, and can the explanation be trusted?",
        epilog="Run 'camlens COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS.values():
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``camlens`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command].run(args)
    except (CamlensError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"camlens {args.command}: error: {message}", file=sys.stderr)
        return 2
