"""KPCA-CAM: the first *kernel* principal component of a layer's activations.

Karmani, Yu, Olatunji & Zhou, "KPCA-CAM: Visual Explainability of Deep Computer Vision
Models using Kernel PCA", IEEE MMSP 2024 (arXiv:2410.00267). Eigen-CAM projects each grid
position on the first principal component of the activations; KPCA-CAM does the same in the
feature space of a kernel, so that non-linear structure between channels counts.

Per image, the ``N = h·w`` grid positions are points ``x_i ∈ R^C`` (channels centred over
the positions, as Eigen-CAM and pytorch-grad-cam do). With the kernel matrix
``K_ij = k(x_i, x_j)`` and its doubly centred form ``K̃ = J K J`` (``J = I − 1/N``, the
centring in feature space), let ``λ, α`` be the largest eigenvalue of ``K̃`` and its unit
eigenvector. The map is the projection of each position on the first kernel component,

    m_i = (K̃ α)_i / √λ = √λ · α_i

(the scores that kernel PCA returns, e.g. scikit-learn's ``KernelPCA.fit_transform``).
Kernels (``γ``: option ``gamma``, ``None`` = ``1/C`` as in scikit-learn):

* ``"sigmoid"`` (default, as pytorch-grad-cam's ``KPCA_CAM``): ``tanh(γ·⟨x, y⟩ + 1)``;
* ``"rbf"``: ``exp(−γ·‖x − y‖²)``;
* ``"linear"``: ``⟨x, y⟩`` — ordinary PCA, so the map equals Eigen-CAM's (tested).

An eigenvector's sign is arbitrary; as for Eigen-CAM (:mod:`camlens.methods.reduction`) the
map is oriented to correlate positively with the plain channel sum of the activations (a
tie: the largest-magnitude entry positive). pytorch-grad-cam (through scikit-learn) makes the
largest-magnitude entry of the eigenvector positive instead, so its maps agree with camlens's
up to sign.

**Cost.** ``K`` is ``N × N`` per image and its eigendecomposition ``O(N³)``: fine for the
7 × 7 to 32 × 32 grids CAMs are taken at (a 32 × 32 grid: a 1024 × 1024 matrix), heavy
beyond. A grid with more than ``max_locations`` positions (default 4096, a 64 × 64 grid:
128 MiB of float64 kernel and seconds of CPU per image) is refused with an error that says
how to proceed. The map does not depend on the target (class-agnostic, no gradients); the
``K`` targets of an image share it. The computation runs on the activations' device and
dtype (float32, or float64 for a float64 model).
"""

from __future__ import annotations

import torch

from camlens.errors import InputShapeError
from camlens.methods.registry import Method, Option, RunContext, register

__all__ = ["KERNELS", "MAX_LOCATIONS", "kernel_matrix", "kernel_principal_component", "kpcacam"]

#: The kernels KPCA-CAM offers (option ``kernel``).
KERNELS = ("sigmoid", "rbf", "linear")

#: Default of ``max_locations``: the largest grid KPCA-CAM accepts without being told.
MAX_LOCATIONS = 4096

#: scikit-learn's ``coef0`` of the sigmoid kernel, kept so that maps agree with upstream.
SIGMOID_OFFSET = 1.0


def kernel_matrix(points: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """``(B, N, C)`` points → ``(B, N, N)`` kernel matrices."""
    if kernel == "rbf":
        return torch.exp(-gamma * torch.cdist(points, points).pow(2))
    products = points @ points.transpose(1, 2)
    if kernel == "sigmoid":
        return torch.tanh(gamma * products + SIGMOID_OFFSET)
    return products


def _orient(projection: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``projection`` ``(B, N)`` with its sign chosen to correlate positively with
    ``reference`` ``(B, N)``; without correlation, its largest-magnitude entry positive."""
    reference = reference - reference.mean(dim=1, keepdim=True)
    agreement = (projection * reference).sum(dim=1, keepdim=True)
    peak = projection.gather(1, projection.abs().argmax(dim=1, keepdim=True))
    sign = torch.where(agreement != 0, agreement.sign(), peak.sign())
    return projection * torch.where(sign == 0, torch.ones_like(sign), sign)


def kernel_principal_component(
    activations: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None
) -> torch.Tensor:
    """``(B, C, *grid)`` → ``(B, *grid)``: each position's score on the first kernel
    principal component, oriented (see the module docstring)."""
    batch, channels, *grid = activations.shape
    points = torch.nan_to_num(activations.reshape(batch, channels, -1).transpose(1, 2))
    centred = points - points.mean(dim=1, keepdim=True)
    matrix = kernel_matrix(centred, kernel, 1.0 / channels if gamma is None else gamma)
    matrix = matrix - matrix.mean(dim=1, keepdim=True)
    matrix = matrix - matrix.mean(dim=2, keepdim=True)  # J K J
    matrix = 0.5 * (matrix + matrix.transpose(1, 2))  # exactly symmetric for eigh
    values, vectors = torch.linalg.eigh(matrix)  # ascending eigenvalues
    projection = vectors[..., -1] * values[:, -1:].clamp_min(0).sqrt()
    return _orient(projection, points.sum(dim=2)).reshape(batch, *grid)


def kpcacam(context: RunContext) -> list[torch.Tensor]:
    """KPCA-CAM maps ``(B, K, *grid)``, one per target layer (the same for every target)."""
    options = context.options
    maps = []
    for name, activations in zip(context.layer_names, context.activations, strict=True):
        locations = activations[0, 0].numel()
        if locations > options["max_locations"]:
            raise InputShapeError(
                f"KPCA-CAM at layer {name!r}: its grid {tuple(activations.shape[2:])} has "
                f"{locations} positions, above max_locations={options['max_locations']} (the "
                f"kernel matrix is positions² per image, its eigendecomposition positions³); "
                "choose a coarser layer or a smaller input, or raise the option "
                f"(options={{'max_locations': {locations}}})."
            )
        single = kernel_principal_component(activations, options["kernel"], options["gamma"])
        maps.append(single.unsqueeze(1).expand(-1, context.num_targets, *single.shape[1:]))
    return maps


register(
    Method(
        name="kpcacam",
        runner=kpcacam,
        needs_gradients=False,
        reruns_model=False,
        label="KPCA-CAM",
        class_name="KPCA_CAM",
        reference="Karmani et al., arXiv:2410.00267, 2024",
        options=(
            Option(
                name="kernel",
                kind=str,
                default="sigmoid",
                choices=KERNELS,
                help="kernel of the kernel PCA (linear = Eigen-CAM)",
            ),
            Option(
                name="gamma",
                kind=float,
                default=None,
                nullable=True,
                minimum=0,
                exclusive_minimum=True,
                help="γ of the rbf and sigmoid kernels; None: 1 / channels",
            ),
            Option(
                name="max_locations",
                kind=int,
                default=MAX_LOCATIONS,
                minimum=1,
                help="refuse grids with more positions (cost: positions² memory, positions³ time)",
            ),
        ),
    )
)
