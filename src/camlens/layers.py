"""Find target layers: modules, dotted names (``"encoder.layer4"``, ``"layer4[-1]"``,
``"blocks.-1.norm1"``) or ``"auto"``.

``"auto"`` picks the last module, in the order modules finish their forward pass, whose
output is a spatial feature map that the model's top-class score depends on at more than one
grid position. That rules out pooled vectors, the logit-space head of a segmenter and, for
vision transformers, layers after which only the class token reaches the classifier (token
layers must also have the model's usual width, which skips qkv and MLP expansions, so a ViT
gets ``blocks[-1].norm1``: the last block's own output reaches a class-token head only
through the class token, so it carries no spatial gradient, while ``norm1`` feeds every
patch token into the last attention). Token outputs are laid out by the model's token
layout (:mod:`camlens.tokens`: class, register and distillation tokens are dropped, the
patch grid may be non-square); a ViT whose head mean-pools the patch tokens gets its last
token layer instead. It costs one probing forward and backward pass; the choice is logged.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from camlens.capture import borrowed
from camlens.errors import LayerNotFoundError
from camlens.outputs import as_score_tensor, is_dense
from camlens.reshape import default_reshape
from camlens.tokens import token_layout

__all__ = ["find_auto_layer", "layer_by_name", "layer_name", "resolve_layers"]

logger = logging.getLogger(__name__)

LayerSpec = nn.Module | str
_INDEX = re.compile(r"\[(-?\d+)\]")
_VIT_HINT = (
    "for a ViT name `blocks[-1].norm1` (timm), `encoder.layers[-1].ln_1` (torchvision) or "
    "`encoder.layer[-1].layernorm_before` (Hugging Face ViT; `norm1` for DINOv2), and pass "
    "`grid=(h, w)` or a `reshape_transform` if its token layout cannot be read from the model"
)


def _split(name: str) -> list[str]:
    """``"layer4[-1].conv1"`` → ``["layer4", "-1", "conv1"]``."""
    return [part for part in _INDEX.sub(r".\1", name).split(".") if part]


def _child(module: nn.Module, key: str) -> nn.Module | None:
    children = dict(module.named_children())
    if key in children:
        return children[key]
    if re.fullmatch(r"-?\d+", key) and isinstance(module, nn.Sequential | nn.ModuleList):
        index = int(key)
        if -len(module) <= index < len(module):
            return module[index]
    return None


def layer_by_name(model: nn.Module, name: str) -> nn.Module:
    """The submodule of ``model`` named ``name`` (dotted, with ``[i]`` or ``.i`` indices);
    an unknown name raises :class:`LayerNotFoundError` listing the closest names."""
    module = model
    for part in _split(name):
        found = _child(module, part)
        if found is None:
            names = [n for n, _ in model.named_modules() if n]
            close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
            hint = (
                f"closest: {', '.join(repr(c) for c in close)}"
                if close
                else (f"top-level modules: {', '.join(repr(n) for n, _ in model.named_children())}")
            )
            raise LayerNotFoundError(f"layer {name!r} not found in {type(model).__name__}; {hint}")
        module = found
    return module


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """The dotted name of ``layer`` inside ``model`` (``"<model>"`` for the model itself)."""
    for name, module in model.named_modules():
        if module is layer:
            return name or "<model>"
    raise LayerNotFoundError(
        f"the target layer {type(layer).__name__} is not a submodule of {type(model).__name__}; "
        "pass a module taken from this model (e.g. `model.layer4[-1]`) or its dotted name."
    )


def resolve_layers(
    model: nn.Module,
    layers: LayerSpec | Sequence[LayerSpec],
    probe_input: torch.Tensor | None = None,
    *,
    grid: tuple[int, int] | None = None,
) -> list[nn.Module]:
    """Turn ``layers`` (a module, a dotted name, ``"auto"`` or a list of them) into modules.

    Every module must belong to ``model``; duplicates are rejected because each target layer
    gives one map. ``"auto"`` needs ``probe_input`` (see :func:`find_auto_layer`; ``grid``
    is the user's patch grid for token layers).
    """
    specs: Iterable[LayerSpec] = [layers] if isinstance(layers, nn.Module | str) else layers
    resolved: list[nn.Module] = []
    for spec in specs:
        if isinstance(spec, str) and spec == "auto":
            if probe_input is None:
                raise ValueError("target layer 'auto' needs an input to probe the model with")
            module = find_auto_layer(model, probe_input, grid=grid)
        elif isinstance(spec, str):
            module = layer_by_name(model, spec)
        elif isinstance(spec, nn.Module):
            layer_name(model, spec)  # raises if not a submodule
            module = spec
        else:
            raise TypeError(
                "target layers must be nn.Module, dotted names or 'auto', got "
                f"{type(spec).__name__}"
            )
        if any(module is seen for seen in resolved):
            raise ValueError(f"target layer {layer_name(model, module)!r} is listed twice")
        resolved.append(module)
    if not resolved:
        raise ValueError("`target_layers` is empty; name at least one layer, or use 'auto'")
    return resolved


def find_auto_layer(
    model: nn.Module, probe_input: torch.Tensor, *, grid: tuple[int, int] | None = None
) -> nn.Module:
    """The last spatial layer whose output the top-class score depends on across its grid.

    Runs one forward and backward pass on ``probe_input`` (the model is left as found:
    hooks removed, training flags restored, ``param.grad`` untouched). Token outputs are
    read with the model's token layout for ``probe_input``'s size (``grid`` overrides the
    patch grid), so only patch tokens count — never the class or register tokens.
    """
    layout = token_layout(model, tuple(probe_input.shape[2:]), grid)

    finished: list[tuple[str, nn.Module, torch.Tensor]] = []
    calls: dict[int, int] = {}

    def record(name: str):
        def hook(module: nn.Module, _inputs: object, output: object) -> None:
            calls[id(module)] = calls.get(id(module), 0) + 1
            if isinstance(output, torch.Tensor) and output.requires_grad:
                finished.append((name, module, output))

        return hook

    named = [(n, m) for n, m in model.named_modules() if n]
    with borrowed(model) as handles, torch.enable_grad():
        for name, module in named:
            handles.append(module.register_forward_hook(record(name)))
        probe = probe_input.detach().clone().requires_grad_(True)
        scores = as_score_tensor(model(probe))
    dense = is_dense(scores)
    candidates, unread = [], []  # unread: token layers without a patch grid, in order
    order = {name: position for position, (name, _, _) in enumerate(finished)}
    for name, module, output in finished:
        if calls[id(module)] != 1 or output.dim() not in (3, 4, 5):
            continue
        try:
            spatial = default_reshape(module, output.detach(), layout)
        except Exception:  # not a spatial layout: skip it
            unread += [name] if output.dim() == 3 else []
            continue
        if spatial[0, 0].numel() <= 1 or (dense and spatial.shape[1] == scores.shape[1]):
            continue
        candidates.append((name, module, output))
    if not candidates:
        raise LayerNotFoundError(
            f"'auto' found no layer of {type(model).__name__} with a spatial output; "
            f"name the target layer explicitly (e.g. 'layer4'); {_VIT_HINT}."
        )
    # Transformers: keep token layers of the model's width (drops qkv and MLP expansions).
    widths = [output.shape[-1] for _, _, output in candidates if output.dim() == 3]
    if widths:
        width = max(set(widths), key=widths.count)
        candidates = [c for c in candidates if c[2].dim() != 3 or c[2].shape[-1] == width]
    top = scores.flatten(2).mean(-1) if dense else scores.flatten(1)
    score = top.max(dim=1).values.sum()
    grads = torch.autograd.grad(score, [c[2] for c in candidates], allow_unused=True)
    for (name, module, _output), grad in reversed(list(zip(candidates, grads, strict=True))):
        if grad is None:
            continue
        reach = default_reshape(module, grad, layout).abs().sum(1).flatten(1)
        if int((reach[0] > 0).sum()) > 1:
            logger.info("target layer 'auto' resolved to %r (%s)", name, type(module).__name__)
            if unread and order[unread[-1]] > order[name]:  # a later token layer was unread
                logger.warning(
                    "target layer 'auto' skipped token layers whose patch grid it could not "
                    "infer (%s, ...); %s",
                    unread[-1],
                    _VIT_HINT,
                )
            return module
    raise LayerNotFoundError(
        f"'auto' found no spatial layer of {type(model).__name__} that the score depends on; "
        f"name the target layer explicitly; {_VIT_HINT}."
    )
