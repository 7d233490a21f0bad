"""Spearman rank correlation and SSIM against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from camlens.metrics import spearman_correlation, ssim
from camlens.metrics.similarity import average_ranks

C1, C2 = 0.01**2, 0.03**2


def test_average_ranks_share_ties() -> None:
    assert average_ranks(torch.tensor([[5.0, 1.0, 5.0, 3.0]])).tolist() == [[2.5, 0, 2.5, 1]]


def test_spearman_by_hand() -> None:
    first = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 3.0]])
    second = torch.tensor([[1.0, 3.0, 2.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    rho = spearman_correlation(first, second)
    # no ties: 1 − 6 Σd² / (n (n² − 1)) with Σd² = 2, n = 4
    assert float(rho[0]) == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert float(rho[1]) == pytest.approx(-1.0)
    # ties: ranks [0.5, 0.5, 2, 3] vs [0, 1, 2, 3] -> 4.5 / sqrt(4.5 · 5)
    assert float(rho[2]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_spearman_of_identical_and_monotone_maps_is_one_and_constant_is_nan() -> None:
    maps = torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(0))
    assert spearman_correlation(maps, maps).tolist() == pytest.approx([1.0] * 3)
    assert spearman_correlation(maps, maps.exp() * 7).tolist() == pytest.approx([1.0] * 3)
    assert torch.isnan(spearman_correlation(maps[:1], torch.ones(1, 6, 5))).all()
    with pytest.raises(ValueError, match="one shape"):
        spearman_correlation(maps, maps[:, :3])


def test_ssim_of_identical_maps_is_one_at_any_scale() -> None:
    maps = torch.rand(2, 20, 17, generator=torch.Generator().manual_seed(1))
    assert ssim(maps, maps).tolist() == pytest.approx([1.0, 1.0])
    assert ssim(maps, 3 * maps + 1).tolist() == pytest.approx([1.0, 1.0])  # scaled to [0, 1]


def test_ssim_of_constant_maps_by_hand() -> None:
    first = torch.full((1, 12, 12), 0.2, dtype=torch.float64)
    second = torch.full((1, 12, 12), 0.6, dtype=torch.float64)
    # no variance: SSIM = (2ab + C1) / (a² + b² + C1)
    expected = (2 * 0.2 * 0.6 + C1) / (0.2**2 + 0.6**2 + C1)
    assert float(ssim(first, second, scale=False)[0]) == pytest.approx(expected)


def test_ssim_of_a_checkerboard_and_its_negation_by_hand() -> None:
    grid = torch.arange(16)
    board = ((grid[:, None] + grid[None, :]) % 2).to(torch.float64)[None]
    # A window (separable Gaussian g ⊗ g) over a checkerboard has the weighted mean
    # μ = (1 ± S²)/2 with S = Σ_i g_i (−1)^i, variance μ(1 − μ) (binary values), and the
    # negated board has mean 1 − μ and covariance −μ(1 − μ). The SSIM formula is the same
    # for μ and 1 − μ, so every window gives the same value.
    offsets = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-0.5 * (offsets / 1.5) ** 2)
    g = g / g.sum()
    s = float((g * (-1.0) ** torch.arange(11)).sum())
    mu = (1 + s * s) / 2
    var = mu * (1 - mu)
    expected = ((2 * mu * (1 - mu) + C1) * (-2 * var + C2)) / (
        (mu**2 + (1 - mu) ** 2 + C1) * (2 * var + C2)
    )
    assert float(ssim(board, 1 - board)[0]) == pytest.approx(expected)
    assert expected < -0.9  # structure reversed: close to −1


def test_ssim_shrinks_the_window_for_small_maps() -> None:
    maps = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(2))
    assert ssim(maps, maps).tolist() == pytest.approx([1.0, 1.0])
    assert bool((ssim(maps, maps.flip(-1)) < 1).all())
