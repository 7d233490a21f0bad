"""Run a plan: batches decoded ahead in reader threads, explained, written, recorded.

The loop every job shares (``camlens explain`` today; evaluate, slides and the Ray adapter
build on it):

* batches whose items are all in the manifest are skipped (``--resume``); a batch that is
  partly done runs whole — the same images through the model together as in an uninterrupted
  run — and only its missing items are written;
* the next batches are decoded by :func:`camlens.jobs.reader.stream` while the model works
  (bounded: memory does not grow with the number of images);
* an image that cannot be read is recorded as skipped with its reason; a batch the model
  cannot run is retried image by image, so that only the image at fault is skipped, with the
  model's error and a hint;
* every finished item gets its manifest line only after its files are in place, so the
  manifest is the truth about what is complete.

``KeyboardInterrupt`` is not caught: the caller builds the partial report and exits with 130.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from camlens.errors import CamlensError, InputShapeError, ModelOutputError, NonFiniteError
from camlens.jobs.folder import RunFolder
from camlens.jobs.plan import Batch, Item, Plan
from camlens.jobs.reader import stream

__all__ = [
    "Processor",
    "RunCounts",
    "failure_reason",
    "pending_batches",
    "record_entry",
    "run_plan",
    "skipped_entry",
]

#: ``(items, images) -> one manifest entry per item`` (files already written). Raises when
#: the model cannot run the batch.
Processor = Callable[[Sequence[Item], Sequence[np.ndarray]], list[dict[str, Any]]]


@dataclass
class RunCounts:
    """How many items this run finished, skipped, and found already done."""

    done: int = 0
    skipped: int = 0
    already: int = 0


def skipped_entry(item: Item, reason: str) -> dict[str, Any]:
    """The manifest entry of an item that was not explained."""
    return {"key": item.key, "index": item.index, "source": item.source, "status": "skipped",
            "reason": reason}  # fmt: skip


def failure_reason(error: BaseException) -> str:
    """What went wrong running the model on an image, and what to try."""
    text = f"{type(error).__name__}: {error}".strip()
    lowered = text.lower()
    if isinstance(error, NonFiniteError):
        hint = "the image or the model produced NaN/inf"
    elif isinstance(error, torch.cuda.OutOfMemoryError | MemoryError):
        hint = "out of memory: lower --batch-size or --size"
    elif any(word in lowered for word in ("divisible", "size", "shape", "dimension", "kernel")):
        hint = "the model cannot take this image size: try --pad auto or --size H W"
    else:
        hint = "the model failed on this image"
    return f"{hint} ({text.splitlines()[0][:300]})"


def pending_batches(
    plan: Plan,
    folder: RunFolder,
    done: Mapping[str, Mapping[str, Any]],
    progress: Any,
    counts: RunCounts,
) -> tuple[set[str], list[Batch]]:
    """What is left to do: records the plan's unusable inputs not yet in the manifest,
    counts the items already done (and shows them on ``progress``), and returns the keys
    already done and the batches with at least one item missing (every engine's start)."""
    finished = {key for key, entry in done.items() if entry.get("status") == "done"}
    for item, reason in plan.unusable:
        if item.key not in finished:
            folder.record(skipped_entry(item, reason))
            counts.skipped += 1
        progress.update(1)
    todo = []
    for batch in plan.batches:
        missing = sum(item.key not in finished for item in batch.items)
        counts.already += len(batch.items) - missing
        progress.update(len(batch.items) - missing)
        if missing:
            todo.append(batch)
    return finished, todo


def run_plan(
    plan: Plan,
    folder: RunFolder,
    process: Processor,
    *,
    read: Callable[[Item], np.ndarray],
    done: Mapping[str, Mapping[str, Any]],
    progress: Any,
    workers: int = 2,
    prefetch: int = 2,
) -> RunCounts:
    """Explain the plan's batches that are not done; see the module docstring."""
    counts = RunCounts()
    finished, todo = pending_batches(plan, folder, done, progress, counts)

    def read_batch(batch: Batch) -> list[np.ndarray | BaseException]:
        images: list[np.ndarray | BaseException] = []
        for item in batch.items:
            try:
                images.append(read(item))
            except CamlensError as error:
                images.append(error)
        return images

    for batch, result in stream(todo, read_batch, workers=workers, prefetch=prefetch):
        images = result if not isinstance(result, BaseException) else [result] * len(batch.items)
        readable = [(item, image) for item, image in zip(batch.items, images, strict=True)
                    if not isinstance(image, BaseException)]  # fmt: skip
        for item, image in zip(batch.items, images, strict=True):
            if isinstance(image, BaseException) and item.key not in finished:
                folder.record(skipped_entry(item, str(image)))
                counts.skipped += 1
                progress.update(1)
        for entry in _explain(readable, process):
            record_entry(entry, folder, finished, counts, progress)
    return counts


def record_entry(
    entry: Mapping[str, Any],
    folder: RunFolder,
    finished: set[str],
    counts: RunCounts,
    progress: Any,
) -> None:
    """Record a processed item's entry (its files are in place) unless an earlier run
    finished it, and count it (every engine's end of an item)."""
    if entry["key"] in finished:
        return
    folder.record(entry)
    if entry["status"] == "done":
        counts.done += 1
    else:
        counts.skipped += 1
    progress.update(1)


def _explain(readable: list[tuple[Item, np.ndarray]], process: Processor) -> list[dict[str, Any]]:
    """The batch's entries; if the model fails on the batch, each image alone."""
    if not readable:
        return []
    items = [item for item, _ in readable]
    try:
        return process(items, [image for _, image in readable])
    except (KeyboardInterrupt, CamlensError) as error:
        if isinstance(error, KeyboardInterrupt) or not _per_item(error):
            raise
        failure: BaseException = error
    except Exception as error:  # the model could not run this batch
        failure = error
    if len(readable) == 1:
        return [skipped_entry(items[0], failure_reason(failure))]
    entries = []
    for item, image in readable:
        entries.extend(_explain([(item, image)], process))
    return entries


def _per_item(error: CamlensError) -> bool:
    """Whether a camlens error is about one image's data (skip it) rather than the set-up."""
    return isinstance(error, NonFiniteError | InputShapeError | ModelOutputError)
