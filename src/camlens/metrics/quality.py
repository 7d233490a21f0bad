"""The explanation-quality metrics people reach for first in Quantus, written from the papers.

* :func:`sparseness`: the Gini index of ``|map|`` (Chalasani et al., "Concise Explanations
  of Neural Networks using Adversarial Training", ICML 2020). High = concentrated.
* :func:`complexity`: the entropy of ``|map| / Σ|map|`` (Bhatt et al., "Evaluating and
  Aggregating Feature-based Model Explanations", IJCAI 2020). Low = concentrated.
* :func:`top_k_intersection`: the share of the ``k`` highest-valued pixels that lie in a
  ground-truth mask (Theiner et al., "Interpretable Semantic Photo Geolocation", WACV 2022,
  as used in Quantus).
* :func:`relevance_mass_accuracy` and :func:`relevance_rank_accuracy`: Arras et al.,
  "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural network
  explanations", Information Fusion 2022.
* :func:`max_sensitivity`: the largest relative change of the explanation under small
  input perturbations (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations",
  NeurIPS 2019).
* :func:`faithfulness_correlation`: Pearson correlation between the attribution of random
  pixel subsets and the score drop when they are removed (Bhatt et al., IJCAI 2020).

Maps are ``(B, H, W)`` torch tensors (numpy arrays are accepted) and every function returns
a ``(B,)`` tensor, computed in float64 where sums over many pixels are taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from camlens.capture import borrowed
from camlens.errors import InputShapeError
from camlens.masks import positive_mass_in_mask
from camlens.metrics._scoring import ScoreKind, Scorer, check_batch, relevance_ranks
from camlens.metrics.faithfulness import Baseline, baseline_values
from camlens.metrics.sanity import ExplainFunction
from camlens.postprocess import upsample

__all__ = [
    "complexity",
    "faithfulness_correlation",
    "max_sensitivity",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "sparseness",
    "top_k_intersection",
]


def _maps(maps: Any, name: str = "maps") -> torch.Tensor:
    """``maps`` as a ``(B, H, W)`` floating-point tensor (numpy arrays accepted)."""
    tensor = torch.as_tensor(maps)
    if tensor.dim() != 3:
        raise InputShapeError(
            f"`{name}` must be (B, H, W) with one map per image, got {tuple(tensor.shape)}; "
            "add the batch dimension with maps[None]."
        )
    return tensor if tensor.is_floating_point() else tensor.double()


def _masks(masks: Any, maps: torch.Tensor) -> torch.Tensor:
    """``masks`` as a ``(B, H, W)`` bool tensor on the maps' device (> 0 counts as inside)."""
    tensor = torch.as_tensor(masks, device=maps.device)
    if tensor.dim() != 3 or tensor.shape[0] != maps.shape[0]:
        raise InputShapeError(
            f"`masks` must be (B, H, W) with one mask per map (B={maps.shape[0]}), got "
            f"{tuple(tensor.shape)}."
        )
    return tensor > 0


def sparseness(maps: Any) -> torch.Tensor:
    """The Gini index of each map's absolute values (Chalasani et al., ICML 2020; as in
    Quantus's ``Sparseness``).

    With ``a`` the ``n = H·W`` values ``|m|`` sorted ascending and ``i = 1..n``:
    ``G = Σ_i (2i − n − 1) · a_i / (n · Σ_i a_i)``. It is 0 for a uniform map and
    ``(n − 1) / n`` (→ 1) for a single non-zero pixel; higher = sparser. The index is computed
    on the grid given, so compare maps at one resolution (e.g. ``raw_maps()`` at the input).

    Args:
        maps: ``(B, H, W)`` maps, signed or not.

    Returns:
        ``(B,)`` float64 in [0, 1); NaN for an all-zero map.
    """
    values = _maps(maps).detach().flatten(1).abs().double().sort(dim=1).values
    n = values.shape[1]
    i = torch.arange(1, n + 1, device=values.device, dtype=values.dtype)
    total = values.sum(1)
    gini = ((2 * i - n - 1) * values).sum(1) / (n * total.clamp_min(1e-300))
    return torch.where(total > 0, gini, torch.nan)


