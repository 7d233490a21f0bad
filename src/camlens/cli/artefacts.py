"""The files a command writes besides its report: raw maps, ``summary.json``, metrics.

Every file is written once, from the data in memory, and atomically: to a temporary name in
the same folder, then renamed over its final name, so a killed run never leaves a truncated
file under a final name. (``report.html`` and its PNG overlays are written by
:mod:`camlens.report`.)

* ``raw/<image>.npz`` (explain): the maps of every method and layer, and the scores.
* ``summary.json`` (explain): the run's settings and one entry per explained image.
* ``metrics.json`` and ``metrics.csv`` (evaluate): the scores, their means, timings and the
  sanity check.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from camlens.explanation import Explanation
    from camlens.segmentation import SegmentationExplanation

__all__ = [
    "atomic_open",
    "classification_arrays",
    "classification_entry",
    "metrics_document",
    "segmentation_arrays",
    "segmentation_entry",
    "write_json",
    "write_metrics",
    "write_npz",
]


# -- atomic writing ---------------------------------------------------------------------------
@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a new temporary file next to ``path`` for writing (``mode`` ``"w"`` or ``"wb"``,
    ``kwargs`` as for :func:`open`); when the block ends without error, the file is flushed
    to disk and renamed to ``path``, replacing any older file. On error it is removed and
    ``path`` is left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}")
    partial = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        with open(partial, mode.replace("w", "x"), **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any, **dumps: Any) -> None:
    """``data`` as JSON (``json.dumps`` options in ``dumps``), UTF-8, no trailing newline."""
    text = json.dumps(data, **dumps)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``arrays`` as one compressed ``.npz`` archive at ``path``."""
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# -- explain: raw maps and summary entries --------------------------------------------------
def segmentation_arrays(
    result: SegmentationExplanation, index: int, methods: Sequence[str]
) -> dict[str, np.ndarray]:
    """The ``.npz`` content of image ``index`` of a segmentation explanation: class ids,
    scores, masks, predicted labels, and per method the maps of each layer and the fused maps."""
    arrays = {
        "classes": np.asarray(result.classes),
        "scores": result.scores[index].cpu().numpy(),
        "masks": (result.masks[index] > 0).cpu().numpy(),
        "predicted": result.predicted[index].cpu().numpy(),
    }
    for method in methods:
        for number, maps in enumerate(result.layer_maps[method]):
            arrays[f"{method}_layer{number}"] = maps[index].cpu().numpy()
        arrays[f"{method}_maps"] = result[method][index].cpu().numpy()
    return arrays


def classification_arrays(
    explanations: Mapping[str, Explanation], index: int, category: int
) -> dict[str, np.ndarray]:
    """The ``.npz`` content of image ``index`` explained for class ``category`` by each method:
    the class, the first method's score, and per method each layer's maps and the fused maps."""
    first = next(iter(explanations.values()))
    arrays = {"class": np.asarray(category), "score": first.scores[index].cpu().numpy()}
    for method, explanation in explanations.items():
        for number, maps in enumerate(explanation.layer_maps):
            arrays[f"{method}_layer{number}"] = maps[index].cpu().numpy()
        arrays[f"{method}_maps"] = explanation.maps[index].cpu().numpy()
    return arrays


def segmentation_entry(
    path: Path, image: np.ndarray, raw: str, records: list[dict[str, Any]], index: int
) -> dict[str, Any]:
    """The ``summary.json`` entry of image ``index`` of a batch: its file, size, raw maps and
    its per-class records (``records`` holds the whole batch's)."""
    return {
        "file": str(path),
        "size": list(image.shape[:2]),
        "raw": raw,
        "records": [
            {k: v for k, v in record.items() if k != "image"}
            for record in records
            if record["image"] == index
        ],
    }


def classification_entry(
    path: Path,
    image: np.ndarray,
    raw: str,
    category: int,
    labels: list[str] | None,
    score: float,
) -> dict[str, Any]:
    """The ``summary.json`` entry of one image explained for class ``category``."""
    return {
        "file": str(path),
        "size": list(image.shape[:2]),
        "raw": raw,
        "class_id": category,
        "class_name": labels[category] if labels and category < len(labels) else None,
        "score": score,
    }


# -- evaluate: metrics ------------------------------------------------------------------------
def metrics_document(
    *,
    model: str,
    layers: list[str],
    task: str,
    methods: list[str],
    means: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    seconds: dict[str, float],
    failed: list[tuple[str, str]],
    sanity: dict[str, dict[str, Any]] | None,
) -> dict[str, Any]:
    """The content of ``metrics.json``; ``"sanity"`` only when the check ran."""
    document: dict[str, Any] = {
        "model": model,
        "layers": layers,
        "task": task,
        "methods": methods,
        "means": means,
        "rows": rows,
        "seconds": seconds,
        "failed": [{"input": name, "error": reason} for name, reason in failed],
    }
    if sanity is not None:
        document["sanity"] = sanity
    return document


def write_metrics(
    out: Path, document: dict[str, Any], rows: list[dict[str, Any]], metrics: Sequence[str]
) -> None:
    """``metrics.json`` (``document``) and ``metrics.csv`` (one line per row of ``rows``:
    file, image, method, class and the ``metrics``)."""
    write_json(out / "metrics.json", document, indent=2, default=float)
    fields = ["file", "image", "method", "class_id", "class_name", *metrics]
    _write_csv(out / "metrics.csv", rows, fields)
