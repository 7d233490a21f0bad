"""AblationCAM: channel weights from the drop of the target score when a channel is zeroed.

Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization", WACV 2020, eq. 2–3: with ``y`` the target score and ``y_k`` the
score when channel ``k`` of the target layer is set to zero,
``w_k = (y − y_k) / y`` and the map is ``Σ_k w_k A_k`` (signed; the shared pipeline applies
ReLU and normalisation).

**The division by the score.** The paper assumes a positive class score. A segmentation sum
or a logit can be negative or close to zero, so camlens divides by ``max(|y|, 1e-7)``
instead of ``y``. Dividing by a positive number per image only rescales that image's map,
so ``w_k > 0`` always means "zeroing channel ``k`` lowers the score" (the channel supports
the target), whatever the sign of ``y``; dividing by a negative ``y`` (as pytorch-grad-cam
does) would turn every weight's sign and invert the map. A score whose magnitude is below
``1e-7`` (e.g. an empty mask) is divided by ``1e-7``: the raw map is then the plain score
drop ×10⁷, finite, and the final [0, 1] map is unchanged by the scaling.

**How the model is re-run.** Ablated copies are produced by a temporary forward hook on the
target layer that *returns* a new tensor; no module of the model is swapped or modified.
Three ways, fastest first; ``rerun="auto"`` takes the first that works for the model:

1. *expand*: the image is run once per chunk of ablations at batch 1 and the hook returns an
   expanded batch — copy ``j`` with channel ``k_j`` zeroed — so the layers before the target
   run once per chunk, not once per ablation. This serves models whose later layers use only
   the layer's output, or add earlier tensors by broadcasting (a classifier's head, a ViT
   block's residual sum).
2. *vmap*: where the rest of the model also reads earlier features (skip connections, as in
   DeepLabV3+'s decoder), the expanded batch meets a batch-1 tensor: a shape error, a wrong
   number of outputs, or a wrong score of an unablated control copy that the first chunk
   carries. Then the forward pass of one image is vectorised over the ablation masks with
   ``torch.vmap``: what does not depend on the layer (its prefix, the skip features) is
   still computed once per chunk, only what depends on it is computed per copy.
3. *full*: where vmap cannot run the model either (e.g. ``.item()`` or data-dependent
   branches after the layer), ``n`` copies of the image are run through the whole model,
   the hook zeroing channel ``k_j`` in copy ``j``. ``rerun="full"`` forces this way.

All three feed the same zeroed activations to the same layers: the maps agree to floating
point rounding (different batch sizes may pick different kernels).

Option ``ratio`` (default 1.0: every channel) ablates only that share of the channels, those
with the largest mean absolute activation; the other channels get weight 0. pytorch-grad-cam
1.5.7 selects channels differently for its ``ratio_channels_to_ablate``, and it ablates by
writing ``min − 1e7`` instead of 0 when the layer's minimum is not 0; camlens always writes 0,
as in the paper.

For token layers (ViTs) the channel is zeroed at the positions that the reshape maps to the
grid (the patch tokens; a class token keeps its values); ``reshape_transform`` must therefore
only select and rearrange values.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from camlens.errors import InputShapeError
from camlens.methods.perturbation import (
    RERUN_OPTIONS,
    WORKING_MEMORY_FACTOR,
    Footprint,
    ForwardFailed,
    Rerun,
    chunk_size,
    probe_footprint,
    ratio_count,
    reruns,
    select_channels,
    weighted_maps,
)
from camlens.methods.registry import Method, Option, RunContext, register

__all__ = ["ABLATION_EPSILON", "ablationcam", "channel_positions"]

logger = logging.getLogger(__name__)

#: The smallest score magnitude the drop is divided by (see the module docstring).
ABLATION_EPSILON = 1e-7

#: Relative tolerance for the unablated control copy of the fast path.
_CONTROL_RTOL = 1e-3


def channel_positions(
    layer: nn.Module,
    output: torch.Tensor,
    reshape: Any,
    channels: int,
) -> torch.Tensor:
    """``(C, G)``: for each grid channel, the flat positions in one item of the layer's raw
    output that the reshape puts on the grid (found by reshaping a tensor of indices)."""
    numel = output[0].numel()
    index = torch.arange(numel, dtype=torch.float64, device=output.device)
    index = index.reshape(1, *output.shape[1:])
    hint = (
        "AblationCAM zeroes a channel in the layer's own output, so `reshape_transform` must "
        "only select and rearrange values (slicing, reshape, transpose)"
    )
    try:
        grid = reshape(layer, index)
    except Exception as error:
        raise InputShapeError(f"{hint}; it failed on a float64 tensor: {error}") from error
    if not isinstance(grid, torch.Tensor) or grid.dim() < 3 or grid.shape[:2] != (1, channels):
        shape = tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__
        raise InputShapeError(f"{hint}; got {shape} for a single item, not (1, {channels}, ...)")
    flat = grid[0].reshape(channels, -1)
    positions = flat.round().long()
    valid = (
        grid.dtype == torch.float64
        and torch.equal(positions.to(flat.dtype), flat)
        and int(positions.min()) >= 0
        and int(positions.max()) < numel
        and torch.unique(positions).numel() == positions.numel()
    )
    if not valid:
        raise InputShapeError(f"{hint}; it computed new values instead.")
    return positions


class _Fallback(Exception):
    """A way of re-running cannot serve this layer (the reason is the message)."""


#: The ways of re-running, fastest first (see the module docstring).
_EXPAND, _VMAP, _FULL = "expand", "vmap", "full"


class _LayerAblation:
    """Zeroes chosen channels of one target layer's output, one channel per copy."""

    def __init__(self, context: RunContext, index: int, run: Rerun) -> None:
        self.context = context
        self.layer = context.layers[index]
        self.name = context.layer_names[index]
        self.channels_total = int(context.activations[index].shape[1])
        self.run = run
        self.positions: torch.Tensor | None = None
        self.numel = 0
        self.plan: tuple[torch.Tensor, int, str] | None = None
        self.keep: torch.Tensor | None = None  # vmap: this copy's 0/1 mask, flat
        run.hook(self.layer, self._hook)

    def _hook(self, module: nn.Module, _args: object, output: Any) -> torch.Tensor | None:
        if self.plan is None:
            return None
        channels, offset, mode = self.plan
        if self.positions is None:
            reshape = self.context.reshape
            assert reshape is not None
            self.positions = channel_positions(module, output, reshape, self.channels_total)
            self.numel = output[0].numel()
        if mode == _VMAP:
            assert self.keep is not None
            return output * self.keep.to(output.dtype).view(output.shape)
        count = len(channels) + offset
        if mode == _EXPAND:
            if output.shape[0] != 1:
                raise _Fallback(f"the layer ran on a batch of {output.shape[0]}, not 1")
            copies = output.expand(count, *output.shape[1:]).clone()
        else:
            copies = output.clone(memory_format=torch.contiguous_format)
        flat = copies.view(count, -1)
        flat[offset:].scatter_(1, self.positions[channels], 0)
        return copies

    def scores(self, image: int, channels: torch.Tensor, mode: str, control: bool) -> Any:
        """``(n, K)`` scores with channel ``channels[j]`` zeroed in copy ``j``; with
        ``control``, an unablated copy goes first and must reproduce the original scores."""
        offset = int(control)
        count = len(channels) + offset
        inputs = self.context.inputs[image : image + 1]
        self.plan = (channels, offset, mode)
        try:
            if mode == _VMAP:
                scores = self._vmapped(inputs, image, channels, offset)
            else:
                if mode == _FULL:
                    inputs = inputs.repeat(count, *[1] * (inputs.dim() - 1))
                scores = self.run.scores(inputs, image, count, fallible=mode != _FULL)
        except ForwardFailed as error:
            raise _Fallback(str(error)) from error
        finally:
            self.plan = None
            self.keep = None
        if control:
            expected = self.context.scores[image].to(scores.dtype)
            scale = float(expected.abs().max()) + 1.0
            if not torch.allclose(scores[0], expected, rtol=_CONTROL_RTOL, atol=1e-6 * scale):
                raise _Fallback(
                    f"an unablated copy scored {scores[0].tolist()}, not {expected.tolist()}"
                )
            scores = scores[1:]
        return scores

    def _vmapped(
        self, inputs: torch.Tensor, image: int, channels: torch.Tensor, offset: int
    ) -> torch.Tensor:
        if self.positions is None:
            raise ForwardFailed("the layer's output layout is not known yet")
        keeps = torch.ones(len(channels) + offset, self.numel, device=inputs.device)
        keeps[offset:].scatter_(1, self.positions[channels], 0)
        model, score_tensor = self.context.model, self.context.score_tensor

        def one(keep: torch.Tensor) -> torch.Tensor:
            self.keep = keep
            return score_tensor(model(inputs))

        return self.run.vmapped_scores(one, keeps, image, fallible=True)


