"""SESS: any method made robust to scale, repeated objects and distractors by explaining
resized copies of the image window by window and fusing the window maps.

Tursun, Denman, Sridharan & Fookes, "SESS: Saliency Enhancing with Scaling and Sliding",
ECCV 2022 (arXiv:2207.01769). For each image, separately:

1. **Scaling.** The image is resized (bilinear, antialiased, aspect ratio kept) so that its
   shorter side is each of ``scales`` — by default ``num_scales`` sizes from the window
   size up in steps of ``round(scale_step_ratio · window)`` (224, 288, 352, ... for a 224
   window, the paper's scales).
2. **Sliding.** A ``window × window`` window slides over every scaled image with stride
   ``step_size`` (default: the window, no overlap); a window that would cross the right or
   bottom border is moved back inside, so every patch has the window's size.
3. **Pre-filtering.** Every patch is scored by the target on the model's softmax output
   (``softmax_scores=False``: the raw output), negative scores clipped to 0; the lowest
   ``pre_filter_ratio`` share of the patches is dropped before any map is computed.
4. **Channel-wise weights.** Each kept patch's final map (the method's usual [0, 1] map of
   the patch) is multiplied by its score divided by the best patch's score.
5. **Fusion.** Each weighted patch map is put back where its patch was taken from (zeros
   elsewhere) and that canvas is resized to the input (bilinear); ``pool="mean"`` is the
   spatial weighted average — each pixel averages the values above ``theta`` that cover
   it — and ``pool="max"`` the maximum over patches.
6. **Smoothing.** A Gaussian blur (11 × 11, σ = 5, mirrored borders) if ``smooth``; then
   min–max to [0, 1].

These are the steps of the paper and of pytorch-grad-cam 1.5.7's ``SESS``, whose defaults
and behaviour camlens follows (the paper keeps only its top patches by default; here as
upstream ``pre_filter_ratio=0`` keeps all). Simplifications: the target is fixed once, on
the whole image (``None``: its top class), and SESS explains classifiers (patch outputs of a
segmenter do not line up with a mask of the whole image); 2-D images only.

The explanation's ``layer_maps`` hold one map per image at the input's resolution, the
fused map before the final min–max (named ``"sess"``); ``maps`` is its min–max.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camlens.capture import borrowed
from camlens.errors import InputShapeError, TargetError
from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.familiar import GradCAM
from camlens.layers import LayerSpec
from camlens.methods.registry import Option
from camlens.outputs import as_score_tensor, is_dense
from camlens.postprocess import min_max
from camlens.reshape import ReshapeTransform
from camlens.steps import prepare_input
from camlens.targets import target_score
from camlens.wrappers import FamiliarWrapper, base_explainer, fixed_targets

__all__ = ["SESS", "SESS_OPTIONS", "sess", "window_starts"]

#: SESS's numeric parameters, declared and checked like a method's options.
SESS_OPTIONS = (
    Option(name="num_scales", kind=int, default=12, minimum=1, help="number of default scales"),
    Option(
        name="scale_step_ratio",
        kind=float,
        default=2 / 7,
        minimum=0,
        help="step between default scales, as a share of the window",
    ),
    Option(
        name="pre_filter_ratio",
        kind=float,
        default=0.0,
        minimum=0,
        maximum=0.999999,
        help="share of the lowest-scoring patches dropped before their maps are computed",
    ),
    Option(name="theta", kind=float, default=0.0, help="values ≤ theta do not enter the mean"),
    Option(name="pool", kind=str, default="mean", choices=("mean", "max"), help="fusion"),
    Option(name="batch_size", kind=int, default=32, minimum=1, help="patches per forward pass"),
)

#: The blur of step 6: OpenCV-style 11 × 11 Gaussian kernel, σ = 5.
BLUR_SIZE, BLUR_SIGMA = 11, 5.0


def window_starts(length: int, step: int, window: int) -> list[int]:
    """Where windows start along one axis of ``length``: every ``step`` until one reaches
    the end, that last one moved back inside (``length − window``)."""
    starts = []
    for start in range(0, length, step):
        if start + window >= length:
            starts.append(max(length - window, 0))
            break
        starts.append(start)
    return starts


def _resize_shorter_side(image: torch.Tensor, side: int) -> torch.Tensor:
    """``(1, C, H, W)`` with its shorter side resized to ``side``, aspect ratio kept (the
    longer side truncated to an integer), bilinear with antialiasing."""
    height, width = image.shape[-2:]
    short, long = sorted((height, width))
    new_long = int(side * long / short)
    size = (side, new_long) if height <= width else (new_long, side)
    if size == (height, width):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def _blur(maps: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` blurred by the separable Gaussian of step 6 (mirrored borders)."""
    offsets = torch.arange(BLUR_SIZE, dtype=torch.float64) - (BLUR_SIZE - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * BLUR_SIGMA**2))
    kernel = (kernel / kernel.sum()).to(maps.device, maps.dtype)
    pad = BLUR_SIZE // 2
    if min(maps.shape[-2:]) <= pad:
        return maps  # too small to mirror 5 pixels: left as it is
    padded = F.pad(maps[:, None], (pad, pad, pad, pad), mode="reflect")
    rows = F.conv2d(padded, kernel.reshape(1, 1, 1, -1))
    return F.conv2d(rows, kernel.reshape(1, 1, -1, 1))[:, 0]


