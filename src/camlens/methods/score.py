"""ScoreCAM: channel weights from the scores of the input masked by each channel.

Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
Networks", CVPR Workshops 2020, §3. For channel ``k`` of the target layer, the activation
map ``A_k`` is upsampled to the input size (bilinear with corner alignment, as
``nn.UpsamplingBilinear2d`` and pytorch-grad-cam; trilinear for volumes) and min-max
normalised to ``H_k`` in [0, 1]; the input masked by it, ``X ⊙ H_k``, is scored by the
target, ``s_k = f(X ⊙ H_k)``; the map is ``Σ_k w_k A_k`` (signed; the shared pipeline
applies ReLU and normalisation).

The weights: the paper weighs ``A_k`` by the target's score on ``X ⊙ H_k`` (its increase
over a baseline), and the authors' released code takes that score as the class softmax of
each masked input's logits. camlens, like pytorch-grad-cam 1.5, which users compare with,
takes ``w = softmax_k(s_k)``, the softmax of the raw target scores *over the channels*;
this works for any target (a segmentation sum has no class softmax) and keeps the maps
identical to pytorch-grad-cam's.

The masked inputs are streamed in chunks sized to a memory budget (see
:mod:`camlens.methods.perturbation`) under ``torch.inference_mode``; never are all channels'
masked inputs held at once. They do not depend on the target, so ``K`` targets of one image
(every class of a segmentation) are scored from one set of masked forward passes.

The loop is :func:`masked_score_maps`, which the Score-CAM variants
(:mod:`camlens.methods.score_family`) share: they score ``copies`` perturbed copies of each
channel's mask and average the scores over the copies before the softmax.

Option ``top_k`` (off by default) masks only the ``top_k`` channels with the largest mean
absolute activation: the softmax runs over those channels and the others get weight 0. It
trades exactness for speed (``top_k`` instead of ``C`` forward passes per image).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from camlens.methods.perturbation import (
    RERUN_OPTIONS,
    WORKING_MEMORY_FACTOR,
    chunk_size,
    probe_footprint,
    reruns,
    select_channels,
    weighted_maps,
)
from camlens.methods.registry import Method, Option, RunContext, register
from camlens.postprocess import min_max

__all__ = ["SCORECAM_EPSILON", "TOP_K", "Perturb", "channel_masks", "masked_score_maps", "scorecam"]

#: Added to each channel's range in the min-max normalisation (pytorch-grad-cam's value), so
#: a constant channel gives an all-zero mask instead of NaN.
SCORECAM_EPSILON = 1e-8

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def channel_masks(activations: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``(n, *grid)`` activation maps → ``(n, *size)`` masks in [0, 1]: upsampled with
    corner alignment, then min-max normalised per map."""
    upsampled = F.interpolate(
        activations.unsqueeze(0), size=size, mode=_MODES[len(size)], align_corners=True
    )[0]
    return min_max(upsampled, SCORECAM_EPSILON)


#: ``(masks, copy) -> masks``: a method's perturbation of one chunk of channel masks
#: ``(n, *size)``, item ``i`` being copy ``copy[i]`` of its channel's mask (the identity for
#: ScoreCAM; SS-CAM adds noise, IS-CAM scales along a path).
Perturb = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def masked_score_maps(
    context: RunContext,
    *,
    description: str,
    copies: int = 1,
    perturb: Perturb | None = None,
) -> list[torch.Tensor]:
    """Maps ``(B, K, *grid)`` weighted by ``softmax_k`` of each channel's masked score, one
    per target layer: the ScoreCAM loop, shared by its variants.

    Each selected channel ``k`` (all, or the ``top_k`` strongest) gives ``copies`` masked
    inputs ``X ⊙ perturb(H_k, i)``, ``i = 0 .. copies - 1``; their target scores are averaged
    over the copies, then softmaxed over the channels. The (channel, copy) pairs are streamed
    in chunks sized by :func:`~camlens.methods.perturbation.chunk_size`.
    """
    options = context.options
    top_k = options["top_k"]
    inputs = context.inputs
    batch, size = inputs.shape[0], tuple(inputs.shape[2:])
    selections = []
    for activations in context.activations:
        channels = activations.shape[1]
        count = channels if top_k is None else min(top_k, channels)
        selections.append(
            select_channels(activations, count)
            if count < channels
            else torch.arange(channels, device=activations.device).expand(batch, channels)
        )
    item = 0
    if options["batch_size"] is None:
        # a masked copy of the input, its mask, and the copy's forward pass
        footprint = probe_footprint(context.model, inputs[:1])
        perturbed = (inputs[0].numel() + inputs[0, 0].numel()) * inputs.element_size()
        item = WORKING_MEMORY_FACTOR * footprint.whole + perturbed
    chunk = chunk_size(options, item)
    total = batch * copies * sum(int(s.shape[1]) for s in selections)
    maps = []
    with reruns(context, description=description, total=total) as run:
        for activations, selected in zip(context.activations, selections, strict=True):
            weights = torch.zeros(
                batch,
                context.num_targets,
                activations.shape[1],
                dtype=activations.dtype,
                device=activations.device,
            )
            for image in range(batch):
                scores = []
                pairs = torch.arange(selected.shape[1] * copies, device=selected.device)
                for pair in pairs.split(chunk):
                    channels = selected[image][pair // copies]  # pair = channel · copies + copy
                    with torch.inference_mode():
                        masks = channel_masks(activations[image, channels], size)
                        if perturb is not None:
                            masks = perturb(masks, pair % copies)
                        masked = inputs[image : image + 1] * masks.unsqueeze(1).to(inputs.dtype)
                    scores.append(run.scores(masked, image, len(channels)))
                    run.advance(len(channels))
                values = torch.cat(scores).to(weights.dtype)  # (S · copies, K)
                if copies > 1:
                    values = values.reshape(-1, copies, values.shape[1]).mean(dim=1)
                softmax = torch.softmax(values, dim=0)  # (S, K)
                weights[image][:, selected[image]] = softmax.T
            maps.append(weighted_maps(weights, activations, context.eigen_smooth))
    return maps


def scorecam(context: RunContext) -> list[torch.Tensor]:
    """ScoreCAM maps ``(B, K, *grid)``, one per target layer (see the module docstring)."""
    return masked_score_maps(context, description="ScoreCAM")


#: ScoreCAM's ``top_k``, which its variants declare as well.
TOP_K = Option(
    name="top_k",
    kind=int,
    default=None,
    nullable=True,
    minimum=1,
    help="mask only the top_k strongest channels (faster, not exact); None: all",
)


register(
    Method(
        name="scorecam",
        runner=scorecam,
        options=(
            *RERUN_OPTIONS,
            TOP_K,
        ),
        needs_gradients=False,
        label="Score-CAM",
        class_name="ScoreCAM",
        reference="Wang et al., CVPR Workshops 2020",
    )
)
