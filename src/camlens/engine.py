"""The one pipeline every front end runs: explain a ``(B, K)`` grid of targets.

:func:`explain_batch` does, once per batch: one forward pass of the borrowed model with the
target layers' activations captured → the score tensor (output adapter) → finite checks →
the ``(B, K)`` target scores → gradients down to the target layers only (one backward pass
per target column over the retained graph, or batched vector-Jacobian products) → each
method's signed raw maps ``(B, K, *grid)`` (a ``contributions`` function per layer and
target, or a runner that re-runs the model) → final maps ``(B, K, *input_spatial)``.

The familiar classes and :func:`camlens.explain` are ``K = 1``; :func:`camlens.explain_segmentation`
explains ``K`` classes; the CLI, the metrics and the demo go through those. No front end
repeats a step of this module (the steps themselves are functions in :mod:`camlens.steps`),
and this module imports no front end, metric or report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from camlens.errors import ModelOutputError, OptionError, TargetError
from camlens.methods import Method, get_method
from camlens.outputs import Detections, as_score_tensor, is_dense
from camlens.postprocess import familiar_maps
from camlens.reshape import ReshapeTransform
from camlens.steps import (
    FiniteChecks,
    forward_capture,
    layer_gradients,
    layer_map,
    model_device,
    prepare_input,
    run_method,
)
from camlens.target_sets import NoDetectionTarget, TargetSet
from camlens.tokens import TokenLayout, token_layout

__all__ = [
    "BatchResult",
    "MethodCall",
    "Strategy",
    "explain_batch",
    "model_device",
    "plan_methods",
    "prepare_input",
]

Strategy = Literal["loop", "batched"]


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


def _levels(activation: Any, name: str) -> list[tuple[str, torch.Tensor]]:
    """A layer's output as named tensors: itself, or each level of a dict of feature maps
    (a detector's FPN), named ``name['key']``."""
    if isinstance(activation, Mapping):
        return [(f"{name}[{key!r}]", value) for key, value in activation.items()]
    return [(name, activation)]


def _target_gradients(
    scores: torch.Tensor,
    activations: Sequence[Any],
    names: Sequence[str],
    strategy: Strategy,
    checks: FiniteChecks,
) -> list[list[Any]]:
    """Per target column ``k``, the gradients of ``scores[:, k]`` at every layer (a dict
    of gradients, level by level, for a layer that returned a dict of feature maps)."""
    flat = [level for a, name in zip(activations, names, strict=True) for level in _levels(a, name)]
    gradients = _tensor_gradients(
        scores, [tensor for _, tensor in flat], [name for name, _ in flat], strategy, checks
    )
    result = []
    for column in gradients:
        remaining = iter(column)
        result.append(
            [
                type(activation)((key, next(remaining)) for key in activation)
                if isinstance(activation, Mapping)
                else next(remaining)
                for activation in activations
            ]
        )
    return result


def _tensor_gradients(
    scores: torch.Tensor,
    activations: Sequence[torch.Tensor],
    names: Sequence[str],
    strategy: Strategy,
    checks: FiniteChecks,
) -> list[list[torch.Tensor]]:
    """Per target column ``k``, the gradients of ``scores[:, k]`` at every tensor."""
    count = scores.shape[1]
    if strategy == "batched" and count > 1:
        grad_outputs = torch.eye(count, dtype=scores.dtype, device=scores.device)
        grad_outputs = grad_outputs[:, None, :].expand(count, *scores.shape)
        stacked = layer_gradients(
            scores, activations, names, grad_outputs=grad_outputs, checks=checks
        )
        return [[gradient[k] for gradient in stacked] for k in range(count)]
    return [
        layer_gradients(scores[:, k], activations, names, retain_graph=k < count - 1, checks=checks)
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
    layout: TokenLayout | None,
    eigen_smooth: bool,
) -> list[torch.Tensor]:
    """``(B, K, *grid)`` per layer for a ``contributions`` method."""
    method = call.method
    count = targets.num_targets
    # a method that reads neither gradients nor class weights gives one map for every target
    per_target = method.needs_gradients or method.class_weights is not None
    result = []
    for position, (layer, activation) in enumerate(zip(layers, activations, strict=True)):
        transform = reshape_transform
        if isinstance(activation, Mapping):
            # a dict of feature maps: the user's transform makes the one grid methods read,
            # of the activations and (level by level) of the gradients alike
            if reshape_transform is None:
                raise ModelOutputError(
                    f"target layer {type(layer).__name__} returns a dict of feature maps; pass "
                    "a `reshape_transform` that makes one [B, C, h, w] grid of it, e.g. "
                    "camlens.reshape.fasterrcnn_reshape_transform for a detector's FPN."
                )
            activation = reshape_transform({k: v.detach() for k, v in activation.items()})
            transform = None
        maps = []
        for k in range(count if per_target else 1):
            gradient = gradients[k][position] if method.needs_gradients and gradients else None
            if isinstance(gradient, Mapping):
                gradient = reshape_transform(gradient)  # type: ignore[misc]
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
                    reshape_transform=transform,
                    layout=layout,
                    eigen_smooth=eigen_smooth,
                    class_weights=class_weights,
                    options=call.options,
                )
            )
        if len(maps) == 1 and count > 1:
            maps = maps * count
        result.append(torch.stack(maps, dim=1))
    return result


