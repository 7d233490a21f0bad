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

**How the model is re-run.** No module of the model is swapped; ``rerun="auto"`` takes the
first of four ways that works (each checks its first chunk against an unablated copy):

1. *linear*, where a convolution reads the layer: every module reading the layer's output
   must start a chain of linear modules (convolution, eval-mode batch norm, average pooling;
   DeepLabV3+'s ASPP branches, torchvision's FCN / DeepLabV3 heads). The chains run once on
   the intact output and each copy subtracts what its zeroed channel contributes at the
   chains' ends (:mod:`camlens.methods.linear_suffix`): a convolution of one channel instead
   of all. The rest runs per copy under ``torch.vmap``; the chains and the modules reading
   nothing computed from the layer (encoder, skip branches) run in an image's first chunk. Anything
   else reading the layer's output (a module, a functional use in some ``forward``: every
   torch operation of one watched pass is seen) turns it off, and the first chunk also
   re-runs two ablations the *vmap* way: their score drops must agree.
2. *expand*: the image runs once per chunk at batch 1 and a temporary forward hook on the
   layer returns an expanded batch, copy ``j`` with channel ``k_j`` zeroed. It serves models
   whose later layers use only the layer's output, or add earlier tensors by broadcasting (a
   classifier's head, a ViT block); tried first where no convolution reads the layer, as its
   arithmetic is pytorch-grad-cam's.
