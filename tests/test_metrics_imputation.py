"""ROAD's noisy linear imputation: kept pixels exact, the linear system solved."""

from __future__ import annotations

import pytest
import torch

from camlens.metrics import noisy_linear_imputation

DIRECT, DIAGONAL = 1 / 6, 1 / 12


def neighbour_weights(y: int, x: int, height: int, width: int) -> dict[tuple[int, int], float]:
    """The 8 neighbours of (y, x) inside the image with their weights (Rong et al. 2022)."""
    found = {}
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy, dx) == (0, 0):
                continue
            ny, nx = y + dy, x + dx
            if 0 <= ny < height and 0 <= nx < width:
                found[(ny, nx)] = DIAGONAL if dy and dx else DIRECT
    return found


def dense_solution(image: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Solve "each removed pixel = weighted mean of its neighbours" with a dense matrix,
    built pixel by pixel (one channel)."""
    height, width = image.shape
    unknown = [(y, x) for y in range(height) for x in range(width) if removed[y, x]]
    index = {p: i for i, p in enumerate(unknown)}
    matrix = torch.zeros(len(unknown), len(unknown), dtype=torch.float64)
    rhs = torch.zeros(len(unknown), dtype=torch.float64)
    for row, (y, x) in enumerate(unknown):
        weights = neighbour_weights(y, x, height, width)
        total = sum(weights.values())
        matrix[row, row] = 1.0
        for q, w in weights.items():
            if q in index:
                matrix[row, index[q]] -= w / total
            else:
                rhs[row] += w / total * float(image[q])
    values = torch.linalg.solve(matrix, rhs)
    filled = image.clone()
    for (y, x), value in zip(unknown, values, strict=True):
        filled[y, x] = value
    return filled


def test_kept_pixels_are_exact_even_with_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(2, 3, 9, 11, generator=generator)
    removed = torch.rand(2, 9, 11, generator=generator) < 0.5
    imputed = noisy_linear_imputation(inputs, removed, noise_std=0.1, generator=generator)
    assert torch.equal(
        imputed[~removed[:, None].expand_as(inputs)], inputs[~removed[:, None].expand_as(inputs)]
    )
    assert imputed.dtype == inputs.dtype
    assert not torch.equal(imputed, inputs)


def test_a_hole_in_a_constant_region_is_filled_with_the_constant() -> None:
    inputs = torch.full((1, 2, 5, 5), 0.7)
    inputs[0, :, 2, 2] = -5.0  # the removed value must play no part
    removed = torch.zeros(1, 5, 5, dtype=torch.bool)
    removed[0, 2, 2] = True
    imputed = noisy_linear_imputation(inputs, removed, noise_std=0.0)
    assert imputed[0, :, 2, 2].tolist() == pytest.approx([0.7, 0.7], abs=1e-6)
    # the corner pixel has 3 neighbours: their weighted mean, renormalised
    inputs = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    inputs[0, 0, 0, 1], inputs[0, 0, 1, 0], inputs[0, 0, 1, 1] = 1.0, 2.0, 4.0
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 0, 0] = True
    imputed = noisy_linear_imputation(inputs, removed, noise_std=0.0)
    expected = (DIRECT * 1.0 + DIRECT * 2.0 + DIAGONAL * 4.0) / (2 * DIRECT + DIAGONAL)
    assert float(imputed[0, 0, 0, 0]) == pytest.approx(expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_solver_reaches_the_linear_system_solution(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    height, width = 8, 7
    inputs = torch.rand(1, 2, height, width, generator=generator, dtype=torch.float64)
    removed = torch.rand(1, height, width, generator=generator) < 0.6
    removed[0, 0, :] = True  # a removed border row, and a big connected hole
    imputed = noisy_linear_imputation(
        inputs.to(dtype), removed, noise_std=0.0, tolerance=1e-7
    ).double()
    for channel in range(2):
        expected = dense_solution(inputs[0, channel], removed[0])
        torch.testing.assert_close(imputed[0, channel], expected, atol=1e-5, rtol=0)
    # and the residual of every removed pixel's equation is ~0
    for y, x in removed[0].nonzero().tolist():
        weights = neighbour_weights(y, x, height, width)
        mean = sum(w * imputed[0, 0, q[0], q[1]] for q, w in weights.items())
        assert float(imputed[0, 0, y, x] - mean / sum(weights.values())) == pytest.approx(
            0.0, abs=1e-5
        )


def test_noise_has_the_requested_spread() -> None:
    inputs = torch.zeros(1, 1, 40, 40)
    removed = torch.zeros(1, 40, 40, dtype=torch.bool)
    removed[0, ::2, ::2] = True  # isolated holes in zeros: the solution is 0 plus noise
    generator = torch.Generator().manual_seed(2)
    imputed = noisy_linear_imputation(inputs, removed, noise_std=0.05, generator=generator)
    assert float(imputed[0, 0][removed[0]].std()) == pytest.approx(0.05, rel=0.15)


def test_everything_removed_becomes_zero_and_shapes_are_checked() -> None:
    inputs = torch.rand(1, 3, 4, 4)
    removed = torch.ones(1, 4, 4, dtype=torch.bool)
    assert torch.equal(
        noisy_linear_imputation(inputs, removed, noise_std=0.0), torch.zeros_like(inputs)
    )
    with pytest.raises(ValueError, match="removed"):
        noisy_linear_imputation(inputs, removed[0], noise_std=0.0)


def test_too_few_iterations_warn() -> None:
    generator = torch.Generator().manual_seed(3)
    inputs = torch.rand(1, 1, 16, 16, generator=generator)
    removed = torch.ones(1, 16, 16, dtype=torch.bool)
    removed[0, 0, 0] = False
    with pytest.warns(RuntimeWarning, match="max_iterations"):
        noisy_linear_imputation(inputs, removed, noise_std=0.0, max_iterations=3)
