"""A Ray worker of a distributed explain run: the model built once, then the plan's batches.

:class:`ExplainWorker` is the callable class that Ray Data runs as a pool of actors
(``map_batches``). Each actor builds the model from the same ``--model`` factory and
``--weights`` as the driver, once, and explains the batches it is given with the code of the
local run: :func:`camlens.jobs.runner.run_plan` on a one-batch plan (images read and checked,
a failing batch retried image by image so that only the image at fault is skipped) with
:class:`camlens.jobs.explain.ExplainBatch` as the processor, which writes each image's files
atomically into the shared output folder. The manifest entries are not written by the
worker: they go back to the driver, which records them (one writer per manifest), so an
entry still exists only once its files are in place.

A batch travels as a JSON row (:func:`batch_row`) holding its items, its size and which of
its items an earlier run finished, so a partly done batch runs whole — the same images
through the model together — and only its missing items are reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camlens.jobs.explain import ExplainBatch, ExplainSettings
from camlens.jobs.plan import Batch, Item, Plan
from camlens.jobs.reader import DEFAULT_MAX_PIXELS, read_image
from camlens.jobs.runner import Processor, run_plan
from camlens.loading import load_model, load_weights

__all__ = ["ExplainWorker", "WorkerSpec", "batch_row", "portable_model_spec", "read_row"]

#: The column of the rows given to and returned by the workers (one JSON text each).
BATCH_COLUMN = "batch"
ENTRY_COLUMN = "entry"


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker needs to build its processor (small, sent to each actor once).

    Another kind of job (a slide's tiles: :class:`camlens.slide.distributed.SlideWorkerSpec`)
    gives a dataclass with the same fields ``model``, ``weights``, ``threads``, ``gpu`` and
    the two methods :meth:`processor` and :meth:`reader`.
    """

    settings: ExplainSettings
    out: str  # absolute: workers may run in another directory
    model: str  # the --model factory, a file path in it made absolute
    weights: str | None
    size: tuple[int, int] | None
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int = 1
    gpu: bool = False

    def processor(self, model: torch.nn.Module, device: torch.device) -> Processor:
        """The local run's processor, in the worker (the model built there)."""
        return ExplainBatch(model, self.settings, Path(self.out), device)

    def reader(self) -> Callable[[Item], np.ndarray]:
        """How the worker reads an item (an image file, as the local run does)."""
        return lambda item: read_image(item.path, self.size, max_pixels=self.max_pixels)


def portable_model_spec(spec: str) -> str:
    """``--model`` as a worker can load it from any directory: ``path/to/file.py:factory``
    gets an absolute path; ``package.module:factory`` is unchanged (the package must be
    installed on every node)."""
    module, sep, factory = spec.rpartition(":")
    if sep and (module.endswith(".py") or "/" in module):
        return f"{Path(module).resolve()}:{factory}"
    return spec


def batch_row(batch: Batch, finished: set[str]) -> dict[str, str]:
    """The row that carries ``batch`` to a worker (paths absolute, done items named)."""
    items = [[item.index, str(Path(item.path).absolute()), item.key, item.source]
             for item in batch.items]  # fmt: skip
    done = sorted(item.key for item in batch.items if item.key in finished)
    return {BATCH_COLUMN: json.dumps({"items": items, "size": list(batch.size), "done": done})}


def read_row(text: str) -> tuple[Batch, list[str], dict[str, str]]:
    """A row back into ``(batch, keys already done, source as found per key)``."""
    data = json.loads(text)
    items = tuple(Item(index, Path(path), key) for index, path, key, _ in data["items"])
    sources = {key: source for _, _, key, source in data["items"]}
    return Batch(items, (int(data["size"][0]), int(data["size"][1]))), data["done"], sources


class _Entries:
    """Stands in for the run folder inside a worker: keeps the entries for the driver."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, entry: Mapping[str, Any]) -> None:
        self.entries.append(dict(entry))


class _NoProgress:
    def update(self, count: int = 1) -> None:
        """The driver shows the progress."""


class ExplainWorker:
    """A Ray Data actor: ``rows`` of batches in, their manifest entries out (JSON texts)."""

    def __init__(self, spec: WorkerSpec) -> None:
        torch.set_num_threads(max(1, min(spec.threads, os.cpu_count() or 1)))
        device = torch.device("cuda") if spec.gpu else torch.device("cpu")
        model = load_model(spec.model)
        if spec.weights is not None:
            load_weights(model, spec.weights)
        self.spec = spec
        self.process = spec.processor(model.to(device).eval(), device)
        self.read = spec.reader()

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts: list[str] = []
        for text in rows[BATCH_COLUMN]:
            batch, done, sources = read_row(str(text))
            for entry in self.explain(batch, done):
                entry["source"] = sources.get(entry["key"], entry.get("source"))
                texts.append(json.dumps(entry, ensure_ascii=False, allow_nan=False))
        return {ENTRY_COLUMN: np.array(texts, dtype=object)}

    def explain(self, batch: Batch, done: list[str]) -> list[dict[str, Any]]:
        """The entries of ``batch``'s items not in ``done`` (their files written)."""
        entries = _Entries()
        run_plan(
            Plan([batch]),
            entries,  # type: ignore[arg-type]  # only record() is used
            self.process,
            read=self.read,
            done={key: {"status": "done"} for key in done},
            progress=_NoProgress(),
            workers=1,
            prefetch=1,
        )
        return entries.entries
