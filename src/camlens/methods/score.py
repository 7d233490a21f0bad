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

What makes the exact loop fast (bench/RESULTS.md, "ScoreCAM at the floor"):

* Channels whose activation maps are bitwise equal have equal masks, so they share one
  masked forward pass: above all the channels a ReLU leaves all zero (about 5 % of a
  random ResNet-50's ``layer4``, 26-48 % of the trained demo classifiers'), whose masks
  are empty. A channel that is constant but not zero is not merged with other constants:
  its mask is the min-max of its upsampling's rounding noise, not exactly empty. The
  scores are copied to every channel of the group before the softmax, so the weights are
  exactly those of one pass per channel.
* The masked inputs are written straight into a ``channels_last`` tensor for CPU images of
  at least 128² pixels (option ``memory_format``): oneDNN's convolutions then skip a layout
  conversion per layer, and the layout carries through the whole model (the model itself is
  not touched). The maps agree with the contiguous layout to float
  rounding; a model that cannot take that layout (a ``.view`` of a convolution's output) is
  retried once in the contiguous layout and kept there.
* Option ``precision="bfloat16"`` (off by default) runs the masked forward passes under
  bfloat16 autocast: faster where the CPU or GPU has bfloat16 units, not exact, since the
  softmax over raw scores magnifies the rounding of the scores. Measured: final [0, 1] maps
  within 0.006 of float32 on a random ResNet-50 and 0.024 on the demo classifiers, but up to
  0.96 on the demo segmenter, whose summed scores (~10³) round by units and flip a nearly
  one-hot softmax (bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from camlens.methods.perturbation import (
    RERUN_OPTIONS,
    WORKING_MEMORY_FACTOR,
    ForwardFailed,
    Rerun,
    chunk_size,
    probe_footprint,
    reruns,
    select_channels,
    weighted_maps,
)
from camlens.methods.registry import Method, Option, RunContext, register
from camlens.postprocess import min_max

__all__ = [
    "CHANNELS_LAST_MIN_SIDE",
    "MASKED_FORWARD_OPTIONS",
    "SCORECAM_EPSILON",
    "TOP_K",
    "Perturb",
    "channel_masks",
    "distinct_maps",
    "masked_inputs",
    "masked_layout",
    "masked_score_maps",
    "scorecam",
    "selected_channels",
]

logger = logging.getLogger(__name__)

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


def distinct_maps(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ``(S, *grid)`` maps that are bitwise equal: ``(first, group)``, where ``first``
    ``(G,)`` holds the position of each group's first map, in order of position, and
    ``group`` ``(S,)`` the index in ``first`` of each map's group.

    Equality is of the bit patterns (``0.0`` and ``-0.0`` differ, a NaN equals itself), so
    equal maps go through the same arithmetic and give equal masks.
    """
    flat = maps.flatten(1)
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    _, inverse = torch.unique(flat.contiguous().view(bits), dim=0, return_inverse=True)
    groups = int(inverse.max()) + 1 if inverse.numel() else 0
    positions = torch.arange(flat.shape[0], device=flat.device)
    first = torch.full((groups,), flat.shape[0], device=flat.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    order = first.argsort()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(groups, device=flat.device)
    return first[order], rank[inverse]


#: Layouts that option ``memory_format="channels_last"`` gives inputs of each rank.
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}

#: ``memory_format="auto"`` takes ``channels_last`` for CPU images at least this many pixels
#: on each side. Measured on ResNet-50 (batch 16, one thread): 0.77× the contiguous time at
#: 224², 0.90× at 128², but 1.22× at 64², where (presumably) re-laying out the weights at every
#: convolution outweighs what the layout saves on the small activations.
CHANNELS_LAST_MIN_SIDE = 128


def masked_layout(inputs: torch.Tensor, memory_format: str) -> torch.memory_format:
    """The layout the masked copies of ``inputs`` are built in: ``channels_last`` when asked
    (``channels_last_3d`` for volumes), and with ``"auto"`` for images on the CPU of at least
    :data:`CHANNELS_LAST_MIN_SIDE` pixels a side (where it was measured to help); otherwise
    contiguous."""
    layout = _CHANNELS_LAST.get(inputs.dim())
    if layout is None or memory_format == "contiguous":
        return torch.contiguous_format
    if memory_format == "auto" and (
        inputs.device.type != "cpu"
        or inputs.dim() != 4
        or min(inputs.shape[2:]) < CHANNELS_LAST_MIN_SIDE
    ):
        return torch.contiguous_format
    return layout


def masked_inputs(
    image: torch.Tensor, masks: torch.Tensor, layout: torch.memory_format
) -> torch.Tensor:
    """``(n, C, *size)``: ``image`` ``(1, C, *size)`` times each of ``masks`` ``(n, *size)``,
    written straight into a tensor of the given layout (no copy to convert it)."""
    shape = (masks.shape[0], *image.shape[1:])
    out = torch.empty(shape, dtype=image.dtype, device=image.device, memory_format=layout)
    return torch.mul(image, masks.unsqueeze(1).to(image.dtype), out=out)


class _MaskedForwards:
    """Scores chunks of masked inputs in the chosen layout and precision; the first chunk in
    ``channels_last`` may fail, and the layout then falls back to contiguous for good."""

    def __init__(self, run: Rerun, layout: torch.memory_format, precision: str) -> None:
        self.run = run
        self.layout = layout
        self.precision = precision
        self.confirmed = layout == torch.contiguous_format

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager[object]:
        if self.precision == "bfloat16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def scores(self, image: torch.Tensor, masks: torch.Tensor, index: int) -> torch.Tensor:
        """``(n, K)`` target scores of ``image`` ``(1, C, *size)`` masked by each of
        ``masks`` ``(n, *size)``, image ``index`` of the batch."""
        with torch.inference_mode():
            masked = masked_inputs(image, masks, self.layout)
        try:
            with self._autocast(image.device):
                values = self.run.scores(masked, index, len(masks), fallible=not self.confirmed)
        except ForwardFailed as error:
            logger.info("ScoreCAM: the %s layout failed (%s); using contiguous", self.layout, error)
            self.layout, self.confirmed = torch.contiguous_format, True
            return self.scores(image, masks, index)
        self.confirmed = True
        return values


#: ``(masks, copy) -> masks``: a method's perturbation of one chunk of channel masks
#: ``(n, *size)``, item ``i`` being copy ``copy[i]`` of its channel's mask (the identity for
#: ScoreCAM; SS-CAM adds noise, IS-CAM scales along a path). It must depend on the mask and
#: the copy only (not on the channel), as channels with equal maps share their re-runs.
Perturb = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def selected_channels(activations: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """``(B, n)``: the channels of ``(B, C, ...)`` activations that are re-run — the
    ``top_k`` strongest (mean absolute activation), or all ``C`` in order."""
    batch, channels = activations.shape[:2]
    count = channels if top_k is None else min(top_k, channels)
    if count < channels:
        return select_channels(activations, count)
    return torch.arange(channels, device=activations.device).expand(batch, channels)


def masked_score_maps(
    context: RunContext,
    *,
    description: str,
    copies: int = 1,
    perturb: Perturb | None = None,
    memory_format: str = "auto",
    precision: str = "float32",
) -> list[torch.Tensor]:
    """Maps ``(B, K, *grid)`` weighted by ``softmax_k`` of each channel's masked score, one
    per target layer: the ScoreCAM loop, shared by its variants.

    Each selected channel ``k`` (all, or the ``top_k`` strongest) gives ``copies`` masked
    inputs ``X ⊙ perturb(H_k, i)``, ``i = 0 .. copies - 1``; their target scores are averaged
    over the copies, then softmaxed over the channels. Channels with bitwise-equal activation
    maps (all the dead ones, above all) are re-run once for all of them. The (channel, copy)
    pairs are streamed in chunks sized by
    :func:`~camlens.methods.perturbation.chunk_size`, built in the layout of
    :func:`masked_layout` and run in ``precision`` (``"float32"``: the inputs' own dtype;
    ``"bfloat16"``: under autocast).
    """
    options = context.options
    top_k = options["top_k"]
    inputs = context.inputs
    batch, size = inputs.shape[0], tuple(inputs.shape[2:])
    selections = [selected_channels(activations, top_k) for activations in context.activations]
    # per layer and image: the channels that are re-run, and each selected channel's group
    groups = [
        [distinct_maps(activations[image, selected[image]]) for image in range(batch)]
        for activations, selected in zip(context.activations, selections, strict=True)
    ]
    item = 0
    if options["batch_size"] is None:
        # a masked copy of the input, its mask, and the copy's forward pass
        footprint = probe_footprint(context.model, inputs[:1])
        perturbed = (inputs[0].numel() + inputs[0, 0].numel()) * inputs.element_size()
        item = WORKING_MEMORY_FACTOR * footprint.whole + perturbed
    chunk = chunk_size(options, item)
    total = copies * sum(len(first) for layer in groups for first, _ in layer)
    maps = []
    with reruns(context, description=description, total=total) as run:
        forwards = _MaskedForwards(run, masked_layout(inputs, memory_format), precision)
        for activations, selected, layer_groups in zip(
            context.activations, selections, groups, strict=True
        ):
            weights = torch.zeros(
                batch,
                context.num_targets,
                activations.shape[1],
                dtype=activations.dtype,
                device=activations.device,
            )
            for image in range(batch):
                first, group = layer_groups[image]
                rerun = selected[image][first]  # one channel per group of equal maps
                scores = []
                pairs = torch.arange(len(rerun) * copies, device=rerun.device)
                for pair in pairs.split(chunk):
                    channels = rerun[pair // copies]  # pair = channel · copies + copy
                    started = time.perf_counter()
                    with torch.inference_mode():
                        masks = channel_masks(activations[image, channels], size)
                        if perturb is not None:
                            masks = perturb(masks, pair % copies)
                    scores.append(forwards.scores(inputs[image : image + 1], masks, image))
                    run.advance(len(channels), time.perf_counter() - started)
                values = torch.cat(scores).to(weights.dtype)  # (G · copies, K)
                if copies > 1:
                    values = values.reshape(-1, copies, values.shape[1]).mean(dim=1)
                softmax = torch.softmax(values[group], dim=0)  # (S, K)
                weights[image][:, selected[image]] = softmax.T
            maps.append(weighted_maps(weights, activations, context.eigen_smooth))
    return maps


def scorecam(context: RunContext) -> list[torch.Tensor]:
    """ScoreCAM maps ``(B, K, *grid)``, one per target layer (see the module docstring)."""
    options = context.options
    return masked_score_maps(
        context,
        description="ScoreCAM",
        memory_format=str(options["memory_format"]),
        precision=str(options["precision"]),
    )


#: ScoreCAM's ``top_k``, which its variants declare as well.
TOP_K = Option(
    name="top_k",
    kind=int,
    default=None,
    nullable=True,
    minimum=1,
    help="mask only the top_k strongest channels (faster, not exact); None: all",
)


#: How ScoreCAM's masked forward passes run: their layout and their precision.
MASKED_FORWARD_OPTIONS: tuple[Option, ...] = (
    Option(
        name="memory_format",
        kind=str,
        default="auto",
        choices=("auto", "channels_last", "contiguous"),
        help="layout of the masked inputs; auto: channels_last for CPU images of at least "
        "128² pixels (0.77× the time on ResNet-50 at 224², same maps to float rounding)",
    ),
    Option(
        name="precision",
        kind=str,
        default="float32",
        choices=("float32", "bfloat16"),
        help="bfloat16: masked forwards under bf16 autocast (~0.36× the time per pass on a "
        "bf16 CPU); not exact: final maps within 0.006 (ResNet-50) / 0.024 (demo "
        "classifiers) of float32, but up to 0.96 off for segmentation sums",
    ),
)


register(
    Method(
        name="scorecam",
        runner=scorecam,
        options=(
            *RERUN_OPTIONS,
            TOP_K,
            *MASKED_FORWARD_OPTIONS,
        ),
        needs_gradients=False,
        label="Score-CAM",
        class_name="ScoreCAM",
        reference="Wang et al., CVPR Workshops 2020",
    )
)