def ablationcam(context: RunContext) -> list[torch.Tensor]:
    """AblationCAM maps ``(B, K, *grid)``, one per target layer (see the module docstring)."""
    options = context.options
    inputs = context.inputs
    batch = inputs.shape[0]
    orders = [
        select_channels(a, ratio_count(options["ratio"], a.shape[1])) for a in context.activations
    ]
    footprint = None
    if options["batch_size"] is None:
        footprint = probe_footprint(context.model, inputs[:1], context.layers)
    scores = context.scores
    denominators = scores.abs().clamp_min(ABLATION_EPSILON)
    if bool((scores.abs() < ABLATION_EPSILON).any()):
        logger.info(
            "AblationCAM: target score(s) below %g in magnitude; their drops are divided by %g "
            "(the maps' shapes are unaffected)",
            ABLATION_EPSILON,
            ABLATION_EPSILON,
        )
    maps = []
    total = batch * sum(int(order.shape[1]) for order in orders)
    with reruns(context, description="AblationCAM", total=total) as run:
        for index, (activations, order) in enumerate(zip(context.activations, orders, strict=True)):
            sizes = _chunk_sizes(options, footprint, index, activations, inputs)
            ablation = _LayerAblation(context, index, run)
            drops = torch.zeros(
                batch,
                context.num_targets,
                activations.shape[1],
                dtype=activations.dtype,
                device=activations.device,
            )
            modes = [_EXPAND, _VMAP, _FULL] if options["rerun"] == "auto" else [_FULL]
            control = modes[0] != _FULL
            for image in range(batch):
                start = 0
                while start < order.shape[1]:
                    channels = order[image, start : start + sizes[modes[0]]]
                    try:
                        ablated = ablation.scores(image, channels, modes[0], control)
                    except _Fallback as reason:
                        logger.info(
                            "AblationCAM at layer %r: %s did not work (%s); using %s (same maps)",
                            ablation.name,
                            _DESCRIPTIONS[modes[0]],
                            reason,
                            _DESCRIPTIONS[modes[1]],
                        )
                        modes.pop(0)
                        control = modes[0] != _FULL
                        continue
                    control = False
                    baseline = scores[image].to(drops.dtype)
                    drops[image][:, channels] = baseline[:, None] - ablated.to(drops.dtype).T
                    run.advance(len(channels))
                    start += len(channels)
            weights = drops / denominators.to(drops.dtype)[:, :, None]
            maps.append(weighted_maps(weights, activations, context.eigen_smooth))
    return maps


