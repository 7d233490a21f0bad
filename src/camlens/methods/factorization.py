"""Deep Feature Factorization: non-negative matrix factorisation of a layer's activations.

Collins, Achanta & Süsstrunk, "Deep Feature Factorization For Concept Discovery", ECCV 2018
(arXiv:1806.10206). The activations of a batch, ``(B, C, *grid)``, are a ``C × M`` matrix
``V`` (``M = B·h·w`` positions of every image together); NMF writes it as ``V ≈ W H`` with
``W ≥ 0`` of shape ``C × k`` (``k`` *concepts*, each a direction in channel space) and
``H ≥ 0`` of shape ``k × M`` (how strongly each position shows each concept). ``H``, cut
back into images, gives one heat map per concept and image; ``W``'s columns can be scored
by the model's classifier to name the concepts.

As pytorch-grad-cam does (so that layers after a normalisation, with negative values, can
be factorised), each channel is first shifted by its minimum over the batch, ``V − min``,
and the offset is added back to the concepts: ``concepts = W + min``.

**Not a CAM method.** There is no target and the result is ``k`` maps per image, shared
concepts for the whole batch (images are factorised together, so a batch is not the images
one by one): it does not go through the registry or ``camlens methods``. The front end is
:class:`camlens.DeepFeatureFactorization` (pytorch-grad-cam's call), drawn with
:func:`camlens.image.show_factorization_on_image`.

**NMF.** Lee & Seung's multiplicative updates for the Frobenius loss ("Algorithms for
Non-negative Matrix Factorization", NeurIPS 2000): ``H ← H ⊙ (WᵀV) / (WᵀWH)``,
``W ← W ⊙ (VHᵀ) / (WHHᵀ)``, which never increase ``‖V − WH‖`` and keep both factors
non-negative. Start: uniform draws scaled by ``√(mean(V) / k)`` from a CPU generator seeded
``seed`` (so the result does not depend on the device); stop after ``iterations`` or when
the loss, checked every 10 iterations, improves by less than ``tolerance`` relative to the
first loss. Torch on the activations' device, in float32 unless the activations are float64
(float64 on the CPU was 3.4× slower than pytorch-grad-cam's float32 scikit-learn NMF for the
same reconstruction error).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NMF_EPSILON", "Factorization", "factorize_activations", "nmf"]

#: Keeps the multiplicative updates' denominators positive.
NMF_EPSILON = 1e-12


def nmf(
    matrix: torch.Tensor,
    components: int,
    *,
    iterations: int = 500,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``V ≈ W H`` for a non-negative ``(m, n)`` matrix: ``W`` ``(m, k)`` and ``H``
    ``(k, n)``, both non-negative (see the module docstring)."""
    if components < 1:
        raise ValueError(f"`n_components` must be a positive integer, got {components}")
    if bool((matrix < 0).any()):
        raise ValueError("NMF needs a non-negative matrix")
    rows, columns = matrix.shape
    generator = torch.Generator().manual_seed(seed)
    scale = float(matrix.mean().clamp_min(0)) / components
    scale = max(scale, NMF_EPSILON) ** 0.5
    dtype, device = matrix.dtype, matrix.device
    left = scale * torch.rand(rows, components, generator=generator, dtype=torch.float64)
    right = scale * torch.rand(components, columns, generator=generator, dtype=torch.float64)
    left, right = left.to(device, dtype), right.to(device, dtype)
    first = last = None
    for iteration in range(iterations):
        right = right * (left.T @ matrix) / (left.T @ left @ right + NMF_EPSILON)
        left = left * (matrix @ right.T) / (left @ (right @ right.T) + NMF_EPSILON)
        if iteration % 10 == 9:
            loss = float(torch.linalg.matrix_norm(matrix - left @ right))
            if first is None:
                first = max(loss, NMF_EPSILON)
            elif last is not None and (last - loss) / first < tolerance:
                break
            last = loss
    return left, right


@dataclass
class Factorization:
    """The concepts of a batch and where they are.

    Attributes:
        concepts: ``(C, k)`` the concepts in channel space (``W`` plus the channel offsets).
        maps: ``(B, k, *grid)`` each concept's non-negative heat map per image (``H``).
    """

    concepts: torch.Tensor
    maps: torch.Tensor


def factorize_activations(
    activations: torch.Tensor,
    components: int,
    *,
    iterations: int = 500,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> Factorization:
    """Deep Feature Factorization of ``(B, C, *grid)`` activations into ``components``
    concepts (see the module docstring)."""
    batch, channels, *grid = activations.shape
    dtype = activations.dtype if activations.dtype == torch.float64 else torch.float32
    matrix = torch.nan_to_num(activations.detach().to(dtype)).transpose(0, 1).reshape(channels, -1)
    offset = matrix.min(dim=1, keepdim=True).values
    left, right = nmf(
        matrix - offset, components, iterations=iterations, tolerance=tolerance, seed=seed
    )
    maps = right.reshape(components, batch, *grid).transpose(0, 1)
    return Factorization(concepts=left + offset, maps=maps)
