"""The attention probabilities of a vision transformer, captured for one call.

Machinery of the attention methods (:mod:`camlens.methods.attention`); not a method module
(its name starts with ``_``, so :mod:`camlens.methods` does not import it as one).

**Which modules.** By default every module with a ``fused_attn`` attribute — timm's
``Attention`` (and the attention of timm's ViT, DeiT, EVA-style blocks); the option
``attention_modules`` takes a glob over dotted module names instead (``"blocks.*.attn"``).
Each must have an ``attn_drop`` submodule that receives the attention probabilities, as
timm's explicit path does::

    attn = (q @ k.transpose(-2, -1)) * scale
    attn = attn.softmax(dim=-1)
    attn = self.attn_drop(attn)      # ← captured here, (B, heads, T, T), rows sum to 1
    x = attn @ v

With ``fused_attn = True`` timm calls ``F.scaled_dot_product_attention`` and the probabilities
never exist, so ``fused_attn`` is set to ``False`` for the call and restored afterwards.

**Capture.** A forward hook on ``attn_drop`` records its output: in eval mode (the model is
borrowed in eval mode) dropout is the identity, so that tensor is the softmax output and the
very tensor multiplied with ``v`` — part of the graph, so ``torch.autograd.grad`` of a score
with respect to it is ``∂score/∂A``. For gradients the input enters the graph as a fresh leaf
that requires gradients (so frozen models work too); gradients go to the captured tensors
only, never to parameters. The block holding each attention module (its parent module) can
have its output recorded as well (LeGrad's intermediate tokens).

**Restored on every exit path**, exceptions included: hooks and train/eval flags by
:func:`camlens.capture.borrowed`, ``fused_attn`` flags here (an attribute the module did not
hold in its own ``__dict__`` is deleted again rather than left set).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camlens.capture import borrowed
from camlens.errors import InputShapeError, LayerNeverRanError, LayerNotFoundError
from camlens.tokens import token_layout

__all__ = [
    "PROBABILITIES_CHILD",
    "AttentionRun",
    "attention_forward",
    "find_attention_modules",
    "grid_maps",
    "patch_tokens",
    "query_relevance",
]

#: The submodule of an attention module that receives the softmax probabilities (timm).
PROBABILITIES_CHILD = "attn_drop"

#: timm ``global_pool`` values that pool the patch tokens instead of reading a class token.
_POOLED = frozenset({"avg", "avgmax", "max"})

_HOW = (
    "these methods need a ViT with timm-style attention modules: a `fused_attn` flag and an "
    f"`{PROBABILITIES_CHILD}` submodule that receives the softmax probabilities "
    "(B, heads, T, T); name other modules with the option attention_modules='blocks.*.attn'"
)


def find_attention_modules(model: nn.Module, pattern: str | None) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the attention modules, in registration order.

    ``pattern`` (a glob over dotted names) selects them; ``None``: the modules with a
    ``fused_attn`` attribute. Raises :class:`~camlens.errors.LayerNotFoundError` when none
    is found or one has no ``attn_drop`` submodule.
    """
    if pattern is None:
        found = [(n, m) for n, m in model.named_modules() if hasattr(m, "fused_attn")]
        where = "no module of the model has a `fused_attn` flag"
    else:
        found = [(n, m) for n, m in model.named_modules() if n and fnmatch.fnmatchcase(n, pattern)]
        where = f"attention_modules={pattern!r} matches no module of the model"
    if not found:
        raise LayerNotFoundError(
            f"no attention modules found in {type(model).__name__} ({where}); {_HOW}."
        )
    for name, module in found:
        if not isinstance(getattr(module, PROBABILITIES_CHILD, None), nn.Module):
            raise LayerNotFoundError(
                f"attention module {name!r} ({type(module).__name__}) has no "
                f"`{PROBABILITIES_CHILD}` submodule; {_HOW}."
            )
    return found


@dataclass
class AttentionRun:
    """What one forward pass recorded: the model output, and per attention module (in the
    order they ran) its probabilities ``(B, heads, T, T)`` and, when asked for, the output
    of the block holding it ``(B, T, C)``."""

    names: list[str]
    output: Any = None
    _probabilities: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    _blocks: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    _order: list[int] = field(default_factory=list)

    def _ran(self, store: dict[int, list[torch.Tensor]], what: str) -> list[torch.Tensor]:
        for index, name in enumerate(self.names):
            count = len(store.get(index, []))
            if count != 1:
                raise LayerNeverRanError(
                    f"{what} of attention module {name!r} was recorded {count} times in one "
                    "forward pass (expected once); the attention methods need each attention "
                    "module called once per forward pass."
                )
        return [store[index][0] for index in self._order]

    @property
    def probabilities(self) -> list[torch.Tensor]:
        """``(B, heads, T, T)`` per attention module, first block first."""
        return self._ran(self._probabilities, f"the `{PROBABILITIES_CHILD}` input")

    @property
    def block_outputs(self) -> list[torch.Tensor]:
        """``(B, T, C)``: the output of the block (parent module) of each attention module."""
        return self._ran(self._blocks, "the block output")

    def _probability_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: object, output: object) -> None:
            square = isinstance(output, torch.Tensor) and output.dim() == 4
            if not square or output.shape[-1] != output.shape[-2]:  # type: ignore[union-attr]
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else output
                raise LayerNeverRanError(
                    f"`{PROBABILITIES_CHILD}` of attention module {self.names[index]!r} gave "
                    f"{shape!r}, not attention probabilities (B, heads, T, T); {_HOW}."
                )
            if index not in self._probabilities:
                self._order.append(index)
            self._probabilities.setdefault(index, []).append(output)

        return hook

    def _block_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: object, output: object) -> None:
            if not isinstance(output, torch.Tensor) or output.dim() != 3:
                raise LayerNeverRanError(
                    f"the block holding attention module {self.names[index]!r} did not return "
                    "tokens (B, T, C)."
                )
            self._blocks.setdefault(index, []).append(output)

        return hook