_DESCRIPTIONS = {
    _EXPAND: "an expanded batch after the layer",
    _VMAP: "torch.vmap over the ablations",
    _FULL: "whole-model re-runs",
}


def _chunk_sizes(
    options: dict[str, Any],
    footprint: Footprint | None,
    index: int,
    activations: torch.Tensor,
    inputs: torch.Tensor,
) -> dict[str, int]:
    """Copies per forward pass for each way of re-running."""
    if footprint is None:
        size = chunk_size(options, 0)
        return dict.fromkeys((_EXPAND, _VMAP, _FULL), size)
    copy = activations[0].numel() * activations.element_size()
    after = WORKING_MEMORY_FACTOR * footprint.after[index] + copy
    whole = WORKING_MEMORY_FACTOR * footprint.whole + copy
    whole += inputs[0].numel() * inputs.element_size()
    return {
        _EXPAND: chunk_size(options, after),
        _VMAP: chunk_size(options, after + copy),  # + the copy's 0/1 mask
        _FULL: chunk_size(options, whole),
    }


register(
    Method(
        name="ablationcam",
        runner=ablationcam,
        options=(
            *RERUN_OPTIONS,
            Option(
                name="ratio",
                kind=float,
                default=1.0,
                minimum=0,
                exclusive_minimum=True,
                maximum=1,
                help="ablate only this share of the strongest channels (faster, not exact)",
            ),
            Option(
                name="rerun",
                kind=str,
                default="auto",
                choices=("auto", "full"),
                help="auto: re-run only what follows the layer where possible; full: always "
                "the whole model (same maps)",
            ),
        ),
        needs_gradients=False,
        label="Ablation-CAM",
        class_name="AblationCAM",
        reference="Desai & Ramaswamy, WACV 2020",
    )
)
