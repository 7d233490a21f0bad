"""The Ray cluster a distributed run uses: joined or started, and how its workers are laid out.

* **Import.** ``ray`` is optional (``pip install "camlens[ray]"``); :func:`check_installed`
  says so in one line before any work, and :func:`import_ray` imports it only when a run
  starts.
* **Joining or starting.** With an address (``auto``, ``ray://head:10001``, ``host:6379``)
  the run joins that cluster and leaves it running. Without one, a Ray that this process
  already initialised is reused (a notebook, the tests); otherwise a one-node cluster is
  started for the run and shut down after it. That local cluster is quiet (no dashboard, no
  usage report, no progress bars) and keeps everything it writes in a temporary folder of
  its own, removed at the end — never under the user's home: recent Rays write a token to
  ``~/.ray/auth_token`` for a new cluster, so the process gives it a token of its own
  through the environment instead (``RAY_AUTH_TOKEN``; the cluster keeps token
  authentication). These variables stay set for the rest of the process, since Ray reads
  them once, at import.
* **Layout.** :func:`layout` decides the worker actors: one per GPU where the cluster has
  GPUs (``--gpus-per-worker``), else a few CPU workers; their CPU requests add up to less
  than the cluster's CPUs, since Ray Data stalls when actors claim every CPU of a node and
  nothing is left for its own tasks (ray-project/ray#44687, seen on a 2-CPU machine).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

from camlens.errors import CamlensError
from camlens.slide.extras import require

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterOptions",
    "Layout",
    "check_installed",
    "import_ray",
    "layout",
]

#: Why the ``ray`` package is needed, for the install hint ("... need the ray package").
WHY = "--engine ray and camlens.distributed"


class ClusterError(CamlensError, RuntimeError):
    """The Ray cluster cannot run the job as asked (address, GPUs, worker count)."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where to run and how many workers (``--address``, ``--workers``,
    ``--gpus-per-worker``, ``--threads-per-worker``); ``None`` lets :func:`layout` decide
    from the cluster."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    #: torch threads per worker. CPU kernels split their sums by thread, so maps are the
    #: same bytes as a local run only with the same number of threads.
    threads_per_worker: int | None = None

    def check(self) -> None:
        """Numbers that cannot work, refused before anything starts."""
        for name, value in (
            ("workers", self.workers),
            ("threads-per-worker", self.threads_per_worker),
        ):
            if value is not None and value < 1:
                raise ClusterError(f"--{name} must be at least 1, got {value}")
        if self.gpus_per_worker is not None and not (
            math.isfinite(self.gpus_per_worker) and self.gpus_per_worker >= 0
        ):
            raise ClusterError(
                f"--gpus-per-worker must be 0 or more (e.g. 1, or 0.5 for two workers on a "
                f"GPU), got {self.gpus_per_worker}"
            )