3. *vmap*: where the rest of the model also reads earlier features (DeepLabV3+'s decoder),
   the forward pass of one image is vectorised over the ablations; what does not depend on
   the layer is computed once per chunk.
4. *full*: where vmap cannot run the model either (``.item()``, data-dependent branches
   after the layer), whole-model re-runs. ``rerun="full"`` forces this way.

All compute the same scores up to float rounding (batch sizes pick different kernels; the
linear shortcut subtracts instead of convolving zeros; a drop is a small difference of two
scores, so that rounding shows in float32 maps at ~1e-5 of their largest value).

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
import time
from typing import Any

import torch
from torch import nn

from camlens.methods.linear_suffix import LinearSuffix, NoShortcut
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
from camlens.reshape import channel_positions

__all__ = ["ABLATION_EPSILON", "ablationcam"]

logger = logging.getLogger(__name__)

#: The smallest score magnitude the drop is divided by (see the module docstring).
ABLATION_EPSILON = 1e-7

#: Relative tolerance for the unablated control copy of the fast path.
_CONTROL_RTOL = 1e-3

#: How many ablations of the first chunk the exact vectorised re-run repeats before the
#: linear shortcut is trusted, and how closely their score drops must agree (relative to
#: the drop, plus a share of the score for float rounding).
_VERIFY_COUNT = 2
_VERIFY_RTOL = 1e-2
_VERIFY_SCORE_RTOL = 1e-5


class _Fallback(Exception):
    """A way of re-running cannot serve this layer (the reason is the message)."""


class _Later(_Fallback):
    """The linear shortcut works but saves nothing over the expanded batch (no convolution
    reads the layer: a classifier's pooling), which keeps its bit-for-bit parity with
    pytorch-grad-cam; it is tried after that one."""


#: The ways of re-running, fastest first (see the module docstring).
_EXPAND, _LINEAR, _VMAP, _FULL = "expand", "linear", "vmap", "full"
_AUTO = (_LINEAR, _EXPAND, _VMAP, _FULL)


class _LayerAblation:
    """Zeroes chosen channels of one target layer's output, one channel per copy."""

    def __init__(self, context: RunContext, index: int, run: Rerun) -> None:
        self.context = context
        self.index = index
        self.layer = context.layers[index]
        self.name = context.layer_names[index]
        self.channels_total = int(context.activations[index].shape[1])
        self.run = run
        self.positions: torch.Tensor | None = None
        self.numel = 0
        self.plan: tuple[torch.Tensor, int, str] | None = None
        self.keep: torch.Tensor | None = None  # vmap: this copy's 0/1 mask, flat
        self.suffix: LinearSuffix | None = None  # linear: the chains after the layer
        self.subtract: list[torch.Tensor] | None = None  # linear: this copy's differences
        self.verified = False  # linear: the shortcut agreed with exact re-runs
        self.seconds = 0.0  # the last chunk's re-runs, without its control copy
        # linear: outputs of the modules that no ablation changes, for image memo_image
        self.memo: dict[nn.Module, Any] = {}
        self.memo_image = -1
        self.replay_checked = False
        self.steady = True  # the last chunk's time is typical of the next ones
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
        if mode == _LINEAR:
            return None  # the chains' ends subtract each copy's difference
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
        inputs = self.context.inputs[image : image + 1]
        # the first chunk that replays memoised modules checks them with a control copy
        replaying = mode == _LINEAR and self.memo_image == image and bool(self.memo)
        control = control or (replaying and not self.replay_checked)
        offset = int(control)
        count = len(channels) + offset
        self.plan = (channels, offset, mode)
        self.steady = True
        started = time.perf_counter()
        try:
            if mode == _LINEAR:
                self._suffix(inputs)  # found once, before the chunk is timed
                started = time.perf_counter()
                scores = self._linear(inputs, image, channels, offset)
            elif mode == _VMAP:
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
            self.subtract = None
        seconds = (time.perf_counter() - started) * len(channels) / count
        steady = self.steady  # (the exact check below runs chunks of its own)
        if control:
            expected = self.context.scores[image].to(scores.dtype)
            scale = float(expected.abs().max()) + 1.0
            if not torch.allclose(scores[0], expected, rtol=_CONTROL_RTOL, atol=1e-6 * scale):
                raise _Fallback(
                    f"an unablated copy scored {scores[0].tolist()}, not {expected.tolist()}"
                )
            scores = scores[1:]
        if mode == _LINEAR and not self.verified:
            self._verify(image, channels, scores)
        if replaying and control:
            self.replay_checked = True
        self.seconds, self.steady = seconds, steady
        return scores

    def _suffix(self, inputs: torch.Tensor) -> LinearSuffix:
        """The linear chains after the layer, found on the first call."""
        if self.suffix is not None:
            return self.suffix  # (a second try after _Later goes ahead)
        model = self.context.model
        try:
            with torch.inference_mode():
                suffix = LinearSuffix.find(model, lambda: model(inputs), self.layer)
        except NoShortcut as reason:
            raise _Fallback(str(reason)) from reason
        except Exception as error:
            raise _Fallback(f"{type(error).__name__}: {error}") from error
        if self.positions is None:
            raise _Fallback("the layer did not run")
        natural = torch.arange(self.numel, device=self.positions.device)
        if not torch.equal(self.positions.flatten(), natural):
            raise _Fallback("the reshape rearranges the layer's output")
        for number, chain in enumerate(suffix.chains):
            self.run.hook(chain.end, self._end_hook(number))
        self.suffix = suffix
        if not suffix.convolves:
            raise _Later("no convolution reads the layer")
        names = {module: name for name, module in model.named_modules()}
        logger.debug("AblationCAM at %r: linear chains %s", self.name, suffix.describe(names))
        return suffix

    def _end_hook(self, number: int) -> Any:
        def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> Any:
            if self.subtract is None:
                return None
            return output - self.subtract[number]

        return hook

    def _linear(
        self, inputs: torch.Tensor, image: int, channels: torch.Tensor, offset: int
    ) -> torch.Tensor:
        suffix = self._suffix(inputs)
        activation = self.context.activations[self.index][image : image + 1]
        with torch.inference_mode():
            packed = suffix.deltas(activation, channels, offset)
        model, score_tensor = self.context.model, self.context.score_tensor

        def one(row: torch.Tensor) -> torch.Tensor:
            self.subtract = suffix.split(row)
            return score_tensor(model(inputs))

        memo = self.memo if self.memo_image == image else {}
        self.steady = bool(memo) or not suffix.memoisable  # else this chunk fills the memo
        with suffix.memoised(memo):
            scores = self.run.vmapped_scores(one, packed, image, fallible=True)
        self.memo, self.memo_image = memo, image
        return scores

    def _verify(self, image: int, channels: torch.Tensor, scores: torch.Tensor) -> None:
        """Re-run the first ablations of a chunk exactly; a disagreement means something
        reads the layer's output that the chains do not account for."""
        count = min(_VERIFY_COUNT, len(channels))
        exact = self.scores(image, channels[:count], _VMAP, control=False)
        baseline = self.context.scores[image].to(exact.dtype)
        drop_exact = baseline - exact
        drop_short = baseline - scores[:count].to(exact.dtype)
        tolerance = _VERIFY_RTOL * drop_exact.abs() + _VERIFY_SCORE_RTOL * (baseline.abs() + 1)
        if not bool(((drop_short - drop_exact).abs() <= tolerance).all()):
            raise _Fallback(
                f"the shortcut's score drops {drop_short.flatten().tolist()} differ from the "
                f"exact {drop_exact.flatten().tolist()}"
            )
        self.verified = True

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
        logger.info("AblationCAM: target score(s) below %g in magnitude; their drops are "
                    "divided by %g (the maps' shapes are unaffected)", ABLATION_EPSILON,
                    ABLATION_EPSILON)  # fmt: skip
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
            modes = list(_AUTO) if options["rerun"] == "auto" else [_FULL]
            control = modes[0] != _FULL
            for image in range(batch):
                start = 0
                while start < order.shape[1]:
                    channels = order[image, start : start + sizes[modes[0]]]
                    try:
                        ablated = ablation.scores(image, channels, modes[0], control)
                    except _Later as reason:
                        logger.debug("AblationCAM at %r: %s first (%s)", ablation.name,
                                     _DESCRIPTIONS[modes[1]], reason)  # fmt: skip
                        modes[:2] = modes[1::-1]
                        continue
                    except _Fallback as reason:
                        logger.info("AblationCAM at layer %r: %s did not work (%s); using %s "
                                    "(same maps)", ablation.name, _DESCRIPTIONS[modes[0]],
                                    reason, _DESCRIPTIONS[modes[1]])  # fmt: skip
                        modes.pop(0)
                        control = modes[0] != _FULL
                        continue
                    control = False
                    baseline = scores[image].to(drops.dtype)
                    drops[image][:, channels] = baseline[:, None] - ablated.to(drops.dtype).T
                    run.advance(len(channels), ablation.seconds, steady=ablation.steady)
                    start += len(channels)
            weights = drops / denominators.to(drops.dtype)[:, :, None]
            maps.append(weighted_maps(weights, activations, context.eigen_smooth))
    return maps


_DESCRIPTIONS = {
    _EXPAND: "an expanded batch after the layer",
    _LINEAR: "torch.vmap with the linear modules after the layer run once",
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
        return dict.fromkeys((_EXPAND, _LINEAR, _VMAP, _FULL), size)
    copy = activations[0].numel() * activations.element_size()
    after = WORKING_MEMORY_FACTOR * footprint.after[index] + copy
    whole = WORKING_MEMORY_FACTOR * footprint.whole + copy
    whole += inputs[0].numel() * inputs.element_size()
    return {
        _EXPAND: chunk_size(options, after),
        _LINEAR: chunk_size(options, after + copy),  # + the copy's differences
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