def _check_detection_calls(calls: Sequence[MethodCall], targets: TargetSet) -> None:
    """Refuse what a detector's output cannot honestly give: re-running methods (they score
    perturbed copies as tensors) and targetless calls of methods that read a target."""
    for call in calls:
        method = call.method
        if method.runner is not None:
            raise ModelOutputError(
                f"{method.label} re-runs the model and scores its outputs as tensors; on a "
                "detector's per-image dicts use a method computed from one forward pass "
                "(e.g. eigencam, gradcam, hirescam, layercam)."
            )
        reads_target = method.needs_gradients or method.class_weights is not None
        untargeted = any(isinstance(t, NoDetectionTarget) for row in targets.rows for t in row)
        if reads_target and untargeted:
            raise TargetError(
                f"{method.label} explains a target, and a detector has no predicted class to "
                "default to; pass one target per image, e.g. "
                "camlens.targets.FasterRCNNBoxScoreTarget(labels, boxes)."
            )


def explain_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    calls: Sequence[MethodCall],
    layers: Sequence[nn.Module],
    names: Sequence[str],
    make_targets: Callable[[torch.Tensor], TargetSet],
    *,
    reshape_transform: ReshapeTransform | None = None,
    grid: tuple[int, int] | None = None,
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
        reshape_transform: the user's layer output → ``(B, C, *grid)``; without it, token
            outputs follow the model's token layout (:func:`camlens.tokens.token_layout`,
            read once here from the model and the input's size; ``grid=(h, w)`` overrides
            the patch grid).
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
        scores = as_score_tensor(model_output, detections=True)
        if isinstance(scores, Detections) and flipped:
            raise ModelOutputError(
                "aug_smooth flips the image, and a detector's boxes are not flipped back; "
                "explain detectors without aug_smooth."
            )
        if flipped and is_dense(scores):
            scores = scores.flip(-1)  # back to the input's orientation
        return scores  # type: ignore[return-value]  # Detections: checked below

    with torch.enable_grad():
        outputs = score_tensor(output)
        detections = isinstance(outputs, Detections)
        if check_outputs is not None:
            if detections:  # the extra checks are of score tensors (e.g. "must be dense")
                raise ModelOutputError("this call needs a score tensor, not a detector's dicts")
            check_outputs(outputs)
        # Two host synchronisations per batch: the forward pass is checked before targets
        # read it; scores, gradients and maps together at the end (FiniteChecks).
        checks = FiniteChecks()
        for name, activation in zip(names, activations, strict=True):
            for level, tensor in _levels(activation, name):
                checks.add(tensor, f"the activations of layer {level!r}")
        if isinstance(outputs, Detections):
            for what, tensor in outputs.tensors():
                checks.add(tensor, f"the model output ({what})")
        else:
            checks.add(outputs, "the model output")
        checks.verify()
        targets = make_targets(outputs)
        if detections:
            _check_detection_calls(calls, targets)
        scores = targets.scores(outputs)
        checks.add(scores, "the target scores")
        gradients = (
            _target_gradients(scores, activations, names, strategy, checks)
            if needs_gradients
            else None
        )
    size = tuple(inputs.shape[2:])
    layout = None if reshape_transform is not None else token_layout(model, size, grid)
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
                layout=layout,
                eigen_smooth=eigen_smooth,
                options=call.options,
                checks=checks,
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
                layout,
                eigen_smooth,
            )
        result.map_names[call.name] = list(method.map_names or names)
        result.layer_maps[call.name] = raw
        final = familiar_maps([m.flatten(0, 1) for m in raw], size)
        result.maps[call.name] = final.reshape(*raw[0].shape[:2], *size)
    checks.verify()
    return result
