"""The one pipeline every front end runs: explain a ``(B, K)`` grid of targets.

:func:`explain_batch` does, once per batch: one forward pass of the borrowed model with the
target layers' activations captured → the score tensor (output adapter) → finite checks →
the ``(B, K)`` target scores → gradients down to the target layers only (one backward pass
per target column over the retained graph, or batched vector-Jacobian products) → each
method's signed raw maps ``(B, K, *grid)`` (a ``contributions`` function per layer and
target, or a runner that re-runs the model) → final maps ``(B, K, *input_spatial)``.

The familiar classes and :func:`camlens.explain` are ``K = 1``; :func:`camlens.explain_segmentation`
explains ``K`` classes; the CLI, the metrics and the demo go through those. No front end
repeats a step of this module, and this module imports no front end, metric or report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from camlens.capture import ActivationCapture, borrowed, check_grad_mode
from camlens.errors import InputShapeError, LayerNeverRanError, NonFiniteError, OptionError
from camlens.methods import LayerData, Method, RunContext, first_principal_component, get_method
from camlens.outputs import as_score_tensor, is_dense
from camlens.postprocess import familiar_maps
from camlens.reshape import ReshapeTransform, default_reshape
from camlens.target_sets import TargetSet

__all__ = [
    "BatchResult",
    "MethodCall",
    "Strategy",
    "check_finite",
    "explain_batch",
    "forward_capture",
    "layer_gradients",
    "layer_map",
    "model_device",
    "plan_methods",
    "prepare_input",
    "run_method",
    "to_grid",
]

Strategy = Literal["loop", "batched"]


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """Raise :class:`NonFiniteError` naming ``what`` if ``tensor`` holds NaN or inf."""
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise NonFiniteError(
            f"{bad} NaN/inf value(s) in {what}; check the input for NaN/inf and the model for "
            "overflow (e.g. fp16 without autocast), or explain an earlier layer."
        )


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); ``None`` for a stateless model."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


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
) -> list[torch.Tensor]:
    """d(scores)/d(activations), stopping at the target layers (no parameter gradients).

    ``scores`` is summed unless ``grad_outputs`` is given; ``grad_outputs`` with a leading
    batch of vectors (``is_grads_batched``) gives one gradient per vector in one call.
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
        check_finite(gradient, f"the gradients at layer {name!r}")
        result.append(gradient)
    return result


def to_grid(
    layer: nn.Module, tensor: torch.Tensor, reshape_transform: ReshapeTransform | None
) -> torch.Tensor:
    """A layer output (or its gradient) as ``(B, C, *grid)``."""
    if reshape_transform is not None:
        return reshape_transform(tensor)
    return default_reshape(layer, tensor)