def _patch_scores(
    model: nn.Module, patches: torch.Tensor, target: Any, softmax: bool, batch_size: int
) -> torch.Tensor:
    """``(N,)`` the target's score of each patch, clipped at 0 (step 3)."""
    scores = []
    with borrowed(model), torch.no_grad():
        for chunk in patches.split(batch_size):
            outputs = as_score_tensor(model(chunk))
            if softmax:
                outputs = torch.softmax(outputs, dim=-1)
            scores.extend(target_score(target, row, "SESS's target") for row in outputs)
    return torch.stack(scores).clamp_min(0)


def _sess_image(
    explainer: Explainer,
    image: torch.Tensor,
    target: Any,
    scales: Sequence[int],
    window: int,
    step: int,
    options: dict[str, Any],
    softmax: bool,
    eigen_smooth: bool,
) -> tuple[torch.Tensor, int]:
    """One image ``(1, C, H, W)`` → its fused map ``(H, W)`` and the number of patches."""
    height, width = image.shape[-2:]
    patches, places = [], []
    for scale in scales:
        scaled = _resize_shorter_side(image, scale)
        scaled_height, scaled_width = scaled.shape[-2:]
        for top in window_starts(scaled_height, step, window):
            for left in window_starts(scaled_width, step, window):
                patches.append(scaled[:, :, top : top + window, left : left + window])
                places.append((top, left, scaled_height, scaled_width))
    batch = torch.cat(patches)
    scores = _patch_scores(explainer.model, batch, target, softmax, options["batch_size"])
    order = torch.argsort(scores, stable=True)[int(len(scores) * options["pre_filter_ratio"]) :]
    best = scores[order[-1]]
    weights = scores[order] / best if best > 0 else torch.ones_like(scores[order])
    total = image.new_zeros((height, width))
    counts = image.new_zeros((height, width))
    for chunk, chunk_weights in zip(
        order.split(options["batch_size"]), weights.split(options["batch_size"]), strict=True
    ):
        explained = explainer.explain(
            batch[chunk], [target] * len(chunk), eigen_smooth=eigen_smooth
        )
        for index, patch_map, weight in zip(
            chunk.tolist(), explained.maps, chunk_weights, strict=True
        ):
            top, left, scaled_height, scaled_width = places[index]
            canvas = image.new_zeros((1, 1, scaled_height, scaled_width))
            canvas[0, 0, top : top + window, left : left + window] = patch_map * weight
            if (scaled_height, scaled_width) != (height, width):
                canvas = F.interpolate(
                    canvas, size=(height, width), mode="bilinear", align_corners=False
                )
            value = canvas[0, 0]
            if options["pool"] == "max":
                total = torch.maximum(total, value)
            else:
                above = value > options["theta"]
                total = total + torch.where(above, value, torch.zeros_like(value))
                counts = counts + above.to(counts.dtype)
    if options["pool"] == "mean":
        total = torch.where(counts > 0, total / counts.clamp_min(1), torch.zeros_like(total))
    return total, len(patches)


