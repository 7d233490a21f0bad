"""``camlens.distributed.explain_dataset``: ``camlens explain --engine ray`` from Python.

The same job as the command — the plan, the run folder and its rules (lock, ``run.json``,
``--resume``, ``--overwrite``), the workers, ``summary.json`` and ``report.html`` — with the
arguments as Python values: methods and layers as lists, options nested by method, classes
as ids. The source is a folder, a file or glob, a list of them, or a Ray Dataset whose
``path`` column names the image files (``ray.data.read_images(..., include_paths=True)``
or ``ray.data.from_items([{"path": ...}])``); the files must be readable from the driver,
which reads their headers to plan the batches, and from every worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from camlens.distributed.cluster import Cluster, ClusterError, ClusterOptions, check_installed
from camlens.distributed.engine import RayEngine
from camlens.distributed.worker import WorkerSpec, portable_model_spec
from camlens.engine import plan_methods
from camlens.errors import CamlensError
from camlens.jobs.explain import ExplainSettings
from camlens.jobs.folder import RunFolder, Totals
from camlens.jobs.padding import model_multiple, pad_batch, padding_for, parse_pad
from camlens.jobs.plan import Plan, make_plan
from camlens.jobs.reader import DEFAULT_MAX_PIXELS, probe_size
from camlens.jobs.summary import build_outputs
from camlens.layers import resolve_layers
from camlens.loading import load_model, load_weights
from camlens.methods import get_method
from camlens.outputs import as_score_tensor, is_dense
from camlens.steps import model_dtype

__all__ = ["explain_dataset"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def explain_dataset(
    source: Any,
    *,
    out: str | os.PathLike[str],
    model: str,
    layers: str | Sequence[str],
    methods: str | Sequence[str] = ("hirescam", "gradcam"),
    weights: str | os.PathLike[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    task: str = "auto",
    classes: Any = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    size: tuple[int, int] | None = None,
    batch_size: int = 4,
    pad: str | int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resume: bool = False,
    overwrite: bool = False,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    threads_per_worker: int | None = None,
    progress: bool = False,
) -> Totals:
    """Explain the images of ``source`` on a Ray cluster into ``out``; what was done.

    Args:
        source: a folder, file or glob; a list of them; or a ``ray.data.Dataset`` with a
            ``path`` column.
        out: the output folder (shared by the driver and every worker: a local disk for a
            one-node cluster, a shared file system for several nodes).
        model: the factory, ``package.module:function`` or ``path/to/file.py:function``.
        layers: target layer name(s), or ``"auto"``.
        methods: method names (``camlens methods``), a list or comma-separated.
        options: method options nested by method, e.g. ``{"scorecam": {"batch_size": 32}}``.
        task: ``"seg"``, ``"cls"`` or ``"auto"`` (read from the model's output).
        classes: segmenter: ``"present"`` (default), ``"all"`` or class ids; classifier:
            ``None`` (the top class) or class ids.
        pad: ``"auto"``, a multiple, or ``None``: pad sizes the model cannot take and crop
            the maps back.
        resume, overwrite: continue the run in ``out``, or clear it first.
        address: a Ray cluster (``"auto"``, ``"ray://head:10001"``); ``None`` uses this
            process's Ray, or starts a local one for the call.
        workers, gpus_per_worker, threads_per_worker: the actor pool; by default one
            worker per GPU, or a few CPU workers, each with its share of the CPUs as torch
            threads (maps are byte-identical to a local run with as many threads).
        progress: show a progress bar.

    Returns:
        The manifest's totals: images done, inputs skipped with their reasons, images left.

    Raises:
        CamlensError: a setting that cannot work (before any image is decoded), or the run
            stopped because a worker kept failing (the done images are kept: ``resume=True``).
    """
    check_installed()
    if resume and overwrite:
        raise CamlensError("resume continues a run and overwrite clears it: pass one")
    if batch_size < 1:
        raise CamlensError(f"batch_size must be at least 1, got {batch_size}")
    options_checked = ClusterOptions(address, workers, gpus_per_worker, threads_per_worker)
    options_checked.check()
    names = [methods] if isinstance(methods, str) else list(methods)
    method_names = [get_method(n.strip()).name for name in names for n in name.split(",") if n]
    method_options = {method: dict(values) for method, values in (options or {}).items()}
    plan_methods(method_names, method_options)
    layer_names = [layers] if isinstance(layers, str) else list(layers)
    multiple_spec = parse_pad("none" if pad is None else str(pad))
    out = Path(out)
    folder = RunFolder(out)
    folder.check_writable()

    network = load_model(model)
    if weights is not None:
        load_weights(network, weights)
    network = network.eval()
    if "auto" not in layer_names:
        resolve_layers(network, layer_names if len(layer_names) > 1 else layer_names[0])
    plan = make_plan(
        _paths(source),
        batch_size=batch_size,
        probe=partial(probe_size, max_pixels=max_pixels),
        size=tuple(size) if size is not None else None,
    )
    if plan.total_items == 0:
        raise CamlensError(f"no image to use: {plan.missing}")
    multiple = model_multiple(network) if multiple_spec == "auto" else multiple_spec
    found_task, count = _probe_task(network, plan, multiple, task)
    settings = ExplainSettings(
        model=model,
        weights=str(weights) if weights is not None else None,
        layers=layer_names,
        methods=method_names,
        options=method_options,
        task=found_task,
        classes=_classes(classes, found_task, count),
        class_names=list(class_names) if class_names is not None else None,
        mean=tuple(mean),
        std=tuple(std),
        size=tuple(size) if size is not None else None,
        batch_size=batch_size,
        shards=1,
        pad=multiple_spec,
        multiple=multiple,
    )
    identity = settings.identity() | {"inputs": plan.total_items}
    spec = WorkerSpec(
        settings=settings,
        out=str(out.resolve()),
        model=portable_model_spec(model),
        weights=str(Path(weights).resolve()) if weights is not None else None,
        size=settings.size,
        max_pixels=max_pixels,
    )
    outputs = partial(build_outputs, out, identity, missing=plan.missing,
                      expected=plan.total_items)  # fmt: skip
    with folder:
        folder.claim(identity, resume=resume, overwrite=overwrite)
        folder.remove_stale_partials()
        done = folder.entries() if resume else {}
        total = len(plan.items) + len(plan.unusable)
        with Cluster(options_checked) as cluster, tqdm(total=total, disable=not progress) as bar:
            engine = RayEngine(cluster, spec, options_checked)
            engine.plan_workers()
            try:
                engine.run(plan, folder, done=done, progress=bar)
            except KeyboardInterrupt:
                outputs(interrupted=True)
                raise
        folder.remove_stale_partials()
        totals = outputs()
    if engine.error is not None:
        raise ClusterError(
            f"the Ray run stopped with {totals.remaining} image(s) to do: {engine.error}; "
            "resume=True continues it"
        )
    return totals


def _paths(source: Any) -> list[str]:
    """The files, folders or globs that ``source`` names."""
    if isinstance(source, str | os.PathLike):
        return [os.fspath(source)]
    if hasattr(source, "select_columns") and hasattr(source, "schema"):  # a Ray Dataset
        columns = list(getattr(source.schema(), "names", []) or [])
        if "path" not in columns:
            raise CamlensError(
                f"the Ray Dataset has no 'path' column (columns: {', '.join(columns)}); read "
                "it with include_paths=True, or build it from [{'path': ...}] rows"
            )
        return [str(row["path"]) for row in source.select_columns(["path"]).iter_rows()]
    return [os.fspath(entry) for entry in source]


def _probe_task(
    model: torch.nn.Module, plan: Plan, multiple: int | None, requested: str
) -> tuple[str, int]:
    """``(task, classes)`` from one forward pass of zeros at the plan's most common size."""
    if requested not in ("auto", "seg", "cls"):
        raise CamlensError(f"task must be 'auto', 'seg' or 'cls', got {requested!r}")
    if not plan.sizes:
        return ("seg" if requested == "seg" else "cls"), 0
    height, width = max(plan.sizes, key=lambda found: plan.sizes[found])
    zeros = torch.zeros(1, 3, height, width, dtype=model_dtype(model))
    if multiple is not None:
        zeros = pad_batch(zeros, padding_for(height, width, multiple))
    with torch.no_grad():
        scores = as_score_tensor(model(zeros))
    dense = is_dense(scores)
    task = requested if requested != "auto" else ("seg" if dense else "cls")
    if task == "seg" and not dense:
        raise CamlensError(f"task 'seg', but the model returns {tuple(scores.shape)}")
    return task, int(scores.shape[1])


def _classes(classes: Any, task: str, count: int) -> Any:
    """``classes`` checked against the model's ``count`` classes."""
    if task == "seg" and classes in (None, "present", "all"):
        return classes or "present"
    if task == "cls" and classes in (None, "top"):
        return None
    ids = [int(value) for value in ([classes] if isinstance(classes, int) else classes)]
    if not ids or len(set(ids)) != len(ids) or not all(0 <= i < max(count, 1) for i in ids):
        raise CamlensError(f"classes {ids}: give distinct ids between 0 and {count - 1}")
    return ids
