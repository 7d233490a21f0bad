"""The steps of the pipeline, as functions: check and place the input, one forward pass
with captured activations, gradients down to the target layers only, one layer's signed map
from a method's contributions, the raw maps of a method that re-runs the model.

:func:`camlens.engine.explain_batch` strings them together; nothing else calls them in
that order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from camlens.capture import ActivationCapture, borrowed, check_grad_mode
from camlens.errors import InputShapeError, LayerNeverRanError, NonFiniteError
from camlens.methods import LayerData, Method, RunContext, first_principal_component
from camlens.reshape import ReshapeTransform, default_reshape
from camlens.tokens import TokenLayout

__all__ = [
    "FiniteChecks",
    "check_finite",
    "forward_capture",
    "layer_gradients",
    "layer_map",
    "model_device",
    "model_dtype",
    "prepare_input",
    "run_method",
    "to_grid",
]


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """Raise :class:`NonFiniteError` naming ``what`` if ``tensor`` holds NaN or inf (at
    once: one host synchronisation; the engine batches its checks in :class:`FiniteChecks`)."""
    checks = FiniteChecks()
    checks.add(tensor, what)
    checks.verify()


class FiniteChecks:
    """NaN/inf checks collected on the tensors' device and verified together.

    Reading a check's answer on the host waits for the device (a CUDA synchronisation);
    one per layer, target and method would stall a GPU's queue many times per batch. Each
    :meth:`add` only queues the tensor's sum on the device — one pass over it, NaN or inf
    wherever an element is — and :meth:`verify` copies all sums' finiteness to the host at
    once. Only a non-finite sum is looked at again: its non-finite elements are counted
    (none means the sum itself overflowed: no error), and the first failing tensor, in the
    order they were added, raises.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[torch.Tensor, torch.Tensor, str]] = []

    def add(self, tensor: torch.Tensor, what: str) -> None:
        """Queue the check of ``tensor`` (``what`` names it in the error)."""
        tensor = tensor.detach()
        self._pending.append((tensor.sum(), tensor, what))

    def verify(self) -> None:
        """Raise :class:`NonFiniteError` for the first queued tensor with NaN/inf."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        device = pending[0][0].device
        sums = torch.stack([total.to(device, torch.float32) for total, _, _ in pending])
        for finite, (_, tensor, what) in zip(torch.isfinite(sums).tolist(), pending, strict=True):
            if finite:
                continue
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise NonFiniteError(
                    f"{bad} NaN/inf value(s) in {what}; check the input for NaN/inf and the "
                    "model for overflow (e.g. fp16 without autocast), or explain an earlier "
                    "layer."
                )


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); ``None`` for a stateless model."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter (float32 if it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def prepare_input(input_tensor: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Check ``input_tensor`` (``(B, C, H, W)`` or ``(B, C, D, H, W)``, floating point) and
    return it detached, on the model's device, usable by autograd."""
    check_grad_mode()
    if not isinstance(input_tensor, torch.Tensor):
        raise TypeError(
            f"`inputs` must be a torch.Tensor, got {type(input_tensor).__name__}; "
            "use camlens.image.preprocess_image for numpy images."
        )
    if input_tensor.dim() not in (4, 5):
        hint = " Add the batch dimension: inputs.unsqueeze(0)." if input_tensor.dim() == 3 else ""
        raise InputShapeError(
            f"`inputs` must be (B, C, H, W) images or (B, C, D, H, W) volumes, got "
            f"shape {tuple(input_tensor.shape)}.{hint}"
        )
    if not input_tensor.is_floating_point():
        raise InputShapeError(
            f"`inputs` have dtype {input_tensor.dtype}; models expect floats, e.g. "
            "preprocess_image(img) or tensor.float() / 255."
        )
    device = model_device(model)
    inputs = input_tensor.detach()
    if device is not None and inputs.device != device:
        inputs = inputs.to(device)
    if inputs.is_inference():
        inputs = inputs.clone()  # a normal tensor again, usable by autograd
    return inputs


def forward_capture(
    model: nn.Module,
    layers: list[nn.Module],
    inputs: torch.Tensor,
    names: Sequence[str],
    *,
    track_gradients: bool,
) -> tuple[Any, list[torch.Tensor]]:
    """One forward pass of the borrowed model, capturing each target layer's output.

    With ``track_gradients`` the graph is recorded from the first target layer on, so that
    :func:`layer_gradients` can differentiate scores computed from the output. The model is
    handed back (hooks removed, modes restored) before this returns.
    """
    with borrowed(model) as handles:
        capture = ActivationCapture(model, layers, names, handles, track_gradients=track_gradients)
        with torch.no_grad():
            output = model(inputs)
        activations = capture.activations()
    return output, activations


