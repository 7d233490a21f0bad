"""Smooth Grad-CAM++: Grad-CAM++ with its derivatives averaged over noisy copies of the input.

Omeiza, Speakman, Cintas & Weldermariam, "Smooth Grad-CAM++: An Enhanced Inference Level
Visualization Technique for Deep Convolutional Neural Network Models", arXiv:1908.01224,
2019. SmoothGrad's idea (Smilkov et al., 2017: average gradients over copies of the input
with Gaussian noise) applied to the three derivatives Grad-CAM++ uses. With ``G_i`` the
gradient of the target score at the target layer for the noisy input ``x + σ·δ_i``
(``i = 1 .. n``), and Grad-CAM++'s exponential-score convention that the second and third
derivatives are ``G²`` and ``G³``:

    D¹ = 1/n Σ_i G_i       D² = 1/n Σ_i G_i²       D³ = 1/n Σ_i G_i³
    α  = D² / (2·D² + ΣA · D³)                     (0 where D² = 0)
    w_c = Σ_grid α_c ⊙ ReLU(D¹_c)                   map = Σ_c w_c · A_c

where ``A`` (and its grid sum ``ΣA``) are the activations of the *clean* input — the map
shows the image itself, smoothed weights only. With ``noise_level = 0`` every copy is the
image and the map is Grad-CAM++'s exactly (tested).

The noise: ``δ_1 .. δ_n`` of the input's shape ``(C, *spatial)``, ``N(0, 1)`` in float64
from a CPU generator seeded ``seed``, drawn once per call and shared by every image; image
``b``'s copies are ``x_b + σ_b δ_i`` with ``σ_b = noise_level · (max x_b − min x_b)``
(SmoothGrad's noise level, a share of each image's value range, so it does not depend on how
inputs were normalised). So the maps are reproducible, independent of the device and of the
batch (a batch is the images one by one). Defaults: ``samples`` n = 10 and
``noise_level`` 0.15 (SmoothGrad suggests 10–20 %; more samples smooth more and cost one
forward and backward pass each, as a Grad-CAM++ call).

A runner: each noisy copy is one forward pass of the borrowed model with the graph recorded
from the first target layer on (nothing before it is differentiated, ``param.grad`` stays
untouched) and one backward pass per target column. ``eigen_smooth`` reduces the weighted
channels by their first principal component, as for Grad-CAM++.
"""

from __future__ import annotations

import torch

from camlens.capture import ActivationCapture, borrowed
from camlens.errors import LayerNeverRanError
from camlens.methods.gradient import PLUSPLUS_EPSILON
from camlens.methods.perturbation import weighted_maps
from camlens.methods.registry import Method, Option, RunContext, register
from camlens.target_sets import TargetSet

__all__ = ["NOISE_LEVEL", "NOISE_SEED", "input_noise", "smooth_gradcam_plusplus"]


def input_noise(samples: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """``(samples, *shape)`` float64 standard normal draws from a CPU generator seeded
    ``seed``: the ``δ_i`` shared by every image of the batch."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((samples, *shape), generator=generator, dtype=torch.float64)


def _noisy_gradients(context: RunContext, inputs: torch.Tensor) -> list[list[torch.Tensor]]:
    """Per target column ``k``, per layer: the gradients ``(B, C, *grid)`` at ``inputs``."""
    layers, names = list(context.layers), list(context.layer_names)
    with borrowed(context.model) as handles:
        capture = ActivationCapture(context.model, layers, names, handles, track_gradients=True)
        with torch.no_grad():
            output = context.model(inputs)
        activations = capture.activations()
        with torch.enable_grad():
            scores = TargetSet(context.targets).scores(context.score_tensor(output))
            if not scores.requires_grad:
                raise LayerNeverRanError(
                    f"the target scores do not depend on the target layer(s) {names}; choose "
                    "a layer on the path to the output that the targets read."
                )
            count = scores.shape[1]
            columns = [
                torch.autograd.grad(
                    scores[:, k].sum(), activations, retain_graph=k < count - 1, allow_unused=True
                )
                for k in range(count)
            ]
    missing = [name for name, gradient in zip(names, columns[0], strict=True) if gradient is None]
    if missing:
        raise LayerNeverRanError(
            f"the target scores do not depend on layer(s) {missing} (they ran, but their output "
            "does not reach the scores); choose a layer on the path to the output."
        )
    assert context.reshape is not None, "Smooth Grad-CAM++ needs the engine's reshape"
    return [
        [
            context.reshape(layer, gradient.detach())  # type: ignore[union-attr]
            for layer, gradient in zip(layers, column, strict=True)
        ]
        for column in columns
    ]


def smooth_gradcam_plusplus(context: RunContext) -> list[torch.Tensor]:
    """Smooth Grad-CAM++ maps ``(B, K, *grid)``, one per target layer (module docstring)."""
    options = context.options
    samples = int(options["samples"])
    inputs = context.inputs
    spread = inputs.flatten(1).amax(1) - inputs.flatten(1).amin(1)  # (B,)
    sigma = (float(options["noise_level"]) * spread).reshape(-1, *(1,) * (inputs.dim() - 1))
    noise = input_noise(samples, tuple(inputs.shape[1:]), int(options["seed"]))
    sums: list[list[list[torch.Tensor]]] | None = None  # [k][layer] → [D¹, D², D³] sums
    for index in range(samples):
        noisy = inputs + sigma * noise[index].to(inputs.device, inputs.dtype)
        columns = _noisy_gradients(context, noisy)
        if sums is None:
            sums = [[[torch.zeros_like(g) for _ in range(3)] for g in column] for column in columns]
        for column_sums, column in zip(sums, columns, strict=True):
            for power_sums, gradient in zip(column_sums, column, strict=True):
                for power, total in enumerate(power_sums, start=1):
                    total += gradient.pow(power)
    assert sums is not None
    maps = []
    for position, activations in enumerate(context.activations):
        dims = tuple(range(2, activations.dim()))
        activation_sum = activations.sum(dim=dims, keepdim=True)
        weights = []
        for column_sums in sums:
            first, second, third = (
                (total / samples).to(activations.dtype) for total in column_sums[position]
            )
            alpha = second / (2 * second + activation_sum * third + PLUSPLUS_EPSILON)
            alpha = torch.where(second != 0, alpha, torch.zeros_like(alpha))
            weights.append((alpha * torch.relu(first)).sum(dim=dims))  # (B, C)
        maps.append(weighted_maps(torch.stack(weights, dim=1), activations, context.eigen_smooth))
    return maps


#: The input-noise options Smooth Grad-CAM++ and the noise tunnel (``camlens.wrappers``) share.
NOISE_LEVEL = Option(
    name="noise_level",
    kind=float,
    default=0.15,
    minimum=0,
    help="noise σ as a share of each image's value range (max − min)",
)
NOISE_SEED = Option(name="seed", kind=int, default=0, help="seed of the noise generator")


register(
    Method(
        name="smoothgradcam++",
        runner=smooth_gradcam_plusplus,
        needs_gradients=True,
        label="Smooth Grad-CAM++",
        class_name="SmoothGradCAMPlusPlus",
        reference="Omeiza, Speakman, Cintas & Weldermariam, arXiv:1908.01224, 2019",
        options=(
            Option(
                name="samples",
                kind=int,
                default=10,
                minimum=1,
                help="noisy copies of the input whose derivatives are averaged",
            ),
            NOISE_LEVEL,
            NOISE_SEED,
        ),
    )
)