def complexity(maps: Any) -> torch.Tensor:
    """The entropy of each normalised absolute map (Bhatt et al., IJCAI 2020; Quantus's
    ``Complexity``): ``p = |m| / Σ|m|``, ``H = −Σ p · log p`` (natural log, ``0 · log 0 = 0``).

    It is ``log(H·W)`` for a uniform map and 0 for a single non-zero pixel; lower = simpler.

    Args:
        maps: ``(B, H, W)`` maps, signed or not.

    Returns:
        ``(B,)`` float64 in [0, log(H·W)]; NaN for an all-zero map.
    """
    values = _maps(maps).detach().flatten(1).abs().double()
    total = values.sum(1, keepdim=True)
    p = values / total.clamp_min(1e-300)
    entropy = -torch.special.xlogy(p, p).sum(1)
    return torch.where(total[:, 0] > 0, entropy, torch.nan)


def top_k_intersection(maps: Any, masks: Any, k: int | float | None = None) -> torch.Tensor:
    """The share of the ``k`` highest-valued pixels of each map that lie inside its mask
    (Theiner et al., WACV 2022, as Quantus's ``TopKIntersection``).

    Pixels are ranked by the signed map value, highest first, ties in raster order (as
    :func:`~camlens.metrics._scoring.relevance_ranks`); the maps are upsampled bilinearly to
    the masks' size first.

    Args:
        maps: ``(B, h, w)`` maps at any resolution.
        masks: ``(B, H, W)`` ground-truth masks; bool, or numbers where > 0 is inside.
        k: an ``int`` is a pixel count, the same for every image; a ``float`` is a fraction
            of each mask's area (``round(k · area)`` pixels, at least 1). Default ``None``
            is ``k = mask area`` (``1.0``), which is :func:`relevance_rank_accuracy`.

    Returns:
        ``(B,)`` float64 in [0, 1]; NaN where ``k`` would be 0 pixels (an empty mask).
    """
    tensor = _maps(maps).detach()
    inside = _masks(masks, tensor)
    size = tuple(inside.shape[-2:])
    pixels = size[0] * size[1]
    flat_inside = inside.flatten(1)
    area = flat_inside.sum(1)
    if k is None:
        k = 1.0
    if isinstance(k, bool) or not isinstance(k, int | float):
        raise TypeError(f"`k` must be an int (pixels), a float (share of the mask) or None: {k!r}")
    if isinstance(k, int):
        if not 1 <= k <= pixels:
            raise ValueError(f"`k` must be a pixel count in [1, {pixels}], got {k}")
        counts = torch.full_like(area, k)
    else:
        if not k > 0:
            raise ValueError(f"`k` as a fraction of the mask's area must be > 0, got {k}")
        counts = (k * area.double()).round().long().clamp(max=pixels)
        counts = torch.where(area > 0, counts.clamp_min(1), 0)
    ranks = relevance_ranks(upsample(tensor.double(), size))  # (B, H*W), 0 = highest
    top = ranks < counts[:, None]
    hits = (top & flat_inside).sum(1).double()
    return torch.where(counts > 0, hits / counts.clamp_min(1).double(), torch.nan)


def relevance_rank_accuracy(maps: Any, masks: Any) -> torch.Tensor:
    """Relevance rank accuracy (Arras et al., Information Fusion 2022): with ``K`` the
    mask's area, the share of the ``K`` highest-valued pixels inside the mask. It is
    :func:`top_k_intersection` with ``k`` = the mask's area; NaN for an empty mask."""
    return top_k_intersection(maps, masks, k=None)


def relevance_mass_accuracy(maps: Any, masks: Any) -> torch.Tensor:
    """Relevance mass accuracy (Arras et al., Information Fusion 2022):
    ``Σ_mask m⁺ / Σ m⁺``, the share of the *positive* relevance ``m⁺ = max(m, 0)`` that lies
    inside the mask (negative relevance is left out, as in the paper's evaluation of
    positive evidence). This is :func:`camlens.masks.positive_mass_in_mask` (maps at any
    resolution; see there for the resampling). Returns ``(B,)`` in [0, 1], NaN where a map
    has no positive value."""
    tensor = _maps(maps)
    inside = _masks(masks, tensor)
    return positive_mass_in_mask(tensor.detach(), inside)


