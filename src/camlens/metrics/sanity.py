"""Model-parameter randomisation: does the explanation depend on what the model learned?

The cascading randomisation test of Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018 (§3.1): re-initialise the model's layers one after another, from the output
end towards the input, and compare the maps of each partly random model with the original
maps. A method whose maps survive the destruction of most of the learned weights explains
the input (edges, brightness), not the model; such a method is flagged.

The model is randomised in place and restored exactly (every parameter and buffer copied
back) in a ``finally`` block, so it is handed back as found also when the explanation
raises; train/eval flags and hooks are restored by :func:`camlens.capture.borrowed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from camlens.capture import borrowed
from camlens.errors import InputShapeError
from camlens.metrics.similarity import spearman_correlation, ssim

__all__ = ["RandomisationResult", "cascading_randomisation", "parameterised_modules"]

ExplainFunction = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass
class RandomisationResult:
    """Similarity of the maps of ever more randomised models to the original maps.

    Step ``s`` (0-based) has re-initialised ``layers[0..s]``.

    Attributes:
        layers: the dotted names of the parameterised modules, output end first, in the
            order they were re-initialised.
        original_maps: ``(B, H, W)`` the maps of the unchanged model.
        spearman: ``(S, B)`` Spearman rank correlation with the original maps, per step and
            image (NaN where a map is constant).
        ssim: ``(S, B)`` SSIM (Wang et al. 2004) with the original maps, both scaled to
            [0, 1].
        checked_step: the step the flag looks at: the first step at which at least
            ``fraction`` of the parameterised modules are random.
        threshold: the mean rank correlation above which a method is flagged.
        flagged: whether the maps at ``checked_step`` still correlate above ``threshold``
            with the original maps (averaged over the images).
        reason: a sentence that says why the method is or is not flagged.
        maps: ``(S, B, H, W)`` the randomised models' maps, with ``keep_maps=True``.
    """

    layers: list[str]
    original_maps: torch.Tensor
    spearman: torch.Tensor
    ssim: torch.Tensor
    checked_step: int
    threshold: float
    flagged: bool
    reason: str
    maps: torch.Tensor | None = None


def parameterised_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module that owns parameters itself, output end first:
    the reverse of registration order, which follows the forward pass in most models.
    The model itself is named ``""``."""
    found = [
        (name, module)
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]
    return found[::-1]


@contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Copy every parameter and buffer back into place on exit, exceptions included."""
    tensors = {
        **{f"p:{n}": t for n, t in model.named_parameters()},
        **{f"b:{n}": t for n, t in model.named_buffers()},
    }
    saved = {name: tensor.detach().clone() for name, tensor in tensors.items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, tensor in tensors.items():
                tensor.copy_(saved[name])


def _reinitialise(module: nn.Module, seed: int, device: torch.device) -> None:
    """Seeded re-initialisation of ``module``'s own parameters, leaving the caller's random
    state untouched.

    Modules with ``reset_parameters`` (convolutions, linear and normalisation layers, ...)
    get their own default initialisation (which, for batch norm, also resets the running
    statistics); other parameters get PyTorch's linear-layer default, a Kaiming-uniform draw
    for matrices and a normal draw of std 0.02 for vectors and scalars.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for parameter in module.parameters(recurse=False):
            if parameter.dim() >= 2:
                nn.init.kaiming_uniform_(parameter, a=math.sqrt(5))
            else:
                nn.init.normal_(parameter, std=0.02)


def cascading_randomisation(
    model: nn.Module,
    inputs: torch.Tensor,
    explain: ExplainFunction,
    *,
    seed: int = 0,
    fraction: float = 0.5,
    threshold: float = 0.9,
    keep_maps: bool = False,
) -> RandomisationResult:
    """Cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

    For step ``s = 0, 1, ...`` one more parameterised module (output end first, see
    :func:`parameterised_modules`) is re-initialised with seed ``seed + s``, the maps are
    recomputed with ``explain(model, inputs)`` and compared with the original maps by
    Spearman rank correlation and SSIM. The method is flagged when the mean rank correlation
    is still above ``threshold`` once ``fraction`` of the modules (rounded up) are random.

    Args:
        model: the model; randomised in place during the call and restored exactly.
        inputs: the images to explain, as ``explain`` takes them.
        explain: ``explain(model, inputs) -> (B, H, W)`` maps, e.g.
            ``lambda m, x: GradCAM(m, "layer4").explain(x, [3]).raw_maps()``. Fix the
            targets (class ids) rather than explaining the prediction, which changes as the
            model is randomised. Signed raw maps keep the most information.
        seed: the base seed of the re-initialisations.
        fraction: share of the parameterised modules that must be random at the checked step.
        threshold: the mean Spearman correlation above which the method is flagged.
        keep_maps: also return every step's maps.

    Returns:
        A :class:`RandomisationResult`.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction}")
    modules = parameterised_modules(model)
    if not modules:
        raise ValueError(
            f"{type(model).__name__} has no parameters, so there is nothing to randomise."
        )
    checked = max(1, math.ceil(fraction * len(modules))) - 1
    spearman, similarity, kept = [], [], []
    with borrowed(model, eval_mode=False), _restored(model):
        original = _maps(explain, model, inputs, None).detach()
        for step, (_, module) in enumerate(modules):
            device = next(module.parameters(recurse=False)).device
            _reinitialise(module, seed + step, device)
            maps = _maps(explain, model, inputs, tuple(original.shape)).detach()
            spearman.append(spearman_correlation(original, maps))
            similarity.append(ssim(original, maps))
            if keep_maps:
                kept.append(maps)
    names = [name or type(model).__name__ for name, _ in modules]
    ranks = torch.stack(spearman)
    level = float(ranks[checked].nanmean()) if bool(ranks[checked].isfinite().any()) else math.nan
    flagged = level > threshold
    where = f"re-initialising the top {checked + 1} of {len(modules)} parameterised modules"
    where += f" (down to {names[checked]!r})"
    if flagged:
        reason = (
            f"after {where} the maps still have a mean Spearman rank correlation of "
            f"{level:.3f} > {threshold} with the original maps: they barely depend on the "
            "learned weights, so they explain the input more than the model."
        )
    elif math.isnan(level):
        reason = f"after {where} every map is constant: the maps depend on the learned weights."
    else:
        reason = (
            f"after {where} the maps' mean Spearman rank correlation with the original maps "
            f"is {level:.3f} <= {threshold}: the maps depend on the learned weights."
        )
    return RandomisationResult(
        layers=names,
        original_maps=original,
        spearman=ranks,
        ssim=torch.stack(similarity),
        checked_step=checked,
        threshold=threshold,
        flagged=flagged,
        reason=reason,
        maps=torch.stack(kept) if keep_maps else None,
    )


def _maps(
    explain: ExplainFunction,
    model: nn.Module,
    inputs: torch.Tensor,
    shape: tuple[int, ...] | None,
) -> torch.Tensor:
    maps = explain(model, inputs)
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
        got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise InputShapeError(
            f"`explain(model, inputs)` must return (B, H, W) maps, got {got}; e.g. "
            "`lambda m, x: GradCAM(m, 'layer4').explain(x, targets).raw_maps()`."
        )
    if shape is not None and tuple(maps.shape) != shape:
        raise InputShapeError(
            f"`explain` returned maps of shape {tuple(maps.shape)} after randomisation but "
            f"{shape} before; it must return maps of one shape."
        )
    return maps
