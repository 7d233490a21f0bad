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

Option ``top_k`` (off by default) masks only the ``top_k`` channels with the largest mean
absolute activation: the softmax runs over those channels and the others get weight 0. It
trades exactness for speed (``top_k`` instead of ``C`` forward passes per image).
"""

from __future__ import annotations

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

__all__ = ["SCORECAM_EPSILON", "channel_masks", "scorecam"]

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


def scorecam(context: RunContext) -> list[torch.Tensor]:
    """ScoreCAM maps ``(B, K, *grid)``, one per target layer (see the module docstring)."""
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
    total = batch * sum(int(s.shape[1]) for s in selections)
    maps = []
    with reruns(context, description="ScoreCAM", total=total) as run:
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
                for channels in selected[image].split(chunk):
                    with torch.inference_mode():
                        masks = channel_masks(activations[image, channels], size)
                        masked = inputs[image : image + 1] * masks.unsqueeze(1).to(inputs.dtype)
                    scores.append(run.scores(masked, image, len(channels)))
                    run.advance(len(channels))
                softmax = torch.softmax(torch.cat(scores).to(weights.dtype), dim=0)  # (S, K)
                weights[image][:, selected[image]] = softmax.T
            maps.append(weighted_maps(weights, activations, context.eigen_smooth))
    return maps


register(
    Method(
        name="scorecam",
        runner=scorecam,
        options=(
            *RERUN_OPTIONS,
            Option(
                name="top_k",
                kind=int,
                default=None,
                nullable=True,
                minimum=1,
                help="mask only the top_k strongest channels (faster, not exact); None: all",
            ),
        ),
        needs_gradients=False,
        label="Score-CAM",
        class_name="ScoreCAM",
        reference="Wang et al., CVPR Workshops 2020",
    )
)