def max_sensitivity(
    model: nn.Module,
    inputs: torch.Tensor,
    explain: ExplainFunction,
    *,
    radius: float = 0.02,
    samples: int = 10,
    seed: int = 0,
    corners: bool = False,
) -> torch.Tensor:
    """Max-sensitivity (Yeh et al., NeurIPS 2019, §4), relative as in Quantus:
    ``max_{‖δ‖∞ ≤ r} ‖Φ(x + δ) − Φ(x)‖_F / ‖Φ(x)‖_F``, estimated by Monte Carlo.

    ``samples`` perturbations ``δ`` are drawn uniformly from the L∞ ball of radius ``r``
    (every input element independently in ``[−r, r]``; with ``corners=True`` from its
    corners, ``δ = ±r`` — where a convex function of ``δ``, such as the change of an
    explanation linear in the input, attains its maximum). The estimate never exceeds the
    true maximum and approaches it as ``samples`` grows; lower = more stable.

    Args:
        model: passed to ``explain``; borrowed, train/eval flags and hooks restored.
        inputs: ``(B, ...)`` the inputs, as ``explain`` takes them, in the input's units.
        explain: ``explain(model, inputs) -> (B, H, W)`` maps, the convention of
            :func:`~camlens.metrics.cascading_randomisation`, e.g.
            ``lambda m, x: GradCAM(m, "layer4").explain(x, [3, 7]).raw_maps()``. It is
            called once on ``inputs`` and once per sample on the whole perturbed batch, so
            targets fixed per image keep working. Fix the targets (class ids): a predicted
            class that flips under the noise is counted as a change of the explanation.
        radius: ``r``, in the input's units.
        samples: perturbations drawn.
        seed: seeds a CPU generator, so a seed gives the same perturbations on any device.
        corners: draw ``δ`` from the ball's corners instead of uniformly inside it.

    Returns:
        ``(B,)`` float64; NaN where ``Φ(x)`` is all zero.
    """
    if int(samples) < 1:
        raise ValueError(f"`samples` must be at least 1, got {samples}")
    if not radius >= 0:
        raise ValueError(f"`radius` must be >= 0, got {radius}")
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise InputShapeError("`inputs` must be a floating-point tensor (B, C, H, W)")
    generator = torch.Generator().manual_seed(int(seed))
    with borrowed(model, eval_mode=False):
        original = _explained(explain, model, inputs, None)
        largest = torch.zeros(inputs.shape[0], dtype=torch.float64, device=original.device)
        for _ in range(int(samples)):
            if corners:
                noise = torch.randint(0, 2, inputs.shape, generator=generator).double() * 2 - 1
            else:
                noise = torch.rand(inputs.shape, generator=generator, dtype=torch.float64) * 2 - 1
            delta = (noise * radius).to(device=inputs.device, dtype=inputs.dtype)
            maps = _explained(explain, model, inputs + delta, tuple(original.shape))
            change = (maps.to(original.device) - original).flatten(1).norm(dim=1)
            largest = torch.maximum(largest, change)
    scale = original.flatten(1).norm(dim=1)
    return torch.where(scale > 0, largest / scale.clamp_min(1e-300), torch.nan)


def _explained(
    explain: ExplainFunction,
    model: nn.Module,
    inputs: torch.Tensor,
    shape: tuple[int, ...] | None,
) -> torch.Tensor:
    """``explain(model, inputs)`` checked to be ``(B, H, W)`` (and ``shape``), as float64."""
    maps = explain(model, inputs)
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or maps.shape[0] != inputs.shape[0]:
        got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise InputShapeError(
            f"`explain(model, inputs)` must return (B, H, W) maps (B={inputs.shape[0]}), got "
            f"{got}; e.g. `lambda m, x: GradCAM(m, 'layer4').explain(x, targets).raw_maps()`."
        )
    if shape is not None and tuple(maps.shape) != shape:
        raise InputShapeError(
            f"`explain` returned maps of shape {tuple(maps.shape)} for perturbed inputs but "
            f"{shape} for the inputs; it must return maps of one shape."
        )
    return maps.detach().double()


