"""Multigrid-preconditioned conjugate gradients for the imputation system of ROAD.

The system (see :mod:`camlens.metrics.imputation`) is ``A x = b`` with
``A = U (D − W) U`` on the removed ("unknown") pixels ``U`` of each image: a 9-point graph
Laplacian with Dirichlet values at the kept pixels. Jacobi-preconditioned CG needs
``O(diameter)`` iterations on a large removed blob (100–450 at 224², 250–950 at 512², the
MoRF case of ROAD); a multigrid preconditioner makes the count almost independent of the
blob's size (5–9 in bench/RESULTS.md).

The hierarchy (built once per image and shared by its channels):

* **Coarse grids by injection** (vertex-centred): coarse point ``(i, j)`` sits on fine pixel
  ``(2i, 2j)`` and is an unknown when that pixel is. Requiring the fine pixel itself (not
  "any child") keeps every coarse unknown tied to a fine one, so the prolongation has full
  column rank and the coarse operator stays nonsingular.
* **Linear interpolation** ``P`` (bilinear, constant beyond the image edge, zero at kept
  pixels) and restriction ``R = Pᵀ``.
* **Galerkin coarse operators** ``A_H = Pᵀ A P`` (not a rediscretisation): near kept pixels
  the fine equations are dominated by their known neighbours, and only the Galerkin product
  carries that "Dirichlet mass" to coarse grids. With scattered removals a rediscretised
  coarse operator would see one connected unknown region and no boundary at all — singular
  — while the fine system is well conditioned. ``A_H`` is again a 9-point stencil, with
  coefficients varying in space, read off by probing ``Pᵀ A P`` with 9 interleaved
  indicator vectors (a colouring; Curtis, Powell & Reid, IMA J. Appl. Math. 13, 1974).
* **Smoother**: damped Jacobi ``M = diag(m)``, ``m_i = max(a_ii, Σ_j |a_ij| / 1.9)``, so that
  ``2M − A`` is strictly diagonally dominant, hence the smoother converges in the energy norm
  (the argument of the ℓ1-Jacobi smoother, Baker, Falgout, Kolev & Yang, SIAM J. Sci. Comput.
  33(5), 2011). On the fine interior this is Jacobi with weight 0.95; the 9-point stencil's
  high-frequency eigenvalues of ``D⁻¹A`` lie in ``[2/3, 4/3]``, a smoothing factor ≈ 0.37.
* **Coarsest grid** (≤ 100 points): solved exactly (the dense matrix inverted once through
  its Cholesky factor). Scattered removals, where coarse grids cannot help, get fewer
  levels (see :func:`_hierarchy`).

One V(1,1) cycle with the same Jacobi step before and after the coarse correction and
``R = Pᵀ`` is a symmetric positive definite preconditioner when the smoother satisfies the
condition above and the coarse solve is SPD (Tatebe, "The multigrid preconditioned conjugate
gradient method", Copper Mountain Conference on Multigrid Methods, 1993; Trottenberg,
Oosterlee & Schüller, *Multigrid*, 2001, §7.8), so the outer CG keeps its guarantees.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["dot", "multigrid_conjugate_gradients", "warn_if_unconverged"]

#: The coarsest grid holds at most this many points and is solved by a dense factorisation.
_COARSEST_POINTS = 100
#: Holes holding an entirely removed block of ``2^k × 2^k`` pixels with ``k`` at least this
#: get the full hierarchy; shallower ones only ``k`` levels.
_FULL_DEPTH = 3
#: ``m_i = max(a_ii, Σ_j |a_ij| / _SMOOTHER_BOUND)``; below 2 keeps ``2M − A`` dominant.
_SMOOTHER_BOUND = 1.9
#: The 9 stencil offsets ``(dy, dx)`` in raster order; index 4 is the centre.
_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]

Operator = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Level:
    """One grid of the hierarchy: its unknowns ``(B, 1, h, w)`` (0/1 in the solve's dtype),
    its operator, and the inverse Jacobi diagonal ``(B, 1, h, w)`` (0 off the unknowns)."""

    unknown: torch.Tensor
    apply: Operator
    inverse_smoother: torch.Tensor


def _prolong(coarse: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation of ``(B, C, h, w)`` coarse values onto the fine ``shape``
    ``(H, W)``, ``h = ⌈H/2⌉``: per axis ``fine[2i] = coarse[i]``,
    ``fine[2i + 1] = (coarse[i] + coarse[i + 1]) / 2``, the last coarse value repeated beyond
    the edge (the image border is a natural boundary, not a zero one)."""
    return _prolong_axis(_prolong_axis(coarse, -1, shape[1]), -2, shape[0])


def _prolong_axis(coarse: torch.Tensor, dim: int, length: int) -> torch.Tensor:
    """:func:`_prolong` along one axis (``dim`` is -1 or -2)."""
    size = coarse.shape[dim]
    shape = list(coarse.shape)
    shape[dim] = 2 * size
    fine = coarse.new_empty(shape)
    if dim == -1:
        even, odd = fine[..., 0::2], fine[..., 1::2]
    else:
        even, odd = fine[..., 0::2, :], fine[..., 1::2, :]
    even.copy_(coarse)
    if size > 1:
        odd.narrow(dim, 0, size - 1).copy_(
            coarse.narrow(dim, 0, size - 1) + coarse.narrow(dim, 1, size - 1)
        ).mul_(0.5)
    odd.narrow(dim, size - 1, 1).copy_(coarse.narrow(dim, size - 1, 1))
    return fine.narrow(dim, 0, length)


def _restrict(fine: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``Pᵀ``, the transpose of :func:`_prolong`: fine ``(B, C, H, W)`` values summed onto
    the coarse ``shape`` with the interpolation weights (full weighting, times 4)."""
    return _restrict_axis(_restrict_axis(fine, -2, shape[0]), -1, shape[1])


def _restrict_axis(fine: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """:func:`_restrict` along one axis (``dim`` is -1 or -2)."""
    if dim == -1:
        even, odd = fine[..., 0::2], fine[..., 1::2]
    else:
        even, odd = fine[..., 0::2, :], fine[..., 1::2, :]
    coarse = even.clone()
    count = odd.shape[dim]  # fine[2i + 1] exists for i < count
    if count:
        coarse.narrow(dim, 0, count).add_(odd, alpha=0.5)
        inner = min(count, size - 1)
        coarse.narrow(dim, 1, inner).add_(odd.narrow(dim, 0, inner), alpha=0.5)
        if count == size:  # the last odd value interpolated the repeated edge value
            coarse.narrow(dim, size - 1, 1).add_(odd.narrow(dim, size - 1, 1), alpha=0.5)
    return coarse


def _stencil_operator(stencil: torch.Tensor) -> Operator:
    """``x ↦ Σ_o stencil[:, o] · x shifted by offset o`` for a ``(B, 9, h, w)`` stencil."""
    height, width = stencil.shape[-2:]
    weights = [stencil[:, index : index + 1] for index in range(9)]

    def apply(field: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(field, (1, 1, 1, 1))
        result = weights[4] * field
        for index, (dy, dx) in enumerate(_OFFSETS):
            if index != 4:
                shifted = padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
                result.addcmul_(weights[index], shifted)
        return result

    return apply


def _probe(
    apply: Operator, unknown: torch.Tensor, fine: torch.Tensor | None = None
) -> torch.Tensor:
    """The ``(B, 9, h, w)`` stencil of the 9-point operator ``Pᵀ A P`` on the
    ``(B, 1, h, w)`` coarse ``unknown`` (``P`` the interpolation onto the ``fine`` unknowns;
    without ``fine``, ``P = I`` and ``apply`` itself is read).

    Probe ``c`` is 1 on the unknowns whose (row mod 3, column mod 3) is colour ``c``. A
    9-point operator couples a point only to neighbours of distinct colours, so
    ``(Pᵀ A P probe_c)[k]`` is the one coefficient between ``k`` and its neighbour of colour
    ``c``: 9 products give all coefficients (Curtis, Powell & Reid 1974). The stencil is
    symmetric up to rounding, which is left as is: it only enters the preconditioner."""
    batch, _, height, width = unknown.shape
    device, dtype = unknown.device, unknown.dtype
    rows = torch.arange(height, device=device)[:, None]
    columns = torch.arange(width, device=device)[None, :]
    colours = torch.arange(9, device=device)[:, None, None]
    probes = ((rows % 3) * 3 + columns % 3 == colours).to(dtype).unsqueeze(0) * unknown
    if fine is None:
        responses = unknown * apply(probes)
    else:
        fine_probes = fine * _prolong(probes, (fine.shape[-2], fine.shape[-1]))
        responses = unknown * _restrict(apply(fine_probes), (height, width))
    index = torch.stack([((rows + dy) % 3) * 3 + (columns + dx) % 3 for dy, dx in _OFFSETS])
    return torch.gather(responses, 1, index.expand(batch, 9, height, width))


def _inverse_smoother(diagonal: torch.Tensor, row_sum: torch.Tensor, unknown: torch.Tensor):
    """``1 / max(a_ii, Σ_j |a_ij| / 1.9)`` on the unknowns, 0 elsewhere."""
    scale = torch.maximum(diagonal, row_sum / _SMOOTHER_BOUND)
    return torch.where(unknown > 0, 1 / scale.clamp_min(torch.finfo(scale.dtype).tiny), 0.0)


def _dense_solver(level_stencil: torch.Tensor, unknown: torch.Tensor) -> Operator:
    """An exact solve with the coarsest operator: each image's dense matrix (identity rows
    off the unknowns), inverted once through its Cholesky factor."""
    batch, _, height, width = unknown.shape
    points = height * width
    device, dtype = unknown.device, unknown.dtype
    matrix = torch.zeros(batch, points, points, device=device, dtype=dtype)
    rows = torch.arange(height, device=device)[:, None].expand(height, width)
    columns = torch.arange(width, device=device)[None, :].expand(height, width)
    source = (rows * width + columns).flatten()
    for index, (dy, dx) in enumerate(_OFFSETS):
        inside = (rows + dy >= 0) & (rows + dy < height) & (columns + dx >= 0)
        inside = (inside & (columns + dx < width)).flatten()
        target = source + dy * width + dx
        matrix[:, source[inside], target[inside]] = level_stencil[:, index].flatten(1)[:, inside]
    off = (unknown.flatten(1) == 0).to(dtype)
    matrix = matrix + torch.diag_embed(off)
    factor, _ = torch.linalg.cholesky_ex(matrix)
    inverse = torch.cholesky_inverse(factor)  # ≤ 100², cheaper per cycle than 2 solves

    def solve(residual: torch.Tensor) -> torch.Tensor:
        channels = residual.shape[1]
        # an elementwise product-sum, not a batched matmul: BLAS threads stall on a busy
        # machine, and (B, ≤ 100, ≤ 100) × (B, ≤ 100, C) is tiny
        flat = residual.flatten(2)[:, :, None, :]  # (B, C, 1, points)
        solution = (inverse[:, None] * flat).sum(-1)  # (B, C, points)
        return solution.reshape(batch, channels, height, width) * unknown

    return solve


def _hierarchy(
    unknown: torch.Tensor, apply: Operator, diagonal: torch.Tensor, off_diagonal: torch.Tensor
) -> tuple[list[_Level], Operator]:
    """The levels, finest first, and the solver of the coarsest one.

    Coarse grids pay off only where the removed pixels form deep holes: error far from any
    kept pixel is what Jacobi smoothing cannot reach, and the setup of a level costs about
    two V-cycles. So with ``k`` the largest ``k`` such that some aligned ``2ᵏ × 2ᵏ`` block is
    entirely removed, ``k ≥ 3`` (a removed blob) gets the full hierarchy down to an exact
    solve on at most 100 points, and a smaller ``k`` (scattered removals) only ``k`` levels,
    the coarsest smoothed once (``k ≤ 1``: the symmetric two-step Jacobi preconditioner)."""
    smoother = _inverse_smoother(diagonal, diagonal + off_diagonal, unknown)
    levels = [_Level(unknown, apply, smoother)]
    depth, block = 0, unknown
    while max(block.shape[-2:]) > 1:
        block = -torch.nn.functional.max_pool2d(-block, 2, 2, ceil_mode=True)
        if not bool((block > 0).any()):
            break
        depth += 1
    limit = depth if depth < _FULL_DEPTH else sys.maxsize  # a blob: down to the exact solve
    stencil = None
    while len(levels) < limit and _points(levels[-1].unknown) > _COARSEST_POINTS:
        fine = levels[-1].unknown
        coarse = fine[..., ::2, ::2]
        stencil = _probe(levels[-1].apply, coarse, fine)
        row_sum = stencil.abs().sum(1, keepdim=True)
        smoother = _inverse_smoother(stencil[:, 4:5], row_sum, coarse)
        levels.append(_Level(coarse, _stencil_operator(stencil), smoother))
    last = levels[-1]
    if _points(last.unknown) > _COARSEST_POINTS:
        return levels, lambda residual: last.inverse_smoother * residual
    if stencil is None:  # the fine grid itself is small
        stencil = _probe(last.apply, last.unknown)
    return levels, _dense_solver(stencil, last.unknown)


def _points(grid: torch.Tensor) -> int:
    """The number of points of a ``(…, h, w)`` grid."""
    return grid.shape[-2] * grid.shape[-1]


def _v_cycle(levels: list[_Level], coarsest: Operator, residual: torch.Tensor) -> torch.Tensor:
    """One symmetric V(1,1) cycle from a zero guess: an SPD approximation of ``A⁻¹ r``."""
    corrections = []
    residuals = [residual]
    for level, coarse in itertools.pairwise(levels):
        correction = level.inverse_smoother * residuals[-1]
        corrections.append(correction)
        rest = residuals[-1] - level.apply(correction)
        residuals.append(coarse.unknown * _restrict(rest, tuple(coarse.unknown.shape[-2:])))
    correction = coarsest(residuals[-1])
    for depth in range(len(levels) - 2, -1, -1):
        level = levels[depth]
        shape = tuple(level.unknown.shape[-2:])
        correction = corrections[depth] + level.unknown * _prolong(correction, shape)
        correction = correction + level.inverse_smoother * (
            residuals[depth] - level.apply(correction)
        )
    return correction


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inner products of every ``(image, channel)`` system at once (over the last two axes)."""
    return (a * b).sum(dim=(-2, -1), keepdim=True)


def warn_if_unconverged(
    rhs: torch.Tensor, residual: torch.Tensor, tolerance: float, max_iterations: int
) -> None:
    """Warn (at the caller's caller) when a system's relative residual is above
    ``tolerance`` after ``max_iterations``: the solution is returned all the same."""
    size = dot(rhs, rhs).sqrt()
    relative = torch.where(size > 0, dot(residual, residual).sqrt() / size.clamp_min(1e-30), 0.0)
    worst = float(relative.max())
    if worst > tolerance:
        warnings.warn(
            f"the imputation solver stopped after {max_iterations} iterations with a relative "
            f"residual of {worst:.2e} (> tolerance {tolerance:.0e}); raise `max_iterations`.",
            RuntimeWarning,
            stacklevel=4,
        )


def multigrid_conjugate_gradients(
    apply: Operator,
    rhs: torch.Tensor,
    unknown: torch.Tensor,
    diagonal: torch.Tensor,
    off_diagonal: torch.Tensor,
    *,
    tolerance: float,
    max_iterations: int,
) -> tuple[torch.Tensor, int]:
    """Solve ``apply(x) = rhs`` for every ``(image, channel)`` at once by CG preconditioned
    with one multigrid V-cycle (Hestenes & Stiefel 1952; Tatebe 1993).

    Args:
        apply: the fine operator, ``(B, C, H, W) → (B, C, H, W)``, zero off the unknowns.
        rhs: ``(B, C, H, W)``, zero off the unknowns.
        unknown: ``(B, 1, H, W)`` 0/1, the unknowns (an image without kept pixels must have
            none: its operator is singular).
        diagonal: ``(B, 1, H, W)`` (or broadcastable), ``a_ii``.
        off_diagonal: ``(B, 1, H, W)``, ``Σ_{j ≠ i} |a_ij|``.
        tolerance: stop when ``‖rhs − apply(x)‖ ≤ tolerance · ‖rhs‖`` for every system, for
            the recursively updated residual as in plain CG. When that is met the true
            residual is computed; if rounding made it drift above the goal, CG restarts from
            it once (a goal below the precision's rounding level is then left as reached).
        max_iterations: at most this many iterations; not converging warns.

    Returns:
        The solution and the number of iterations run.
    """

    levels, coarsest = _hierarchy(unknown, apply, diagonal, off_diagonal)
    solution = torch.zeros_like(rhs)
    residual = rhs.clone()
    goal = tolerance * dot(rhs, rhs).sqrt()
    preconditioned = _v_cycle(levels, coarsest, residual)
    direction = preconditioned
    product = dot(residual, preconditioned)
    iteration, restarted = 0, False
    while iteration < max_iterations:
        iteration += 1
        applied = apply(direction)
        curvature = dot(direction, applied)
        step = torch.where(curvature > 0, product / curvature.clamp_min(1e-30), 0.0)
        solution.addcmul_(step, direction)
        residual.addcmul_(step, applied, value=-1)
        if bool((dot(residual, residual).sqrt() <= goal).all()):
            if restarted:
                return solution, iteration
            # the updated residual drifts from the true one: check it, restart from it once
            residual = rhs - apply(solution)
            if bool((dot(residual, residual).sqrt() <= goal).all()):
                return solution, iteration
            restarted = True
            direction = torch.zeros_like(direction)
        preconditioned = _v_cycle(levels, coarsest, residual)
        updated = dot(residual, preconditioned)
        ratio = torch.where(product > 0, updated / product.clamp_min(1e-30), 0.0)
        direction = preconditioned + ratio * direction
        product = updated
    warn_if_unconverged(rhs, rhs - apply(solution), tolerance, max_iterations)
    return solution, iteration
