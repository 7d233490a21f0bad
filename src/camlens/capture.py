"""Borrow the user's model for one call and capture target-layer activations.

Two guarantees live here and nowhere else:

* :func:`borrowed` hands the model back exactly as found — every hook removed and every
  submodule's train/eval flag restored — on every exit path, exceptions included. camlens
  never touches parameters, ``requires_grad`` or ``param.grad``.
* :class:`ActivationCapture` records each target layer's output during one forward pass in a
  way that lets ``torch.autograd.grad`` stop at the target activations: the forward pass
  runs under ``torch.no_grad()`` up to the first target layer, whose output is re-entered
  into autograd as a fresh leaf. Nothing upstream is recorded, so the backward pass costs
  only the part of the network after the target layer, works for frozen models and inside a
  caller's ``torch.no_grad()``, and never computes parameter gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from camlens.errors import LayerNeverRanError, UnsupportedModeError

__all__ = ["ActivationCapture", "borrowed", "check_grad_mode"]


@contextmanager
def borrowed(model: nn.Module, *, eval_mode: bool = True) -> Iterator[list[RemovableHandle]]:
    """Use ``model`` for one call and give it back untouched.

    Yields a list to which the caller appends hook handles; all of them are removed on exit.
    With ``eval_mode`` the model runs in eval mode (dropout off, batch-norm running stats
    used and not updated) and each submodule's own ``training`` flag is restored afterwards.
    """
    flags = [(module, module.training) for module in model.modules()]
    handles: list[RemovableHandle] = []
    try:
        if eval_mode:
            model.eval()
        yield handles
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.training = flag


def check_grad_mode() -> None:
    """Refuse to run under ``torch.inference_mode``, where no gradient can ever be taken."""
    if torch.is_inference_mode_enabled():
        raise UnsupportedModeError(
            "camlens was called inside `torch.inference_mode()`, where autograd is off for good; "
            "call it outside that block (inside `torch.no_grad()` is fine)."
        )


class ActivationCapture:
    """Record the outputs of ``layers`` during one forward pass.

    Use inside :func:`borrowed` and run the forward pass under ``torch.no_grad()``. With
    ``track_gradients`` the first target layer to finish turns gradient recording on and
    hands downstream a clone of a fresh leaf, so ``activations`` can be differentiated
    against; later target layers stay in that graph, giving total derivatives when several
    layers are explained at once. The recorded tensors are never modified in place by the
    model, because downstream modules receive clones.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[nn.Module],
        names: Sequence[str],
        handles: list[RemovableHandle],
        *,
        track_gradients: bool,
    ) -> None:
        self.model = model
        self.layers = list(layers)
        self.names = list(names)
        self.track_gradients = track_gradients
        self.outputs: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(self._hook(index)))

    def _hook(self, index: int) -> Callable[..., object]:
        def hook(_module: nn.Module, _inputs: object, output: object) -> object:
            if (
                isinstance(output, Mapping)
                and output
                and all(isinstance(value, torch.Tensor) for value in output.values())
            ):
                # a dict of feature maps (a detector's FPN): each level is captured like a
                # tensor output; a ``reshape_transform`` makes one grid of them later
                recorded = {key: self._enter(value) for key, value in output.items()}
                self.outputs[index] = recorded  # type: ignore[assignment]
                if not self.track_gradients:
                    return None
                return type(output)((key, value.clone()) for key, value in recorded.items())
            if not isinstance(output, torch.Tensor):
                raise LayerNeverRanError(
                    f"target layer {self.names[index]!r} returned "
                    f"{type(output).__name__}, not a tensor; choose a submodule that returns "
                    "a tensor feature map (or a dict of them, with a `reshape_transform`)."
                )
            self.outputs[index] = self._enter(output)
            return self.outputs[index].clone() if self.track_gradients else None

        return hook

    def _enter(self, output: torch.Tensor) -> torch.Tensor:
        """``output`` as recorded: detached, or (with ``track_gradients``) in the graph —
        the first target layer reached becomes a fresh leaf and turns recording on."""
        if not self.track_gradients:
            return output.detach()
        if not output.requires_grad:
            output = output.detach().requires_grad_(True)
            torch.set_grad_enabled(True)
        return output

    def activations(self) -> list[torch.Tensor]:
        """The recorded outputs, one per target layer (raises if a layer never ran)."""
        missing = [i for i in range(len(self.layers)) if i not in self.outputs]
        if missing:
            names = ", ".join(repr(self.names[i]) for i in missing)
            raise LayerNeverRanError(
                f"target layer(s) {names} did not run during the forward pass of "
                f"{type(self.model).__name__}; pick a layer on the path from input to output "
                "(print(model) lists them)."
            )
        return [self.outputs[i] for i in range(len(self.layers))]
