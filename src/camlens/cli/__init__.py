"""The ``camlens`` command: ``demo``, ``explain``, ``evaluate``, ``report`` and ``methods``.

Exit status, for scripts: 0 everything done; 1 some inputs were skipped (listed on stderr, in
``summary.json`` and the report) or images remain to be done; 2 a usage or set-up error,
reported in one line before any work (``--debug`` adds the traceback); 3 an internal error
of camlens (a bug: the message asks for ``--debug`` and a report); 130 interrupted (Ctrl-C or
SIGTERM), after writing a consistent partial result.

One module per command (:mod:`~camlens.cli.explain`, :mod:`~camlens.cli.evaluate`,
:mod:`~camlens.cli.report`, :mod:`~camlens.cli.demo`, :mod:`~camlens.cli.methods`), each with
``add_parser`` and ``run``; :mod:`~camlens.cli.options` holds the shared arguments and their
checks, :mod:`~camlens.cli.job` the set-up ``explain`` and ``evaluate`` share. The work
itself is :mod:`camlens.jobs`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType

from camlens.cli import demo, evaluate, explain, methods, report, slide
from camlens.cli.options import UsageError
from camlens.errors import CamlensError

__all__ = ["EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_USAGE", "UsageError", "main"]

EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

#: The commands, in the order ``camlens --help`` lists them.
_COMMANDS = {
    "demo": demo,
    "explain": explain,
    "evaluate": evaluate,
    "slide": slide,
    "report": report,
    "methods": methods,
}


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


def _terminate(_signal: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # a scheduler's SIGTERM ends the run like Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``camlens`` command; returns the exit status (see above)."""
    args = _parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (e.g. called from a test runner's worker)
        previous = None
    try:
        return _COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print(f"camlens {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CamlensError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if debug:
            traceback.print_exc()
        print(f"camlens {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader of our output went away (`camlens methods | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        if debug:
            traceback.print_exc()
        print(
            f"camlens {args.command}: internal error: {type(error).__name__}: {error}\n"
            f"  rerun with --debug for the traceback, and please report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
