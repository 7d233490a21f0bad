"""``camlens explain``: explain a model on image files, as a resumable, shardable job.

Everything is checked before the first image is decoded (numbers, device, methods and
options, model and weights, layers, ``--out``, image headers, class ids against the model's
classes); then :func:`camlens.jobs.runner.run_plan` streams the images through
:class:`camlens.jobs.explain.ExplainBatch`. ``--out`` holds ``raw/<name>.npz`` and
``images/<name>/`` per image, ``manifest*.jsonl`` (what is done), ``run.json`` (the run's
settings), ``summary.json`` and ``report.html`` (built from the manifests).

``--engine ray`` runs the same plan on a pool of Ray workers
(:class:`camlens.distributed.RayEngine`) instead of this process; everything else — checks,
``--out`` and its rules, the outputs, the exit codes — is the local run's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from camlens.cli.job import Prepared, check_arguments, prepare, shared_settings
from camlens.cli.options import (
    HelpFormatter,
    UsageError,
    add_engine_arguments,
    add_job_arguments,
    add_model_arguments,
)
from camlens.jobs.explain import ExplainBatch, ExplainSettings
from camlens.jobs.folder import RunFolder, Totals
from camlens.jobs.reader import read_image
from camlens.jobs.runner import Processor, RunCounts, run_plan
from camlens.jobs.summary import build_outputs

__all__ = [
    "add_parser",
    "check_ray_arguments",
    "claim",
    "finish",
    "run",
    "run_command",
    "run_job",
]


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
    add_engine_arguments(parser)
    return parser


def run_command(argv: list[str]) -> int:
    """``camlens explain ARGV`` from Python (the demo runs it): parse, then :func:`run`;
    errors propagate as exceptions instead of exit codes."""
    parser = argparse.ArgumentParser(prog="camlens")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["explain", *argv]))


def run(args: argparse.Namespace) -> int:
    """Run the job; the exit status (0 all done, 1 some skipped, 130 interrupted)."""
    ray = getattr(args, "engine", "local") == "ray"
    if ray:
        check_ray_arguments(args)
    checked = check_arguments(args)
    folder = RunFolder(args.out, checked.shard)
    folder.check_writable()  # before the model loads; nothing is created yet
    ready = prepare(args, checked)
    with folder:
        settings = ExplainSettings(
            **shared_settings(args, checked, ready), pad=checked.pad, multiple=ready.multiple
        )
        identity = settings.identity() | {"inputs": ready.plan.total_items}
        if ray:
            return _run_on_ray(args, folder, ready, settings, identity)
        process = ExplainBatch(ready.model, settings, args.out, checked.device)
        return run_job(args, folder, ready, identity, process, build_outputs)


def check_ray_arguments(args: argparse.Namespace) -> None:
    """``--engine ray``'s arguments, and the ``ray`` package, before any work."""
    from camlens.distributed import ClusterOptions, check_installed

    if args.device != "cpu":
        raise UsageError(
            "--engine ray places its workers itself: leave --device out and give "
            "--gpus-per-worker (default: 1 where the cluster has GPUs)"
        )
    check_installed()
    ClusterOptions(
        args.address, args.workers, args.gpus_per_worker, args.threads_per_worker
    ).check()


def _run_on_ray(
    args: argparse.Namespace,
    folder: RunFolder,
    ready: Prepared,
    settings: ExplainSettings,
    identity: dict[str, Any],
) -> int:
    """The job on a Ray cluster: the driver claims ``--out``, keeps the manifest and builds
    the outputs; the workers explain the batches (:mod:`camlens.distributed`)."""
    from camlens.distributed import Cluster, ClusterOptions, RayEngine, WorkerSpec
    from camlens.distributed.worker import portable_model_spec

    options = ClusterOptions(
        args.address, args.workers, args.gpus_per_worker, args.threads_per_worker
    )
    spec = WorkerSpec(
        settings=settings,
        out=str(args.out.resolve()),
        model=portable_model_spec(args.model),
        weights=str(args.weights.resolve()) if args.weights else None,
        size=ready.size,
        max_pixels=args.max_pixels,
    )
    claim(args, folder, identity)  # before Ray starts: a refused --out costs nothing
    with Cluster(options) as cluster:
        engine = RayEngine(cluster, spec, options)
        engine.plan_workers()  # too few GPUs: refused before any image
        status = run_job(args, folder, ready, identity, None, build_outputs, execute=engine.run)
    folder.remove_stale_partials()  # what a killed worker left; every worker has stopped
    if engine.error is not None:
        print(f"camlens {args.command}: the Ray run stopped early: {engine.error}; rerun with "
              "--resume to continue", file=sys.stderr)  # fmt: skip
        return max(status, 1)
    return status


def run_job(
    args: argparse.Namespace,
    folder: RunFolder,
    ready: Prepared,
    identity: dict[str, Any],
    process: Processor | None,
    build: Callable[..., Totals],
    show: Callable[[Totals], None] | None = None,
    *,
    execute: Callable[..., RunCounts] = run_plan,
) -> int:
    """Claim ``--out`` (see :func:`claim`), run the plan (``execute``: this process's
    runner, or a Ray engine's), build the outputs (also when interrupted)."""
    claim(args, folder, identity)
    done = folder.entries() if args.resume else {}
    plan = ready.plan
    outputs = partial(build, args.out, identity, missing=plan.missing, expected=plan.total_items)
    total = len(plan.items) + len(plan.unusable)
    with tqdm(total=total, desc=args.command, unit="image", disable=args.quiet) as progress:
        try:
            execute(
                plan,
                folder,
                process,
                read=lambda item: read_image(item.path, ready.size, max_pixels=args.max_pixels),
                done=done,
                progress=progress,
            )
        except KeyboardInterrupt:
            progress.close()
            totals = outputs(interrupted=True)
            print(
                f"camlens {args.command}: interrupted; {totals.done} image(s) done — the partial "
                f"report is {args.out / 'report.html'}; rerun with --resume to finish",
                file=sys.stderr,
            )
            return 130
    totals = outputs()
    if show is not None:
        show(totals)
    return finish(args.command, args.out, totals)


def claim(args: argparse.Namespace, folder: RunFolder, identity: dict[str, Any]) -> None:
    """Make ``--out`` this run's (``--resume`` / ``--overwrite`` as asked); idempotent."""
    if folder.recorded() == identity and folder.claimed:
        return
    folder.claim(identity, resume=args.resume, overwrite=args.overwrite)
    folder.remove_stale_partials()


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