def faithfulness_correlation(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    samples: int = 100,
    subset_size: int = 224,
    baseline: Baseline = 0.0,
    blur_sigma: float = 5.0,
    seed: int = 0,
    score: ScoreKind = "probability",
    batch_size: int = 64,
) -> torch.Tensor:
    """Faithfulness correlation (Bhatt et al., IJCAI 2020, §3; Quantus's
    ``FaithfulnessCorrelation``).

    For each of ``samples`` random subsets ``S`` of ``subset_size`` pixels (uniform without
    replacement, all channels of a pixel together): the attribution ``Σ_{i∈S} m_i`` (signed
    map values) and the score drop ``f(x) − f(x_{S ← baseline})``. The result is the Pearson
    correlation of the two over the subsets; 1 when removing a subset lowers the score by
    exactly its attribution (plus a constant factor), about 0 for a map unrelated to the
    model.

    Args:
        model, inputs, targets, score, batch_size, baseline, blur_sigma: as in
            :func:`~camlens.metrics.deletion` (the same target scoring; ``score="raw"`` for
            logits, the usual scale of additive attributions).
        maps: ``(B, H, W)`` maps (lower resolutions are upsampled bilinearly); their values
            are summed, so pass signed raw maps (``raw_maps()``) rather than min–max maps.
        samples: subsets per image (the correlation's sample size).
        subset_size: pixels per subset, in ``[1, H·W)`` (Quantus's default 224).
        seed: seeds one CPU generator; image ``b``'s subsets are the ``b``-th draw, so the
            result does not depend on ``batch_size``.

    Returns:
        ``(B,)`` float64 in [−1, 1]; NaN where the attribution sums or the score drops are
        constant over the subsets (a constant map, a model that ignores the pixels).
    """
    if int(samples) < 2:
        raise ValueError(f"`samples` must be at least 2 for a correlation, got {samples}")
    inputs, maps = check_batch(model, inputs, maps)
    batch, _, height, width = inputs.shape
    pixels = height * width
    if not 1 <= int(subset_size) < pixels:
        raise ValueError(
            f"`subset_size` must be a pixel count in [1, {pixels - 1}] for {height}×{width} "
            f"inputs, got {subset_size}"
        )
    samples, subset_size = int(samples), int(subset_size)
    scorer = Scorer(model, inputs, targets, score=score, batch_size=batch_size)
    base = baseline_values(inputs, baseline, blur_sigma)
    generator = torch.Generator().manual_seed(int(seed))
    # (B, samples, subset_size) pixel indices: the subset_size smallest of uniform keys are a
    # uniform subset. One draw per image keeps the keys at (samples, H·W) at a time.
    subsets = torch.stack(
        [
            torch.rand(samples, pixels, generator=generator).topk(subset_size, largest=False)[1]
            for _ in range(batch)
        ]
    ).to(inputs.device)
    attributions = maps.double().flatten(1)[:, None, :].expand(-1, samples, -1)
    attributions = attributions.gather(2, subsets).sum(2)  # (B, samples)

    def make(chunk: slice) -> tuple[torch.Tensor, torch.Tensor]:
        position = torch.arange(chunk.start, chunk.stop, device=inputs.device)
        images = position // samples
        removed = torch.zeros(len(position), pixels, dtype=torch.bool, device=inputs.device)
        removed.scatter_(1, subsets.view(-1, subset_size)[position], True)
        removed = removed.view(-1, 1, height, width)
        return torch.where(removed, base[images], inputs[images]), images

    perturbed = scorer.scores(batch * samples, make).view(batch, samples)
    drops = (scorer.original[:, None] - perturbed).double()
    return _pearson(attributions, drops)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation of ``(B, S)`` tensors; NaN where a row is constant."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    scale = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(scale > 0, (a * b).sum(1) / scale.clamp_min(1e-300), torch.nan)