def _parent(model: nn.Module, name: str) -> nn.Module:
    if not name:
        raise LayerNotFoundError("the model itself is the attention module: it has no block")
    return model.get_submodule(name.rpartition(".")[0])


@contextmanager
def attention_forward(
    model: nn.Module,
    inputs: torch.Tensor,
    pattern: str | None,
    *,
    gradients: bool,
    blocks: bool = False,
) -> Iterator[AttentionRun]:
    """Borrow ``model``, run ``inputs`` with the attention probabilities recorded, and hand
    the model back unchanged (hooks, train/eval and ``fused_attn`` flags) on exit.

    With ``gradients`` the forward pass records a graph (from a leaf copy of the input) in
    which the probabilities can be differentiated against; the caller takes its gradients
    inside the ``with`` block. ``blocks`` also records each attention module's block output.
    """
    modules = find_attention_modules(model, pattern)
    names = [name for name, _ in modules]
    flags = [
        (module, module.fused_attn, "fused_attn" in vars(module))
        for _, module in modules
        if hasattr(module, "fused_attn")
    ]
    with borrowed(model) as handles:
        try:
            for module, _, _ in flags:
                module.fused_attn = False
            run = AttentionRun(names)
            for index, (name, module) in enumerate(modules):
                child = getattr(module, PROBABILITIES_CHILD)
                handles.append(child.register_forward_hook(run._probability_hook(index)))
                if blocks:
                    block = _parent(model, name)
                    handles.append(block.register_forward_hook(run._block_hook(index)))
            if gradients:
                with torch.enable_grad():
                    run.output = model(inputs.detach().clone().requires_grad_(True))
                    yield run
            else:
                with torch.no_grad():
                    run.output = model(inputs)
                yield run
        finally:
            for module, flag, own in flags:
                if own:
                    module.fused_attn = flag
                else:
                    delattr(module, "fused_attn")


def patch_tokens(
    model: nn.Module, inputs: torch.Tensor, tokens: int
) -> tuple[int, tuple[int, int]]:
    """``(prefix tokens, (h, w))`` of ``tokens`` attention tokens for ``inputs``, read from
    the model (:func:`camlens.tokens.token_layout`)."""
    layout = token_layout(model, tuple(inputs.shape[2:]))
    if layout is None:
        raise InputShapeError(
            f"cannot read the patch grid of {type(model).__name__} for inputs of size "
            f"{tuple(inputs.shape[2:])}: the attention methods need a ViT that declares its "
            "token layout (timm's patch_embed.patch_size, a Hugging Face config.patch_size)."
        )
    prefix = layout.prefix_tokens
    if prefix is None:
        prefix = tokens - layout.patches
    if prefix < 0 or prefix + layout.patches != tokens:
        raise InputShapeError(
            f"the attention maps have {tokens} tokens, which does not fit {layout.describe()}."
        )
    return prefix, layout.grid


def _global_pool(model: nn.Module) -> str | None:
    for module in model.modules():
        pool = getattr(module, "global_pool", None)
        if isinstance(pool, str):
            return pool
    return None


def query_relevance(
    model: nn.Module, relevance: torch.Tensor, prefix: int, query: str
) -> torch.Tensor:
    """``(B, T, T)`` token-to-token relevance → ``(B, h·w)`` over the patch tokens, read off
    the row(s) of the token(s) the output depends on.

    ``query="class"``: the class token's row (token 0). ``"patches"``: the mean of the patch
    tokens' rows (mean-pooling heads). ``"auto"``: the patch rows when the model has no
    prefix token or its ``global_pool`` (timm) is ``"avg"``, ``"avgmax"`` or ``"max"``, else
    the class token's row.
    """
    if query == "auto":
        query = "patches" if prefix == 0 or _global_pool(model) in _POOLED else "class"
    if query == "class":
        if prefix == 0:
            raise InputShapeError("query='class' needs a class token, and the model has none")
        rows = relevance[:, 0]
    else:
        rows = relevance[:, prefix:].mean(dim=1)
    return rows[:, prefix:]


def grid_maps(maps: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
    """``K`` maps ``(B, h·w)`` → ``(B, K, h, w)``."""
    return torch.stack(list(maps), dim=1).reshape(maps[0].shape[0], len(maps), *grid)
