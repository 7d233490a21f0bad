"""Explaining a cohort on a Ray cluster: the optional Ray Data adapter of camlens's jobs.

``camlens explain ... --engine ray`` and :func:`explain_dataset` run the local job's plan on
a pool of Ray actors (:mod:`~camlens.distributed.engine`): every worker builds the model once
and explains whole batches of the plan with the local run's code
(:mod:`~camlens.distributed.worker`), writing into the shared output folder; the driver keeps
the manifest and builds ``summary.json`` and ``report.html`` from it. Ray is joined or
started by :mod:`~camlens.distributed.cluster`. ``ray`` is imported only when a run starts
(``pip install "camlens[ray]"``); the core of camlens never imports it.
"""

from __future__ import annotations

from camlens.distributed.api import explain_dataset
from camlens.distributed.cluster import Cluster, ClusterError, ClusterOptions, check_installed
from camlens.distributed.engine import RayEngine
from camlens.distributed.worker import WorkerSpec

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterOptions",
    "RayEngine",
    "WorkerSpec",
    "check_installed",
    "explain_dataset",
]