def layer_gradients(
    scores: torch.Tensor,
    activations: Sequence[torch.Tensor],
    names: Sequence[str],
    *,
    grad_outputs: torch.Tensor | None = None,
    retain_graph: bool = False,
    checks: FiniteChecks | None = None,
) -> list[torch.Tensor]:
    """d(scores)/d(activations), stopping at the target layers (no parameter gradients).

    ``scores`` is summed unless ``grad_outputs`` is given; ``grad_outputs`` with a leading
    batch of vectors (``is_grads_batched``) gives one gradient per vector in one call. The
    gradients' NaN/inf checks join ``checks``, or are made here.
    """
    if not scores.requires_grad:
        raise LayerNeverRanError(
            f"the target scores do not depend on the target layer(s) {list(names)}; choose a "
            "layer on the path to the output that the targets read."
        )
    batched = grad_outputs is not None
    gradients = torch.autograd.grad(
        scores if batched else scores.sum(),
        list(activations),
        grad_outputs=grad_outputs,
        retain_graph=retain_graph,
        allow_unused=True,
        is_grads_batched=batched,
    )
    result = []
    for name, gradient in zip(names, gradients, strict=True):
        if gradient is None:
            raise LayerNeverRanError(
                f"the target scores do not depend on layer {name!r} (it ran, but its output "
                "does not reach the scores); choose a layer on the path to the output."
            )
        if checks is None:
            check_finite(gradient, f"the gradients at layer {name!r}")
        else:
            checks.add(gradient, f"the gradients at layer {name!r}")
        result.append(gradient)
    return result


def to_grid(
    layer: nn.Module,
    tensor: torch.Tensor,
    reshape_transform: ReshapeTransform | None,
    layout: TokenLayout | None = None,
) -> torch.Tensor:
    """A layer output (or its gradient) as ``(B, C, *grid)``: the user's
    ``reshape_transform``, else :func:`~camlens.reshape.default_reshape` with the model's
    token ``layout``."""
    if reshape_transform is not None:
        return reshape_transform(tensor)
    return default_reshape(layer, tensor, layout)


def layer_map(
    method: Method,
    layer: nn.Module,
    activation: torch.Tensor,
    gradient: torch.Tensor | None,
    *,
    reshape_transform: ReshapeTransform | None = None,
    layout: TokenLayout | None = None,
    eigen_smooth: bool = False,
    class_weights: Callable[[int], torch.Tensor] | None = None,
    options: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The signed, unnormalised map ``(B, *grid)`` of ``method`` at one layer.

    Activations and gradients are brought to ``(B, C, *grid)`` and to float32 (float64 stays
    float64; ``layout`` is the model's token layout); ``class_weights(channels)`` supplies
    CAM's classifier rows; ``options`` are the method's checked options.
    """
    dtype = torch.float64 if activation.dtype == torch.float64 else torch.float32
    activations = to_grid(layer, activation.detach(), reshape_transform, layout).to(dtype)
    gradients = None
    if gradient is not None:
        gradients = to_grid(layer, gradient, reshape_transform, layout).to(dtype)
        if gradients.shape != activations.shape:
            raise InputShapeError(
                f"reshape_transform gave activations {tuple(activations.shape)} but gradients "
                f"{tuple(gradients.shape)}; it must treat both the same way."
            )
    assert method.contributions is not None, f"{method.name} is a runner: use run_method"
    weights = None
    if method.class_weights is not None:
        assert class_weights is not None, f"{method.name} needs class weights"
        weights = class_weights(activations.shape[1]).to(dtype)
    data = LayerData(activations=activations, gradients=gradients, class_weights=weights)
    contributions = method.contributions(data, **dict(options or {}))
    if method.principal_component or eigen_smooth:
        return first_principal_component(contributions)
    return contributions.sum(dim=1)


def run_method(
    method: Method,
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[nn.Module],
    names: Sequence[str],
    activations: Sequence[torch.Tensor],
    *,
    score_tensor: Callable[[Any], torch.Tensor],
    targets: Sequence[Sequence[Callable[[torch.Tensor], torch.Tensor]]],
    scores: torch.Tensor,
    reshape_transform: ReshapeTransform | None = None,
    layout: TokenLayout | None = None,
    eigen_smooth: bool = False,
    options: Mapping[str, Any] | None = None,
    checks: FiniteChecks | None = None,
) -> list[torch.Tensor]:
    """The raw maps ``(B, K, *grid)`` of a method with a runner (see
    :class:`~camlens.methods.RunContext`): ``targets`` holds ``K`` targets per image and
    ``scores`` their ``(B, K)`` values on the unperturbed input. The maps' NaN/inf checks
    join ``checks`` (verified by the caller), or are verified here."""
    assert method.runner is not None, f"{method.name} has no runner"

    def reshape(layer: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
        return to_grid(layer, tensor, reshape_transform, layout)

    grids = []
    for layer, activation in zip(layers, activations, strict=True):
        dtype = torch.float64 if activation.dtype == torch.float64 else torch.float32
        grids.append(reshape(layer, activation.detach()).to(dtype))
    context = RunContext(
        model=model,
        inputs=inputs,
        layers=list(layers),
        layer_names=list(names),
        activations=grids,
        score_tensor=score_tensor,
        targets=[list(row) for row in targets],
        scores=scores.detach(),
        options=dict(options or {}),
        reshape=reshape,
        eigen_smooth=eigen_smooth,
    )
    maps = method.runner(context)
    map_names = list(method.map_names) if method.map_names is not None else list(names)
    own = checks is None
    checks = FiniteChecks() if checks is None else checks
    for name, raw in zip(map_names, maps, strict=True):
        checks.add(raw, f"the {method.label} map of {name!r}")
    if own:
        checks.verify()
    return maps