def sess(
    explainer: Explainer,
    inputs: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    scales: Sequence[int] | None = None,
    window_size: int | None = None,
    step_size: int | None = None,
    smooth: bool = True,
    softmax_scores: bool = True,
    eigen_smooth: bool = False,
    **options: Any,
) -> Explanation:
    """SESS around any method (module docstring for the steps).

    Args:
        explainer: any :class:`~camlens.explainer.Explainer` (a familiar class too) of a
            classifier; it explains the patches.
        inputs: ``(B, C, H, W)`` images.
        targets: one per image, or ``None`` for each image's top class (fixed on the whole
            image).
        scales: the sizes of the shorter side (each ≥ the window); default from
            ``num_scales`` and ``scale_step_ratio``.
        window_size: the window's side (default: the input's shorter side).
        step_size: the stride of the window (default: the window).
        smooth: blur the fused map (step 6).
        softmax_scores: score patches on the softmax of the output (the paper's choice).
        eigen_smooth: passed to the method.
        options: ``num_scales``, ``scale_step_ratio``, ``pre_filter_ratio``, ``theta``,
            ``pool``, ``batch_size`` (:data:`SESS_OPTIONS`).

    Example:
        >>> fused = camlens.sess(camlens.GradCAM(model, [model.layer4]), x, scales=[224, 288])
    """
    declared = {option.name: option for option in SESS_OPTIONS}
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise TypeError(f"sess() got unknown option(s) {unknown}; its options: {list(declared)}")
    checked = {
        name: option.check(options.get(name, option.default), "sess")
        for name, option in declared.items()
    }
    inputs = prepare_input(inputs, explainer.model)
    if inputs.dim() != 4:
        raise InputShapeError(f"SESS slides windows over 2-D images, got {tuple(inputs.shape)}")
    height, width = inputs.shape[2:]
    window = int(window_size or min(height, width))
    step = int(step_size or window)
    if window < 1 or step < 1:
        raise ValueError(f"`window_size` and `step_size` must be positive, got {window}, {step}")
    if scales is None:
        increment = round(window * checked["scale_step_ratio"])
        scales = [window + increment * index for index in range(checked["num_scales"])]
    too_small = [int(s) for s in scales if int(s) < window]
    if too_small or not scales:
        raise ValueError(f"every scale must be at least the window {window}, got {too_small}")
    resolved, scores, outputs = fixed_targets(explainer, inputs, targets)
    if is_dense(outputs):
        raise TargetError("SESS scores windows with a classifier's output; got a dense output")
    fused, counts = [], []
    for index, target in enumerate(resolved):
        image = inputs[index : index + 1]
        fused_map, count = _sess_image(
            explainer, image, target, scales, window, step, checked, softmax_scores, eigen_smooth
        )
        fused.append(fused_map)
        counts.append(count)
    raw = torch.stack(fused)
    if smooth:
        raw = _blur(raw)
    return Explanation(
        method=explainer.method.name,
        layer_names=["sess"],
        layer_maps=[raw],
        maps=min_max(raw),
        scores=scores,
        outputs=outputs,
        targets=resolved,
        input_size=(height, width),
        extras={"sess": {**checked, "scales": list(scales), "window": window, "patches": counts}},
    )


class SESS(FamiliarWrapper):
    """SESS (:func:`sess`) under pytorch-grad-cam 1.5.7's call: ``SESS(model, target_layers,
    reshape_transform=None, base_method=GradCAM, scales=None, num_scales=12,
    scale_step_ratio=2/7, window_size=None, step_size=None, pre_filter_ratio=0.0, theta=0.0,
    pool="mean", smooth=True, use_softmax_scores=True, batch_size=32, **kwargs)(input_tensor,
    targets=None, eigen_smooth=False)``; ``base_method`` is a familiar class or a registry
    name (``kwargs`` go to it)."""

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        base_method: type[Explainer] | str = GradCAM,
        scales: Sequence[int] | None = None,
        num_scales: int = 12,
        scale_step_ratio: float = 2 / 7,
        window_size: int | None = None,
        step_size: int | None = None,
        pre_filter_ratio: float = 0.0,
        theta: float = 0.0,
        pool: str = "mean",
        smooth: bool = True,
        use_softmax_scores: bool = True,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        self.base_cam = base_explainer(
            model, target_layers, reshape_transform, base_method, **kwargs
        )
        self.settings: dict[str, Any] = {
            "scales": scales,
            "window_size": window_size,
            "step_size": step_size,
            "smooth": smooth,
            "softmax_scores": use_softmax_scores,
            "num_scales": num_scales,
            "scale_step_ratio": scale_step_ratio,
            "pre_filter_ratio": pre_filter_ratio,
            "theta": theta,
            "pool": pool,
            "batch_size": batch_size,
        }
        for name in ("num_scales", "scale_step_ratio", "pre_filter_ratio", "theta", "pool"):
            next(o for o in SESS_OPTIONS if o.name == name).check(self.settings[name], "SESS")

    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | Any | None = None,
        *,
        eigen_smooth: bool = False,
    ) -> Explanation:
        """The fused explanation (see :func:`sess`)."""
        return sess(
            self.base_cam, input_tensor, targets, eigen_smooth=eigen_smooth, **self.settings
        )
