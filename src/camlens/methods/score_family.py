"""Score-CAM's variants: SS-CAM (smoothed masks) and IS-CAM (integrated masks).

Both keep Score-CAM's pipeline (:mod:`camlens.methods.score`): channel ``k``'s activation
map, upsampled and min-max normalised, is the mask ``H_k`` in [0, 1]; the input masked by
it is scored by the target; the weights are ``w = softmax_k(s_k)``, the softmax of the
scores *over the channels* (camlens's and pytorch-grad-cam's Score-CAM convention: any
target works, and a baseline score ``f(X_b)`` subtracted from every channel's score would
not change a softmax over channels); the map is ``Σ_k w_k A_k``. Only ``s_k`` changes: it
is the mean of the target scores of several perturbed copies of the channel's masked
input, streamed through the model by :func:`~camlens.methods.score.masked_score_maps`
(chunks sized by the memory budget, ``top_k`` strongest channels only if asked).

**SS-CAM** — Wang, Naidu, Michael, Kundu, "SS-CAM: Smoothed Score-CAM for Sharper Visual
Feature Localization", arXiv:2006.14255, 2020. ``s_k = 1/N Σ_{i=1..N} f(X ⊙ (H_k + δ_i))``
with ``δ_i ~ N(0, σ²)`` of the mask's shape: noise is added to the *mask* (the paper's
"smooth with feature", SS-CAM(1), its default). The paper's other variant, "smooth with
input" (SS-CAM(2), ``f((X + δ_i) ⊙ H_k)``), is not implemented. Defaults as in the paper:
``samples`` N = 10, ``noise_std`` σ = 2. The noises ``δ_1 .. δ_N`` are drawn once per call
(float64, on the CPU, from a generator seeded ``seed``) and shared by every channel, image
and target layer, as SmoothGrad-style implementations share one noise draw across channels:
so the maps are reproducible, do not depend on the device, the chunking or the batch, and
with ``noise_std = 0`` they are Score-CAM's exactly.

**IS-CAM** — Naidu, Ghosh, Maurya, Nayak K, Kundu, "IS-CAM: Integrated Score-CAM for
axiomatic-based explanations", arXiv:2010.03023, 2020. The score is integrated along the
path from the empty mask to ``H_k`` in ``N`` steps: ``s_k = 1/N Σ_{i=1..N} f(X ⊙ c_i H_k)``.
With ``path="cumulative"`` (default: the paper's Algorithm 1, whose mask accumulates
``M_i = Σ_{p=1..i} (p/N) H_k``), ``c_i = i(i+1)/(2N)``; with ``path="linear"`` (the
straight-line Riemann sum of integrated gradients), ``c_i = i/N``. ``steps`` N = 10, the
paper's default.
"""

from __future__ import annotations

import torch

from camlens.methods.perturbation import RERUN_OPTIONS
from camlens.methods.registry import Method, Option, RunContext, register
from camlens.methods.score import TOP_K, masked_score_maps

__all__ = ["iscam", "path_coefficients", "sscam", "sscam_noise"]


def sscam_noise(samples: int, size: tuple[int, ...], std: float, seed: int) -> torch.Tensor:
    """``(samples, *size)`` float64 draws of ``N(0, std²)`` from a CPU generator seeded
    ``seed``: the ``δ_i`` added to every channel's mask."""
    generator = torch.Generator().manual_seed(seed)
    return std * torch.randn((samples, *size), generator=generator, dtype=torch.float64)


def sscam(context: RunContext) -> list[torch.Tensor]:
    """SS-CAM maps ``(B, K, *grid)``, one per target layer (see the module docstring)."""
    options = context.options
    samples = int(options["samples"])
    inputs = context.inputs
    noise = sscam_noise(
        samples, tuple(inputs.shape[2:]), float(options["noise_std"]), int(options["seed"])
    ).to(inputs.device)

    def smoothed(masks: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        return masks + noise[copy].to(masks.dtype)

    return masked_score_maps(context, description="SS-CAM", copies=samples, perturb=smoothed)


def path_coefficients(steps: int, path: str) -> torch.Tensor:
    """``(steps,)`` float64 ``c_i``, ``i = 1 .. steps``: ``i/N`` on the linear path,
    ``Σ_{p ≤ i} p/N = i(i+1)/(2N)`` on the paper's cumulative one."""
    i = torch.arange(1, steps + 1, dtype=torch.float64)
    return i / steps if path == "linear" else torch.cumsum(i / steps, dim=0)


def iscam(context: RunContext) -> list[torch.Tensor]:
    """IS-CAM maps ``(B, K, *grid)``, one per target layer (see the module docstring)."""
    options = context.options
    steps = int(options["steps"])
    coefficients = path_coefficients(steps, str(options["path"])).to(context.inputs.device)

    def scaled(masks: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (masks.dim() - 1)
        return masks * coefficients[copy].to(masks.dtype).reshape(shape)

    return masked_score_maps(context, description="IS-CAM", copies=steps, perturb=scaled)


register(
    Method(
        name="sscam",
        runner=sscam,
        options=(
            *RERUN_OPTIONS,
            TOP_K,
            Option(
                name="samples",
                kind=int,
                default=10,
                minimum=1,
                help="noisy copies of each channel's mask whose scores are averaged",
            ),
            Option(
                name="noise_std",
                kind=float,
                default=2.0,
                minimum=0,
                help="standard deviation σ of the Gaussian noise added to the masks",
            ),
            Option(name="seed", kind=int, default=0, help="seed of the noise generator"),
        ),
        needs_gradients=False,
        label="SS-CAM",
        class_name="SSCAM",
        reference="Wang, Naidu, Michael, Kundu, arXiv:2006.14255, 2020",
    )
)

register(
    Method(
        name="iscam",
        runner=iscam,
        options=(
            *RERUN_OPTIONS,
            TOP_K,
            Option(
                name="steps",
                kind=int,
                default=10,
                minimum=1,
                help="steps N of the path from the empty mask to the channel's mask",
            ),
            Option(
                name="path",
                kind=str,
                default="cumulative",
                choices=("cumulative", "linear"),
                help="masks Σ_{p≤i} (p/N)·H (the paper's algorithm) or (i/N)·H (a straight line)",
            ),
        ),
        needs_gradients=False,
        label="IS-CAM",
        class_name="ISCAM",
        reference="Naidu, Ghosh, Maurya, Nayak K, Kundu, arXiv:2010.03023, 2020",
    )
)
