"""The machinery that ScoreCAM and AblationCAM share: batched re-runs of the borrowed model.

A perturbation method explains a target by re-running the model on perturbed copies of one
image (masked inputs, ablated activations) and scoring every copy against the image's ``K``
targets. This module holds everything about that which is not the perturbation itself:

* :data:`RERUN_OPTIONS` — the options every perturbation method declares (``batch_size``,
  ``memory_budget_mb``, ``progress``) beside its own; the registry checks them.
* :func:`probe_footprint` and :func:`chunk_size` — how many perturbed copies go into one
  forward pass. Without an explicit ``batch_size``, one forward pass at batch 1 records
  the largest input + output of any leaf module (the per-copy working memory of a forward
  pass); a copy is charged twice that plus the perturbed tensors the method builds for it,
  and a chunk is as many copies as fit in ``memory_budget_mb`` (at least one). The budget
  is an estimate of the extra memory of the re-runs, not a hard limit; pass ``batch_size``
  to choose the chunk size yourself.
* :func:`reruns` — borrows the model (eval mode; hooks removed and train/eval flags restored
  on every exit path), opens the optional progress bar and yields a :class:`Rerun` whose
  :meth:`Rerun.scores` runs one chunk under ``torch.inference_mode`` and scores it.
* :func:`select_channels` and :func:`weighted_maps` — the channel bookkeeping both methods
  need: the channels with the largest mean absolute activation, and ``Σ_c w_c A_c`` for
  ``(B, K, C)`` weights.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from tqdm.auto import tqdm

from camlens.capture import borrowed
from camlens.errors import (
    CamlensError,
    ModelOutputError,
    SlowRunWarning,
    TargetError,
    caller_stacklevel,
)
from camlens.methods.reduction import first_principal_component
from camlens.methods.registry import Option, RunContext
from camlens.targets import target_score

__all__ = [
    "DEFAULT_MEMORY_BUDGET_MB",
    "RERUN_OPTIONS",
    "WORKING_MEMORY_FACTOR",
    "Footprint",
    "ForwardFailed",
    "Rerun",
    "chunk_size",
    "probe_footprint",
    "ratio_count",
    "reruns",
    "score_outputs",
    "select_channels",
    "weighted_maps",
]

#: Default extra memory (MiB) that the perturbed copies of one chunk may take.
DEFAULT_MEMORY_BUDGET_MB = 512.0

#: A copy's working memory in a forward pass is estimated as this many times the largest
#: input + output of any one leaf module (tensors that skip connections keep alive, the
#: next module's output, ...).
WORKING_MEMORY_FACTOR = 2

#: The options every method that re-runs the model takes, declared once.
RERUN_OPTIONS: tuple[Option, ...] = (
    Option(
        name="batch_size",
        kind=int,
        default=None,
        nullable=True,
        minimum=1,
        help="perturbed copies per forward pass; None sizes chunks from memory_budget_mb",
    ),
    Option(
        name="memory_budget_mb",
        kind=float,
        default=DEFAULT_MEMORY_BUDGET_MB,
        minimum=0,
        exclusive_minimum=True,
        help="approximate extra memory (MiB) one chunk of perturbed copies may take",
    ),
    Option(name="progress", kind=bool, default=False, help="show a progress bar"),
)


@dataclass(frozen=True)
class Footprint:
    """Per-copy working memory of a forward pass, in bytes, measured at batch 1.

    Attributes:
        whole: the largest input + output of any leaf module.
        after: per target layer, the same over the leaf modules that finish after it (what
            runs again when only the part after the layer is re-run).
    """

    whole: int
    after: tuple[int, ...]


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, list | tuple):
        return sum(_nbytes(item) for item in value)
    return 0


def probe_footprint(
    model: nn.Module, sample: torch.Tensor, layers: Sequence[nn.Module] = ()
) -> Footprint:
    """One forward pass of ``sample`` (batch 1) recording each leaf module's input + output
    size; the model is borrowed and handed back unchanged."""
    sizes: list[int] = []
    finished: dict[int, int] = {}

    def leaf(_module: nn.Module, args: object, output: object) -> None:
        sizes.append(_nbytes(args) + _nbytes(output))

    def target(index: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: object, _output: object) -> None:
            finished.setdefault(index, len(sizes))

        return hook

    with borrowed(model) as handles, torch.inference_mode():
        for module in model.modules():
            if next(module.children(), None) is None:
                handles.append(module.register_forward_hook(leaf))
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(target(index)))
        model(sample)
    return Footprint(
        whole=max(sizes, default=0),
        after=tuple(max(sizes[finished.get(i, 0) :], default=0) for i in range(len(layers))),
    )


def chunk_size(options: Mapping[str, Any], item_bytes: int) -> int:
    """Copies per forward pass: ``batch_size`` if given, else as many copies of
    ``item_bytes`` as fit in ``memory_budget_mb`` (at least one)."""
    if options["batch_size"] is not None:
        return int(options["batch_size"])
    budget = float(options["memory_budget_mb"]) * 2**20
    return max(1, int(budget // max(item_bytes, 1)))


def select_channels(activations: torch.Tensor, count: int) -> torch.Tensor:
    """``(B, count)`` indices of each image's channels with the largest mean absolute
    activation over the grid, largest first (ties: lower index first)."""
    strength = activations.abs().flatten(2).mean(-1)  # (B, C)
    return torch.sort(strength, dim=1, descending=True, stable=True).indices[:, :count]


def weighted_maps(
    weights: torch.Tensor, activations: torch.Tensor, eigen_smooth: bool = False
) -> torch.Tensor:
    """``Σ_c w[b, k, c] A[b, c]``: ``(B, K, C)`` weights × ``(B, C, *grid)`` → ``(B, K, *grid)``.

    With ``eigen_smooth`` the weighted channels are reduced by their first principal
    component instead of summed, as for the gradient methods.
    """
    weights = weights.to(activations.dtype)
    grid = (1,) * (activations.dim() - 2)
    if not eigen_smooth:
        flat = torch.einsum("bkc,bcn->bkn", weights, activations.flatten(2))
        return flat.reshape(*weights.shape[:2], *activations.shape[2:])
    maps = [
        first_principal_component(weights[:, k].reshape(*weights.shape[::2], *grid) * activations)
        for k in range(weights.shape[1])
    ]
    return torch.stack(maps, dim=1)


def _score_column(
    target: Callable[[torch.Tensor], torch.Tensor], scores: torch.Tensor, where: str
) -> Any:
    """``target`` applied to each of ``scores``' ``n`` items: one batched call with
    ``torch.vmap`` (the target sees one image's scores, as always), or one call per item
    where the target cannot be vmapped (``.item()``, data-dependent branches, ...)."""
    try:
        return torch.vmap(target)(scores)
    except Exception:  # not vmappable: call it per item, which raises real errors itself
        return torch.stack([target_score(target, item, where) for item in scores])


def score_outputs(context: RunContext, scores: torch.Tensor, image: int) -> torch.Tensor:
    """``(n, K)``: the ``K`` targets of ``image`` on each of the ``n`` items of ``scores``
    (a batch of model outputs after ``context.score_tensor``).

    A warning a target gives (e.g. an empty segmentation mask) comes from the same line for
    every chunk, so Python's default filters show it once.
    """
    columns = []
    for index, target in enumerate(context.targets[image]):
        values = _score_column(target, scores, f"target {index} of image {image}")
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != (scores.shape[0],):
            raise TargetError(
                f"target {index} of image {image} ({target!r}) did not return one scalar "
                "tensor per image."
            )
        columns.append(values)
    return torch.stack(columns, dim=1)


#: A method's re-runs estimated (after the first chunk) to take longer than this warn, with
#: the estimate and what to try (pytorch-grad-cam users have no such estimate).
SLOW_RUN_SECONDS = 120.0

#: torch's warning when ``vmap`` meets an operator without a batching rule.
_NO_BATCHING_RULE = ".*not yet implemented the batching rule.*"


class ForwardFailed(RuntimeError):
    """A re-run that was allowed to fail (``Rerun.scores(..., fallible=True)``) raised, or
    returned a different number of outputs than copies went in."""


class Rerun:
    """Runs chunks of perturbed copies through the borrowed model (see :func:`reruns`)."""

    def __init__(
        self,
        context: RunContext,
        handles: list[RemovableHandle],
        bar: Any,
        *,
        description: str = "",
        total: int = 0,
    ) -> None:
        self.context = context
        self.handles = handles
        self.bar = bar
        self.description = description
        self.total = total
        self.done = 0
        self.estimated = False
        self.started = time.perf_counter()

    def hook(self, layer: nn.Module, hook: Callable[..., Any]) -> RemovableHandle:
        """Register a forward hook for the rest of the re-runs (removed on exit)."""
        handle = layer.register_forward_hook(hook)
        self.handles.append(handle)
        return handle

    def scores(
        self, inputs: torch.Tensor, image: int, copies: int, *, fallible: bool = False
    ) -> torch.Tensor:
        """Run ``inputs`` (``copies`` items, or one item that hooks expand to ``copies``)
        under ``torch.inference_mode`` and score the outputs against ``image``'s targets:
        ``(copies, K)``, a normal (non-inference) tensor.

        With ``fallible``, an exception of the forward pass (other than a camlens error) and
        a wrong number of outputs raise :class:`ForwardFailed`, so that the caller can try
        another way; errors of the targets always propagate unchanged.
        """
        model, score_tensor = self.context.model, self.context.score_tensor
        return self._run(lambda: score_tensor(model(inputs)), image, copies, fallible)

    def vmapped_scores(
        self,
        function: Callable[[torch.Tensor], torch.Tensor],
        arguments: torch.Tensor,
        image: int,
        *,
        fallible: bool = False,
    ) -> torch.Tensor:
        """Like :meth:`scores` for ``torch.vmap(function)(arguments)``, where ``function``
        runs the model on one image and returns its score tensor (a batch of one).

        Whatever does not depend on the vmapped argument (the layers before a perturbed
        layer, features that skip connections carry) is computed once for all copies.
        torch's note that an operator without a batching rule falls back to a loop is not
        shown: the result is the same, only slower.
        """
        copies = int(arguments.shape[0])

        def produce() -> torch.Tensor:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_NO_BATCHING_RULE)
                scores = torch.vmap(function)(arguments)
            if scores.dim() < 2 or scores.shape[1] != 1:
                raise ForwardFailed(f"one image gave {tuple(scores.shape[1:])} outputs")
            return scores[:, 0]

        return self._run(produce, image, copies, fallible)

    def _run(
        self, produce: Callable[[], torch.Tensor], image: int, copies: int, fallible: bool
    ) -> torch.Tensor:
        with torch.inference_mode():
            try:
                scores = produce()
            except CamlensError:
                raise
            except Exception as error:
                if not fallible:
                    raise
                if isinstance(error, ForwardFailed):
                    raise
                raise ForwardFailed(f"{type(error).__name__}: {error}") from error
            if scores.dim() == 0 or scores.shape[0] != copies:
                got = "a scalar" if scores.dim() == 0 else f"{scores.shape[0]}"
                message = f"{copies} copies went in, {got} outputs came out"
                if fallible:
                    raise ForwardFailed(message)
                raise ModelOutputError(
                    f"the model output does not have one item per input: {message}"
                )
            values = score_outputs(self.context, scores, image)
        return values.clone()

    def advance(self, count: int, seconds: float | None = None, *, steady: bool = True) -> None:
        """Count ``count`` perturbations as done on the progress bar; after the first chunk,
        warn if the whole run is estimated to take longer than :data:`SLOW_RUN_SECONDS`.

        ``seconds`` is what the chunk's own re-runs took; without it the time since the
        start is used, which also counts one-off costs (the memory probe, a way of
        re-running that failed) and so overestimates long runs. With it, the estimate is
        the time spent so far plus the remaining copies at the chunk's rate. A chunk that
        is not ``steady`` (it did one-off work the next ones skip) postpones the estimate to
        the next chunk."""
        self.done += count
        self.bar.update(count)
        if self.estimated or not steady or self.done >= self.total:
            return
        self.estimated = True
        elapsed = time.perf_counter() - self.started
        per_copy = (elapsed / self.done) if seconds is None else seconds / count
        estimate = elapsed + per_copy * (self.total - self.done)
        if estimate > SLOW_RUN_SECONDS:
            warnings.warn(
                f"{self.description}: about {_duration(estimate)} for {self.total} re-runs of "
                f"the model ({per_copy:.2g} s each, measured on the first chunks). Faster: "
                "fewer channels (ScoreCAM top_k, AblationCAM ratio; not exact), a GPU "
                "(model.to('cuda')), or an earlier layer with fewer channels.",
                SlowRunWarning,
                stacklevel=caller_stacklevel(),
            )


@contextmanager
def reruns(context: RunContext, *, description: str, total: int) -> Iterator[Rerun]:
    """Borrow the model for a method's re-runs; a progress bar counts ``total``
    perturbations when ``context.options["progress"]`` is set."""
    enabled = bool(context.options.get("progress", False))
    with (
        borrowed(context.model) as handles,
        tqdm(total=total, desc=description, unit="copy", disable=not enabled) as bar,
    ):
        yield Rerun(context, handles, bar, description=description, total=total)


def _duration(seconds: float) -> str:
    """``"3 min"``, ``"1.4 h"``: a duration for people."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def ratio_count(ratio: float, channels: int) -> int:
    """How many of ``channels`` a ``ratio`` in (0, 1] selects (at least one)."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise ValueError(f"`ratio` must be in (0, 1], got {ratio!r}")
    return max(1, min(channels, math.ceil(ratio * channels)))
