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


# --- the multigrid-preconditioned solver (the default) against CG and a dense solve ---------


def symmetric_system(
    image: torch.Tensor, removed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The solvers' system ``(D − W_UU) x_U = W_UK x_K`` of one channel in float64, built
    from the weights directly: (matrix, right-hand side, flat indices of the unknowns)."""
    height, width = image.shape
    pixels = height * width
    weights = torch.zeros(pixels, pixels, dtype=torch.float64)
    rows = torch.arange(height)[:, None].expand(height, width).flatten()
    columns = torch.arange(width)[None, :].expand(height, width).flatten()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy, dx) == (0, 0):
                continue
            inside = (rows + dy >= 0) & (rows + dy < height) & (columns + dx >= 0)
            inside &= columns + dx < width
            source = (rows * width + columns)[inside]
            weights[source, source + dy * width + dx] = DIAGONAL if dy and dx else DIRECT
    unknown = removed.flatten().nonzero().flatten()
    known = (~removed.flatten()).nonzero().flatten()
    degree = weights.sum(1)
    matrix = torch.diag(degree[unknown]) - weights[unknown][:, unknown]
    rhs = weights[unknown][:, known] @ image.flatten().double()[known]
    return matrix, rhs, unknown


def blob(height: int, width: int, centre: tuple[float, float], radius: float) -> torch.Tensor:
    """A removed disc (in pixels)."""
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    columns = torch.arange(width, dtype=torch.float64)[None, :]
    return (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2


def road_masks() -> dict[str, torch.Tensor]:
    """Removal masks as ROAD makes them, each ``(H, W)``: scattered pixels, blobs, a region
    joined to the kept pixels only through corners, and degenerate shapes."""
    generator = torch.Generator().manual_seed(7)
    masks = {
        f"scattered {share}%": torch.rand(36, 41, generator=generator) < share / 100
        for share in (10, 50, 90)
    }
    masks["blob"] = blob(40, 40, (18.0, 21.0), 14.0)
    masks["blob at the border, odd size"] = blob(33, 47, (0.0, 30.0), 20.0)
    masks["all but a corner pixel"] = torch.ones(37, 29, dtype=torch.bool)
    masks["all but a corner pixel"][0, 0] = False
    # a removed square whose kept surround touches it only diagonally, plus a big hole
    corner = torch.zeros(30, 30, dtype=torch.bool)
    corner[2:28, 2:28] = True
    corner[1, 1] = False
    corner[0:2, :] = corner[:, 0:2] = corner[28:, :] = corner[:, 28:] = True
    masks["joined through a corner"] = corner
    masks["single column"] = torch.rand(57, 1, generator=generator) < 0.8
    masks["single row"] = torch.rand(1, 23, generator=generator) < 0.8
    masks["2 x 2"] = torch.tensor([[True, True], [True, False]])
    return masks


@pytest.mark.parametrize("name", list(road_masks()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multigrid_matches_cg_and_a_dense_solve_within_the_tolerance(
    name: str, dtype: torch.dtype
) -> None:
    """``‖b − A x‖ ≤ tol · ‖b‖`` bounds the error by ``tol · ‖b‖ / λ_min(A)``: the multigrid
    result must lie that close to the float64 dense solution, and to CG's."""
    removed = road_masks()[name]
    height, width = removed.shape
    generator = torch.Generator().manual_seed(11)
    inputs = torch.rand(1, 2, height, width, generator=generator, dtype=torch.float64)
    inputs = torch.nn.functional.avg_pool2d(inputs, 3, 1, 1, count_include_pad=False).to(dtype)
    tolerance = 1e-5
    fast = noisy_linear_imputation(inputs, removed[None], noise_std=0.0, tolerance=tolerance)
    reference = noisy_linear_imputation(
        inputs, removed[None], noise_std=0.0, tolerance=tolerance, solver="cg"
    )
    assert fast.dtype == dtype
    assert torch.equal(fast[0][:, ~removed], inputs[0][:, ~removed])
    for channel in range(2):
        matrix, rhs, unknown = symmetric_system(inputs[0, channel].double(), removed)
        exact = torch.linalg.solve(matrix, rhs)
        smallest = float(torch.linalg.eigvalsh(matrix)[0])
        found = fast[0, channel].double().flatten()[unknown]
        cg = reference[0, channel].double().flatten()[unknown]
        # storing x in the input's precision alone leaves a residual up to ~eps · ‖|A| |x|‖
        rounding = 4 * torch.finfo(dtype).eps * float((matrix.abs() @ exact.abs()).norm())
        goal = tolerance * float(rhs.norm()) + rounding
        assert float((rhs - matrix @ found).norm()) <= goal
        assert float((rhs - matrix @ cg).norm()) <= goal
        assert float((found - exact).norm()) <= goal / smallest
        assert float((found - cg).norm()) <= 2 * goal / smallest


def test_multigrid_solves_a_batch_of_different_masks_like_each_alone() -> None:
    """Images with different masks (one without kept pixels, one deep blob, scattered
    pixels) solved together: each within the tolerance of its own solve, the one without kept
    pixels 0, and kept pixels exact."""
    generator = torch.Generator().manual_seed(12)
    height, width = 45, 38
    inputs = torch.rand(4, 3, height, width, generator=generator)
    removed = torch.stack(
        [
            torch.ones(height, width, dtype=torch.bool),
            blob(height, width, (22.0, 19.0), 17.0),
            torch.rand(height, width, generator=generator) < 0.5,
            torch.rand(height, width, generator=generator) < 0.9,
        ]
    )
    together = noisy_linear_imputation(inputs, removed, noise_std=0.0)
    assert torch.equal(together[0], torch.zeros_like(together[0]))
    for index in range(1, 4):
        alone = noisy_linear_imputation(
            inputs[index : index + 1], removed[index : index + 1], noise_std=0.0
        )
        torch.testing.assert_close(together[index : index + 1], alone, atol=1e-4, rtol=0)
        kept = ~removed[index]
        assert torch.equal(together[index][:, kept], inputs[index][:, kept])


def test_multigrid_at_roads_size_meets_the_residual_and_agrees_with_cg() -> None:
    """At 128² (several levels, MoRF blobs of a smooth map and scattered LeRF-like pixels):
    the residual criterion holds in float64 and the two solvers agree to ~1e-4."""
    size = 128
    rows = torch.linspace(-1, 1, size)[:, None]
    columns = torch.linspace(-1, 1, size)[None, :]
    relevance = torch.exp(-((rows - 0.2) ** 2 + (columns + 0.1) ** 2) / 0.3)
    order = relevance.flatten().argsort(descending=True).argsort().view(size, size)
    generator = torch.Generator().manual_seed(13)
    noise_map = torch.rand(size, size, generator=generator).flatten().argsort().argsort()
    removed = torch.stack(
        [order < round(share * size * size) for share in (0.1, 0.5, 0.9)]
        + [noise_map.view(size, size) < round(0.7 * size * size)]
    )
    inputs = torch.rand(4, 3, size, size, generator=generator)
    inputs = torch.nn.functional.avg_pool2d(inputs, 5, 1, 2, count_include_pad=False)
    fast = noisy_linear_imputation(inputs.double(), removed, noise_std=0.0, tolerance=1e-6)
    reference = noisy_linear_imputation(inputs, removed, noise_std=0.0, solver="cg")
    torch.testing.assert_close(fast.float(), reference, atol=2e-3, rtol=0)
    degree = torch.nn.functional.conv2d(
        torch.ones(1, 1, size, size, dtype=torch.float64),
        torch.tensor(
            [[[[DIAGONAL, DIRECT, DIAGONAL], [DIRECT, 0, DIRECT], [DIAGONAL, DIRECT, DIAGONAL]]]],
            dtype=torch.float64,
        ),
        padding=1,
    )
    kernel = torch.tensor(
        [[DIAGONAL, DIRECT, DIAGONAL], [DIRECT, 0.0, DIRECT], [DIAGONAL, DIRECT, DIAGONAL]],
        dtype=torch.float64,
    ).expand(3, 1, 3, 3)
    unknown = removed[:, None].double()
    sums = torch.nn.functional.conv2d(fast * unknown, kernel, padding=1, groups=3)
    known = torch.nn.functional.conv2d(inputs.double() * (1 - unknown), kernel, padding=1, groups=3)
    rhs = unknown * known
    residual = unknown * (rhs - (degree * fast * unknown - sums))
    relative = residual.flatten(2).norm(dim=2) / rhs.flatten(2).norm(dim=2)
    assert float(relative.max()) <= 1e-6


def test_multigrid_edge_cases_and_warnings() -> None:
    one = torch.tensor([[[[0.3]]]])
    everything = torch.ones(1, 1, 1, dtype=torch.bool)
    assert torch.equal(noisy_linear_imputation(one, everything, noise_std=0.0), 0 * one)
    assert torch.equal(noisy_linear_imputation(one, ~everything), one)
    removed = blob(64, 64, (32.0, 32.0), 30.0)[None]
    inputs = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(14))
    with pytest.warns(RuntimeWarning, match="max_iterations"):
        noisy_linear_imputation(inputs, removed, noise_std=0.0, max_iterations=1)
    with pytest.raises(ValueError, match="solver"):
        noisy_linear_imputation(inputs, removed, solver="direct")  # type: ignore[arg-type]
    # the noise is drawn and added exactly as with CG
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(15))
    fast = noisy_linear_imputation(inputs, removed, noise_std=0.05, noise=noise)
    plain = noisy_linear_imputation(inputs, removed, noise_std=0.0)
    inside = removed[:, None].expand_as(inputs)
    torch.testing.assert_close(fast[inside], (plain + 0.05 * noise)[inside])