@dataclass(frozen=True)
class Layout:
    """The worker actors of a run: how many, and what each asks of Ray."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    #: torch threads in each worker (its share of the cluster's CPUs)
    threads: int


def check_installed() -> None:
    """Raise the install hint now if ``ray`` is missing (it is not imported yet)."""
    if "ray" not in sys.modules and importlib.util.find_spec("ray") is None:
        require("ray", extra="ray", why=WHY)


def import_ray() -> ModuleType:
    """``ray``, with the install hint when it is missing."""
    return require("ray", extra="ray", why=WHY)


def layout(cpus: float, gpus: float, options: ClusterOptions) -> Layout:
    """The workers for a cluster of ``cpus`` CPUs and ``gpus`` GPUs (see the module
    docstring). Raises :class:`ClusterError` when the cluster has fewer GPUs than asked."""
    options.check()
    per_gpu = options.gpus_per_worker
    if per_gpu is None:
        per_gpu = 1.0 if gpus >= 1 else 0.0
    if per_gpu > 0 and gpus <= 0:
        raise ClusterError(
            f"--gpus-per-worker {per_gpu:g}, but the Ray cluster has no GPU; pass "
            "--gpus-per-worker 0 to explain on CPUs"
        )
    if options.workers is not None:
        workers = options.workers
    elif per_gpu > 0:
        workers = max(1, int(gpus // per_gpu))
    else:
        workers = max(1, min(int(cpus) - 1, int(cpus) // 2))
    if per_gpu > 0 and workers * per_gpu > gpus + 1e-9:
        raise ClusterError(
            f"{workers} worker(s) × {per_gpu:g} GPU is more than the cluster's {gpus:g} "
            "GPU(s); lower --workers or --gpus-per-worker"
        )
    reserve = min(1.0, cpus / 2)  # left to Ray Data's own tasks (ray#44687)
    share = math.floor((cpus - reserve) / workers * 100) / 100
    threads = options.threads_per_worker or max(1, int(cpus // workers))
    return Layout(workers, max(share, 0.01), per_gpu, threads)


class Cluster:
    """A context manager: Ray joined or started on entry, left or shut down on exit.

    ``resources()`` gives the cluster's CPUs and GPUs once entered.
    """

    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        self.ray: ModuleType | None = None
        self.started = False
        self._temp: str | None = None
        self._data_context: dict[str, Any] = {}

    def __enter__(self) -> Cluster:
        self.options.check()
        address = self.options.address
        if address is None and "ray" not in sys.modules:
            self._local_environment()  # before the import: Ray reads it once
        ray = import_ray()
        self.ray = ray
        try:
            if ray.is_initialized():
                pass  # this process's Ray (a notebook, the tests): used as it is
            elif address is None:
                self._temp = _temporary_folder()
                ray.init(
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    _temp_dir=self._temp,
                )
                self.started = True
            else:
                ray.init(address=address, logging_level=logging.WARNING)
                self.started = True
        except Exception as error:
            self._restore()
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            raise ClusterError(f"cannot start or join {where}: {_first_line(error)}") from error
        self._quiet_data()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._restore_data()
            if self.started and self.ray is not None:
                self.ray.shutdown()
        finally:
            self._restore()

    def resources(self) -> tuple[float, float]:
        """``(CPUs, GPUs)`` of the cluster (all nodes)."""
        assert self.ray is not None, "enter the Cluster first"
        available = self.ray.cluster_resources()
        return float(available.get("CPU", 1.0)), float(available.get("GPU", 0.0))

    # -- a quiet local cluster ---------------------------------------------------------------
    def _local_environment(self) -> None:
        """Ray's settings for a local cluster, through the environment (left set: Ray reads
        them once): no usage report, and a token of this process's instead of one written
        to the home."""
        values = {"RAY_USAGE_STATS_ENABLED": "0"}
        if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
            values |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(24).hex()}
        for name, value in values.items():
            os.environ.setdefault(name, value)

    def _quiet_data(self) -> None:
        """No Ray Data progress bars or start-up lines (the run has its own progress bar)."""
        data = importlib.import_module("ray.data")
        with warnings.catch_warnings():  # Ray's own deprecation notices, nothing to act on
            warnings.simplefilter("ignore", DeprecationWarning)
            context = data.DataContext.get_current()
        for name, value in (("enable_progress_bars", False), ("print_on_execution_start", False)):
            if hasattr(context, name):
                self._data_context[name] = getattr(context, name)
                setattr(context, name, value)
        self._data_context["_context"] = context
        logger = logging.getLogger("ray.data")
        self._data_context["_level"] = logger.level
        logger.setLevel(logging.ERROR)

    def _restore_data(self) -> None:
        saved = dict(self._data_context)
        self._data_context.clear()
        context = saved.pop("_context", None)
        level = saved.pop("_level", None)
        if context is not None:
            for name, value in saved.items():
                setattr(context, name, value)
        if level is not None:
            logging.getLogger("ray.data").setLevel(level)

    def _restore(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None


#: Ray puts sockets at ``<temp>/session_<date>_<pid>/sockets/plasma_store`` (about 64 more
#: characters), and a Unix socket path is at most 107 bytes.
_SOCKET_ROOM = 107 - 64


def _temporary_folder() -> str:
    """A new folder for the local cluster's files: in the system's temp folder, or in /tmp
    when that path is too long for Ray's sockets."""
    folder = tempfile.mkdtemp(prefix="camlens-ray-")
    if len(folder.encode()) > _SOCKET_ROOM and os.path.isdir("/tmp"):
        os.rmdir(folder)
        folder = tempfile.mkdtemp(prefix="camlens-ray-", dir="/tmp")
    return folder


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