def layer_map(
    method: Method,
    layer: nn.Module,
    activation: torch.Tensor,
    gradient: torch.Tensor | None,
    *,
    reshape_transform: ReshapeTransform | None = None,
    eigen_smooth: bool = False,
    class_weights: Callable[[int], torch.Tensor] | None = None,
    options: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The signed, unnormalised map ``(B, *grid)`` of ``method`` at one layer.

    Activations and gradients are brought to ``(B, C, *grid)`` and to float32 (float64 stays
    float64); ``class_weights(channels)`` supplies CAM's classifier rows; ``options`` are the
    method's checked options.
    """
    dtype = torch.float64 if activation.dtype == torch.float64 else torch.float32
    activations = to_grid(layer, activation.detach(), reshape_transform).to(dtype)
    gradients = None
    if gradient is not None:
        gradients = to_grid(layer, gradient, reshape_transform).to(dtype)
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
    eigen_smooth: bool = False,
    options: Mapping[str, Any] | None = None,
) -> list[torch.Tensor]:
    """The raw maps ``(B, K, *grid)`` of a method with a runner (see
    :class:`~camlens.methods.RunContext`): ``targets`` holds ``K`` targets per image and
    ``scores`` their ``(B, K)`` values on the unperturbed input."""
    assert method.runner is not None, f"{method.name} has no runner"

    def reshape(layer: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
        return to_grid(layer, tensor, reshape_transform)

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
    for name, raw in zip(map_names, maps, strict=True):
        check_finite(raw, f"the {method.label} map of {name!r}")
    return maps


@dataclass(frozen=True)
class MethodCall:
    """A method with its checked options (defaults filled in)."""

    method: Method
    options: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The method's registry name."""
        return self.method.name


def plan_methods(
    methods: Sequence[str | Method], options: Mapping[str, Any] | None
) -> list[MethodCall]:
    """Resolve method names and check their options, in one place for every front end.

    ``options`` is either flat — the options of the one method (``{"pool_size": 4}``) — or
    nested by method name (``{"segxrescam": {"pool_size": 4}, "scorecam": {...}}``). Flat
    options with several methods, a nested entry for a method that is not requested, or a
    mix of the two raise :class:`~camlens.errors.OptionError` saying how to write them.
    """
    resolved = [m if isinstance(m, Method) else get_method(m) for m in methods]
    if not resolved:
        raise OptionError("no method to run; pass at least one method name.")
    names = [m.name for m in resolved]
    if len(set(names)) != len(names):
        raise OptionError(f"a method is listed twice: {names}")
    given = dict(options or {})
    keyed = {}
    for key in given:
        try:
            keyed[key] = get_method(key).name if isinstance(key, str) else None
        except KeyError:
            keyed[key] = None
    nested = [key for key, name in keyed.items() if name is not None]
    if nested and len(nested) != len(given):
        flat = sorted(set(given) - set(nested))
        raise OptionError(
            f"`options` mixes per-method entries {nested} with flat options {flat}; nest every "
            f"option under its method, e.g. {{{names[0]!r}: {{...}}}}."
        )
    if nested:
        unrequested = [key for key in nested if keyed[key] not in names]
        if unrequested:
            raise OptionError(
                f"`options` has entries for {unrequested}, which are not among the requested "
                f"methods {names}."
            )
        per_method = {keyed[key]: given[key] for key in nested}
        for key, value in per_method.items():
            if not isinstance(value, Mapping):
                raise OptionError(f"`options[{key!r}]` must be a dict of options, got {value!r}")
    elif given and len(resolved) > 1:
        example = {names[0]: given}
        raise OptionError(
            f"flat `options` {sorted(given)} with several methods {names}: say which method they "
            f"are for by nesting them, e.g. options={example!r}."
        )
    else:
        per_method = {names[0]: given} if given else {}
    return [MethodCall(m, m.check_options(per_method.get(m.name))) for m in resolved]


@dataclass
class BatchResult:
    """What :func:`explain_batch` computed for ``B`` images × ``K`` targets.

    Attributes:
        map_names: per method, the names of its raw maps: the target layers' dotted names,
            or the method's own map names (FullGrad).
        layer_maps: per method, one ``(B, K, *grid)`` signed, unnormalised map per name.
        maps: per method, ``(B, K, *input_spatial)`` final maps in [0, 1].
        scores: ``(B, K)`` the target scores.
        outputs: the model output as a detached score tensor.
        targets: the targets that were explained.
        input_size: the input's spatial size.
    """

    map_names: dict[str, list[str]]
    layer_maps: dict[str, list[torch.Tensor]]
    maps: dict[str, torch.Tensor]
    scores: torch.Tensor
    outputs: torch.Tensor
    targets: TargetSet
    input_size: tuple[int, ...]
    extras: dict[str, Any] = field(default_factory=dict)


def _target_gradients(
    scores: torch.Tensor,
    activations: Sequence[torch.Tensor],
    names: Sequence[str],
    strategy: Strategy,
) -> list[list[torch.Tensor]]:
    """Per target column ``k``, the gradients of ``scores[:, k]`` at every layer."""
    count = scores.shape[1]
    if strategy == "batched" and count > 1:
        grad_outputs = torch.eye(count, dtype=scores.dtype, device=scores.device)
        grad_outputs = grad_outputs[:, None, :].expand(count, *scores.shape)
        stacked = layer_gradients(scores, activations, names, grad_outputs=grad_outputs)
        return [[gradient[k] for gradient in stacked] for k in range(count)]
    return [
        layer_gradients(scores[:, k], activations, names, retain_graph=k < count - 1)
        for k in range(count)
    ]


def _contribution_maps(
    call: MethodCall,
    model: nn.Module,
    layers: Sequence[nn.Module],
    activations: Sequence[torch.Tensor],
    gradients: list[list[torch.Tensor]] | None,
    targets: TargetSet,
    reshape_transform: ReshapeTransform | None,
    eigen_smooth: bool,
) -> list[torch.Tensor]:
    """``(B, K, *grid)`` per layer for a ``contributions`` method."""
    method = call.method
    count = targets.num_targets
    # a method that reads neither gradients nor class weights gives one map for every target
    per_target = method.needs_gradients or method.class_weights is not None
    result = []
    for position, (layer, activation) in enumerate(zip(layers, activations, strict=True)):
        maps = []
        for k in range(count if per_target else 1):
            gradient = gradients[k][position] if method.needs_gradients and gradients else None
            class_weights = None
            if method.class_weights is not None:
                provider = method.class_weights
                column = targets.column(k)

                def class_weights(channels: int, provider=provider, column=column) -> torch.Tensor:
                    return provider(model, column, channels, call.options)

            maps.append(
                layer_map(
                    method,
                    layer,
                    activation,
                    gradient,
                    reshape_transform=reshape_transform,
                    eigen_smooth=eigen_smooth,
                    class_weights=class_weights,
                    options=call.options,
                )
            )
        if len(maps) == 1 and count > 1:
            maps = maps * count
        result.append(torch.stack(maps, dim=1))
    return result


def explain_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    calls: Sequence[MethodCall],
    layers: Sequence[nn.Module],
    names: Sequence[str],
    make_targets: Callable[[torch.Tensor], TargetSet],
    *,
    reshape_transform: ReshapeTransform | None = None,
    eigen_smooth: bool = False,
    strategy: Strategy = "loop",
    flipped: bool = False,
    check_outputs: Callable[[torch.Tensor], None] | None = None,
) -> BatchResult:
    """Explain ``make_targets(score tensor)`` with every method of ``calls``.

    Args:
        model: borrowed for the call and handed back unchanged.
        inputs: ``(B, C, *spatial)`` from :func:`prepare_input`.
        calls: the methods with their checked options (:func:`plan_methods`).
        layers: the target layers (empty when no method uses target layers).
        names: their dotted names.
        make_targets: the score tensor ``(B, ...)`` → the ``(B, K)`` targets.
        strategy: ``"loop"`` (a backward pass per target column over the retained graph)
            or ``"batched"`` (vector-Jacobian products of all columns at once).
        flipped: the input was flipped horizontally (``aug_smooth``): dense outputs are
            flipped back before targets read them.
        check_outputs: an extra check of the score tensor (e.g. "must be dense").
    """
    if strategy not in ("loop", "batched"):
        raise ValueError(f"`strategy` must be 'loop' or 'batched', got {strategy!r}")
    needs_gradients = any(call.method.needs_layer_gradients for call in calls)
    output, activations = forward_capture(
        model, list(layers), inputs, names, track_gradients=needs_gradients
    )

    def score_tensor(model_output: Any) -> torch.Tensor:
        scores = as_score_tensor(model_output)
        if flipped and is_dense(scores):
            scores = scores.flip(-1)  # back to the input's orientation
        return scores

    with torch.enable_grad():
        outputs = score_tensor(output)
        if check_outputs is not None:
            check_outputs(outputs)
        for name, activation in zip(names, activations, strict=True):
            check_finite(activation, f"the activations of layer {name!r}")
        check_finite(outputs, "the model output")
        targets = make_targets(outputs)
        scores = targets.scores(outputs)
        check_finite(scores, "the target scores")
        gradients = (
            _target_gradients(scores, activations, names, strategy) if needs_gradients else None
        )
    size = tuple(inputs.shape[2:])
    result = BatchResult(
        map_names={},
        layer_maps={},
        maps={},
        scores=scores.detach(),
        outputs=outputs.detach(),
        targets=targets,
        input_size=size,
    )
    for call in calls:
        method = call.method
        uses_layers = method.uses_target_layers
        if method.runner is not None:
            raw = run_method(
                method,
                model,
                inputs,
                layers if uses_layers else [],
                names if uses_layers else [],
                activations if uses_layers else [],
                score_tensor=score_tensor,
                targets=targets.rows,
                scores=result.scores,
                reshape_transform=reshape_transform,
                eigen_smooth=eigen_smooth,
                options=call.options,
            )
        else:
            raw = _contribution_maps(
                call,
                model,
                layers,
                activations,
                gradients,
                targets,
                reshape_transform,
                eigen_smooth,
            )
        result.map_names[call.name] = list(method.map_names or names)
        result.layer_maps[call.name] = raw
        final = familiar_maps([m.flatten(0, 1) for m in raw], size)
        result.maps[call.name] = final.reshape(*raw[0].shape[:2], *size)
    return result
