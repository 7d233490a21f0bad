"""Perturbation faithfulness: does removing what the map calls important change the score?

* :func:`deletion` and :func:`insertion`: the causal metrics of Petsiuk et al., "RISE:
  Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018 (§4.1). Pixels
  are ranked by map value; deletion replaces the top ``k/S`` of them with a baseline for
  ``k = 0..S`` and records the target score, insertion starts from the baseline (a blurred
  copy by default) and puts the original pixels back in the same order. The area under the
  curve (trapezoid rule over the fraction of pixels) is low for a good deletion curve and
  high for a good insertion curve.
* :func:`road`: ROAD, "Remove And Debias", of Rong et al., "A Consistent and Efficient
  Evaluation Strategy for Attribution Methods", ICML 2022. Removed pixels are filled by
  noisy linear imputation (:func:`~camlens.metrics.imputation.noisy_linear_imputation`),
  which does not leak the shape of the removal mask the way a constant fill does. Pixels are
  removed most-relevant-first (MoRF) and least-relevant-first (LeRF) at several percentiles;
  a faithful map makes the score fall fast under MoRF and slowly under LeRF.
* :func:`confidence_change`: "average drop" and "increase in confidence" of Chattopadhay
  et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
  Convolutional Networks", WACV 2018 (§4.1): the score on the image multiplied by the map
  against the score on the image.

Every function takes ``maps`` ``(B, H, W)`` at input resolution (``Explanation.maps`` or
``raw_maps()``; lower-resolution maps are upsampled bilinearly), targets as for the
explainers (one target callable per image, class ids, or ``None`` for the predicted class),
and returns tensors on the model's device. The perturbed inputs are built and scored
``batch_size`` at a time under ``torch.inference_mode``; the model is borrowed and handed
back unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from camlens.errors import InputShapeError
from camlens.metrics._scoring import (
    ScoreKind,
    Scorer,
    check_batch,
    gaussian_blur,
    relevance_ranks,
)
from camlens.metrics.imputation import noisy_linear_imputation

__all__ = [
    "ConfidenceChange",
    "PerturbationCurve",
    "RoadResult",
    "baseline_values",
    "confidence_change",
    "deletion",
    "insertion",
    "road",
    "seeded_normal",
]

Baseline = float | torch.Tensor | Literal["blur"]


@dataclass
class PerturbationCurve:
    """A deletion or insertion curve.

    Attributes:
        fractions: ``(S,)`` the fraction of pixels removed (deletion) or inserted (insertion)
            at each point, ``0, 1/steps, ..., 1`` (``S = steps + 1``).
        scores: ``(B, S)`` the target score at each point.
        auc: ``(B,)`` the area under each curve, trapezoid rule over ``fractions``.
        original: ``(B,)`` the target score on the unperturbed image.
    """

    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor
    original: torch.Tensor


@dataclass
class RoadResult:
    """ROAD scores at each removal percentile, most- and least-relevant first.

    Attributes:
        percentiles: ``(T,)`` the share of pixels removed, in percent.
        original: ``(B,)`` the target score on the unperturbed image.
        morf: ``(B, T)`` the score after removing the most relevant pixels.
        lerf: ``(B, T)`` the score after removing the least relevant pixels.
        morf_drop: ``(B,)`` ``original - morf`` averaged over the percentiles (high is good).
        lerf_drop: ``(B,)`` ``original - lerf`` averaged over the percentiles (low is good).
        gap: ``(B,)`` ``lerf - morf`` averaged over the percentiles (``= morf_drop -
            lerf_drop``): higher means a more faithful map; about 0 for a random ranking.
    """

    percentiles: torch.Tensor
    original: torch.Tensor
    morf: torch.Tensor
    lerf: torch.Tensor
    morf_drop: torch.Tensor
    lerf_drop: torch.Tensor
    gap: torch.Tensor


@dataclass
class ConfidenceChange:
    """Chattopadhay et al.'s confidence change when the image is multiplied by its map.

    Attributes:
        original: ``(B,)`` ``Y``, the target score on the image.
        masked: ``(B,)`` ``O``, the target score on the image multiplied by the map.
        drop: ``(B,)`` ``max(0, Y - O) / Y``; NaN where ``Y <= 0`` (possible only with
            ``score="raw"``).
        increase: ``(B,)`` bool, ``O > Y``.
        average_drop: ``()`` ``100 · mean(drop)`` in percent, over the images where ``Y > 0``
            (NaN if there is none).
        increase_rate: ``()`` ``mean(increase)``, a fraction in [0, 1] (the paper prints it
            in percent).
    """

    original: torch.Tensor
    masked: torch.Tensor
    drop: torch.Tensor
    increase: torch.Tensor
    average_drop: torch.Tensor
    increase_rate: torch.Tensor


def baseline_values(inputs: torch.Tensor, baseline: Baseline, blur_sigma: float) -> torch.Tensor:
    """The ``(B, C, H, W)`` image that replaces removed pixels."""
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"`baseline` must be a number, a tensor or 'blur', got {baseline!r}")
        return gaussian_blur(inputs, blur_sigma)
    if isinstance(baseline, torch.Tensor):
        value = baseline.to(device=inputs.device, dtype=inputs.dtype)
        try:
            return torch.broadcast_to(value, inputs.shape).contiguous()
        except RuntimeError:
            raise InputShapeError(
                f"`baseline` of shape {tuple(value.shape)} does not broadcast to the inputs "
                f"{tuple(inputs.shape)}; pass a number, a (C, 1, 1) colour or a full image."
            ) from None
    return torch.full_like(inputs, float(baseline))


def _curve(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    targets: Sequence[Any] | Any | None,
    *,
    insert: bool,
    steps: int,
    baseline: Baseline,
    blur_sigma: float,
    score: ScoreKind,
    batch_size: int,
) -> PerturbationCurve:
    if int(steps) < 1:
        raise ValueError(f"`steps` must be at least 1, got {steps}")
    inputs, maps = check_batch(model, inputs, maps)
    scorer = Scorer(model, inputs, targets, score=score, batch_size=batch_size)
    base = baseline_values(inputs, baseline, blur_sigma)
    batch, _, height, width = inputs.shape
    pixels = height * width
    ranks = relevance_ranks(maps)  # (B, H*W), 0 = most relevant
    points = int(steps) + 1
    counts = torch.arange(points, device=inputs.device) * pixels // int(steps)
    # Insertion starts from the baseline and brings the original pixels back: the same
    # ranking with the roles of the two images swapped.
    first, second = (base, inputs) if insert else (inputs, base)

    def make(chunk: slice) -> tuple[torch.Tensor, torch.Tensor]:
        position = torch.arange(chunk.start, chunk.stop, device=inputs.device)
        images, point = position // points, position % points
        changed = ranks[images] < counts[point][:, None]  # (n, H*W): these pixels switch
        changed = changed.view(-1, 1, height, width)
        return torch.where(changed, second[images], first[images]), images

    scores = scorer.scores(batch * points, make).view(batch, points)
    fractions = counts.to(scores.dtype) / pixels
    auc = torch.trapezoid(scores, fractions, dim=1)
    return PerturbationCurve(fractions=fractions, scores=scores, auc=auc, original=scorer.original)


def deletion(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    steps: int = 50,
    baseline: Baseline = 0.0,
    blur_sigma: float = 5.0,
    score: ScoreKind = "probability",
    batch_size: int = 64,
) -> PerturbationCurve:
    """The deletion curve of Petsiuk et al. (RISE, BMVC 2018): remove pixels most relevant
    first and watch the target score fall.

    Pixels are ordered by map value, highest first (ties in raster order). At point ``k`` of
    ``0..steps`` the first ``floor(k · H·W / steps)`` pixels, in all channels, are replaced
    by the baseline. AUC = ``∫ score d(fraction)`` by the trapezoid rule; lower is better.

    Args:
        model: the classifier (or any model a target can read); borrowed, handed back
            unchanged.
        inputs: ``(B, C, H, W)`` the images as the model takes them (normalised).
        maps: ``(B, H, W)`` the maps; only their ordering matters.
        targets: one target callable per image, class ids, or ``None`` (predicted class).
        steps: the number of equal steps from 0 to all pixels.
        baseline: what removed pixels become: a number in the input's units (default 0,
            the dataset mean for mean/std-normalised inputs), a tensor broadcastable to the
            inputs (e.g. a ``(C, 1, 1)`` colour), or ``"blur"`` (a Gaussian-blurred copy).
        blur_sigma: the blur's standard deviation in pixels, for ``baseline="blur"``.
        score: ``"probability"``: targets see the softmax over the class axis (a sigmoid for
            one logit), so class ids and ``ClassifierOutputTarget`` score the class
            probability (do not pass ``ClassifierOutputSoftmaxTarget``: it would apply a
            second softmax); ``"raw"``: targets see the raw output.
        batch_size: perturbed images per forward pass.

    Returns:
        A :class:`PerturbationCurve`.

    Example:
        >>> exp = HiResCAM(model, "layer4").explain(x)
        >>> curve = deletion(model, x, exp.maps, exp.targets, steps=32)
        >>> curve.auc  # (B,), lower = more faithful
    """
    return _curve(
        model,
        inputs,
        maps,
        targets,
        insert=False,
        steps=steps,
        baseline=baseline,
        blur_sigma=blur_sigma,
        score=score,
        batch_size=batch_size,
    )


def insertion(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    steps: int = 50,
    baseline: Baseline = "blur",
    blur_sigma: float = 5.0,
    score: ScoreKind = "probability",
    batch_size: int = 64,
) -> PerturbationCurve:
    """The insertion curve of Petsiuk et al. (RISE, BMVC 2018): start from a baseline image
    (blurred, by default) and put the original pixels back, most relevant first.

    At point ``k`` of ``0..steps`` the first ``floor(k · H·W / steps)`` pixels in map order
    hold their original values, the rest the baseline's. AUC by the trapezoid rule over the
    fraction of pixels; higher is better. Arguments as in :func:`deletion`.
    """
    return _curve(
        model,
        inputs,
        maps,
        targets,
        insert=True,
        steps=steps,
        baseline=baseline,
        blur_sigma=blur_sigma,
        score=score,
        batch_size=batch_size,
    )


def road(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    percentiles: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    noise_std: float = 0.01,
    seed: int = 0,
    score: ScoreKind = "probability",
    batch_size: int = 32,
    tolerance: float = 1e-5,
    max_iterations: int | None = None,
) -> RoadResult:
    """ROAD (Rong et al., ICML 2022): remove pixels by noisy linear imputation, most and
    least relevant first, and compare the scores.

    For each percentile ``p`` the ``round(p/100 · H·W)`` pixels ranked highest (MoRF) or
    lowest (LeRF) by the map (ties in raster order) are removed in all channels and filled
    by :func:`~camlens.metrics.imputation.noisy_linear_imputation`; all other pixels keep
    their exact values.

    Args:
        model, inputs, maps, targets, score: as in :func:`deletion`.
        percentiles: shares of pixels to remove, in percent (the paper's 10 … 90).
        noise_std: standard deviation of the imputation noise, in the input's units.
        seed: seeds the noise; perturbed image ``j`` (in image, percentile, MoRF/LeRF order)
            draws from its own generator seeded with ``seed + j``, so results do not depend
            on ``batch_size``.
        batch_size: perturbed images imputed and scored at once.
        tolerance, max_iterations: of the imputation's conjugate-gradient solver.

    Returns:
        A :class:`RoadResult`; ``gap`` (LeRF − MoRF, higher = more faithful) is the summary.
    """
    levels = torch.as_tensor([float(p) for p in percentiles], dtype=torch.float64)
    if levels.numel() == 0 or bool(((levels <= 0) | (levels >= 100)).any()):
        raise ValueError(
            f"`percentiles` must be shares of pixels in percent, each in (0, 100), got "
            f"{list(percentiles)}"
        )
    inputs, maps = check_batch(model, inputs, maps)
    scorer = Scorer(model, inputs, targets, score=score, batch_size=batch_size)
    batch, channels, height, width = inputs.shape
    pixels = height * width
    ranks = torch.stack([relevance_ranks(maps), relevance_ranks(maps, descending=False)], 1)
    counts = (levels * pixels / 100).round().long().to(inputs.device)
    thresholds = counts.numel()
    per_image = 2 * thresholds  # MoRF at every percentile, then LeRF at every percentile

    def make(chunk: slice) -> tuple[torch.Tensor, torch.Tensor]:
        position = torch.arange(chunk.start, chunk.stop, device=inputs.device)
        images = position // per_image
        order, level = (position % per_image) // thresholds, position % thresholds
        removed = ranks[images, order] < counts[level][:, None]
        removed = removed.view(-1, height, width)
        noise = None
        if noise_std > 0:
            noise = torch.stack(
                [
                    seeded_normal(seed + index, (channels, height, width), inputs)
                    for index in range(chunk.start, chunk.stop)
                ]
            )
        imputed = noisy_linear_imputation(
            inputs[images],
            removed,
            noise_std=noise_std,
            noise=noise,
            tolerance=tolerance,
            max_iterations=max_iterations,
        )
        return imputed, images

    scores = scorer.scores(batch * per_image, make).view(batch, 2, thresholds)
    morf, lerf = scores[:, 0], scores[:, 1]
    original = scorer.original
    return RoadResult(
        percentiles=levels.to(device=inputs.device, dtype=scores.dtype),
        original=original,
        morf=morf,
        lerf=lerf,
        morf_drop=(original[:, None] - morf).mean(1),
        lerf_drop=(original[:, None] - lerf).mean(1),
        gap=(lerf - morf).mean(1),
    )


def seeded_normal(seed: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise from a generator of its own (on the CPU, so that a seed gives
    the same noise on every device), moved to ``like``'s device and dtype."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def confidence_change(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    mean: Sequence[float] | torch.Tensor | None = None,
    std: Sequence[float] | torch.Tensor | None = None,
    score: ScoreKind = "probability",
    batch_size: int = 64,
) -> ConfidenceChange:
    """Average drop and increase in confidence (Chattopadhay et al., Grad-CAM++, WACV 2018,
    §4.1) when the image is multiplied by its map.

    ``Y`` is the target score on the image, ``O`` on the image multiplied pixel-wise by the
    map: average drop ``= 100 · mean(max(0, Y − O) / Y)`` (lower is better), increase in
    confidence ``= mean(O > Y)`` (higher is better).

    The map multiplies the *image*, not its normalised encoding: when ``mean`` and ``std``
    are given, the input is unnormalised (``x · std + mean``), multiplied by the map and
    normalised again, so that a map value of 0 gives a black pixel as in the paper. Without
    them the input tensor itself is multiplied, so a map value of 0 gives 0 in the input's
    units (the dataset mean colour for mean/std-normalised inputs).

    Args:
        model, inputs, targets, score, batch_size: as in :func:`deletion`.
        maps: ``(B, H, W)`` maps in [0, 1], e.g. ``Explanation.maps``.
        mean, std: the per-channel normalisation of ``inputs``, e.g. ImageNet's.

    Returns:
        A :class:`ConfidenceChange`.
    """
    inputs, maps = check_batch(model, inputs, maps)
    low, high = float(maps.min()), float(maps.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(
            f"`maps` must lie in [0, 1] for the confidence change, got values in "
            f"[{low:.4g}, {high:.4g}]; use Explanation.maps or camlens.postprocess.min_max."
        )
    if (mean is None) != (std is None):
        raise ValueError("pass both `mean` and `std`, or neither")
    scorer = Scorer(model, inputs, targets, score=score, batch_size=batch_size)
    weights = maps.clamp(0, 1).unsqueeze(1)
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        centre = torch.as_tensor(mean, device=inputs.device, dtype=inputs.dtype).view(shape)
        scale = torch.as_tensor(std, device=inputs.device, dtype=inputs.dtype).view(shape)
        masked = ((inputs * scale + centre) * weights - centre) / scale
    else:
        masked = inputs * weights

    def make(chunk: slice) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.arange(chunk.start, chunk.stop, device=inputs.device)
        return masked[chunk], images

    original = scorer.original
    after = scorer.scores(inputs.shape[0], make)
    positive = original > 0
    drop = torch.where(
        positive, (original - after).clamp_min(0) / original.where(positive, 1.0), torch.nan
    )
    increase = after > original
    average = (
        100 * drop[positive].mean()
        if bool(positive.any())
        else torch.tensor(torch.nan, device=drop.device, dtype=drop.dtype)
    )
    return ConfidenceChange(
        original=original,
        masked=after,
        drop=drop,
        increase=increase,
        average_drop=average,
        increase_rate=increase.to(drop.dtype).mean(),
    )
