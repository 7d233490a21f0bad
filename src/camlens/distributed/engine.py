"""The plan's batches explained by a pool of Ray actors; the manifest kept by the driver.

:class:`RayEngine` takes the place of :func:`camlens.jobs.runner.run_plan` (same call, same
counts), so the set-up, ``--resume``, the interrupted run's partial report and the exit
codes are those of the local run:

* **Batches, not images, are distributed.** The plan (:func:`camlens.jobs.plan.make_plan`)
  is made once, on the driver; each batch that is not wholly done becomes one row of a
  Ray Dataset, and a worker explains it whole (:mod:`camlens.distributed.worker`). The same
  images go through the model together as in the local run, so the raw maps are the same
  bytes.
* **One writer per manifest.** Workers write the images' files; their manifest entries come
  back to the driver, which appends them to this run's manifest as they arrive. An entry is
  recorded only after its files are in place, as in the local run; the files of a batch
  whose entries never arrived (an interrupted run) are simply written again by the resumed
  run.
* **Crashes.** An actor that dies (killed, out of memory) is restarted by Ray and its
  unfinished batches are given again: Ray Data's actor pools restart actors and retry their
  tasks by default (this module relies on that and does not set ``max_restarts``, which
  recent Rays deprecate as a ``map_batches`` argument). Files a dead worker left half
  written are ``.partial`` names, removed at the end. If Ray gives up (a worker that cannot
  be built), the run stops with the done images recorded and the reason in
  :attr:`RayEngine.error`; ``--resume`` continues from there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from camlens.distributed.cluster import Cluster, ClusterOptions, Layout, layout
from camlens.distributed.worker import (
    ENTRY_COLUMN,
    ExplainWorker,
    WorkerSpec,
    batch_row,
)
from camlens.jobs.folder import RunFolder
from camlens.jobs.plan import Plan
from camlens.jobs.runner import RunCounts, pending_batches, record_entry

__all__ = ["RayEngine"]


class RayEngine:
    """Runs a plan on a Ray cluster; use inside the :class:`Cluster` context it is given.

    ``engine.run`` has the runner's call (``plan, folder, process, *, read, done,
    progress``); ``process`` and ``read`` are the local run's and are not used: each worker
    builds its own from ``spec``.
    """

    def __init__(
        self,
        cluster: Cluster,
        spec: WorkerSpec,
        options: ClusterOptions,
    ) -> None:
        self.cluster = cluster
        self.spec = spec
        self.options = options
        #: why the run stopped before the end (a worker that kept failing), if it did
        self.error: str | None = None
        self.layout: Layout | None = None

    def plan_workers(self) -> Layout:
        """The workers for this cluster (checked: GPUs, numbers); see :func:`layout`."""
        if self.layout is None:
            cpus, gpus = self.cluster.resources()
            self.layout = layout(cpus, gpus, self.options)
        return self.layout

    def run(
        self,
        plan: Plan,
        folder: RunFolder,
        process: Any = None,
        *,
        read: Any = None,
        done: Mapping[str, Mapping[str, Any]],
        progress: Any,
    ) -> RunCounts:
        """Explain the batches of ``plan`` not done yet and record their entries."""
        counts = RunCounts()
        finished, todo = pending_batches(plan, folder, done, progress, counts)
        rows = [batch_row(batch, finished) for batch in todo]
        if not rows:
            return counts
        try:
            for row in self._dataset(rows).iter_rows():
                record_entry(json.loads(row[ENTRY_COLUMN]), folder, finished, counts, progress)
        except KeyboardInterrupt:
            raise
        except Exception as error:  # Ray gave up: a worker kept dying, or cannot start
            self.error = _reason(error)
        return counts

    def _dataset(self, rows: list[dict[str, str]]) -> Any:
        """The rows as a Ray Dataset of one block per batch, mapped by the actor pool."""
        data = self.cluster.ray.data  # type: ignore[union-attr]
        workers = self.plan_workers()
        dataset = data.from_items(rows, override_num_blocks=len(rows))
        spec = self.spec
        if spec.gpu != (workers.gpus_per_worker > 0) or spec.threads != workers.threads:
            spec = replace(spec, gpu=workers.gpus_per_worker > 0, threads=workers.threads)
        return dataset.map_batches(
            ExplainWorker,
            fn_constructor_kwargs={"spec": spec},
            batch_size=1,
            batch_format="numpy",
            compute=data.ActorPoolStrategy(size=min(workers.workers, len(rows))),
            num_cpus=workers.cpus_per_worker,
            num_gpus=workers.gpus_per_worker or None,
        )


def _reason(error: BaseException) -> str:
    """One line about why Ray stopped: the workers' own error where Ray kept it."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Traceback", "File ", "^"))]
    text = useful[-1] if useful else type(error).__name__
    return f"{type(error).__name__}: {text[:300]}"
