"""Deletion / insertion, ROAD and the confidence change, by hand on a model whose output
depends only on a known square of the red channel."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camlens.metrics import (
    confidence_change,
    deletion,
    insertion,
    pointing_game,
    road,
)
from camlens.metrics._scoring import relevance_ranks

SIZE = 16
SQUARE = (slice(4, 8), slice(4, 8))  # 16 of 256 pixels: 1/16 of the image


class RedSquare(nn.Module):
    """logits = [3 m, 4 − 2 m], m = mean of the red channel over ``SQUARE``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0, SQUARE[0], SQUARE[1]].mean(dim=(1, 2))
        return torch.stack([self.scale * m, 4 - 2 * m], dim=1)


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


def square_map(batch: int = 1) -> torch.Tensor:
    maps = torch.zeros(batch, SIZE, SIZE, dtype=torch.float64)
    maps[:, SQUARE[0], SQUARE[1]] = 1.0
    return maps


def square_mask() -> torch.Tensor:
    mask = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    mask[:, SQUARE[0], SQUARE[1]] = True
    return mask


@pytest.fixture
def model() -> RedSquare:
    return RedSquare().eval()


def test_the_right_map_wins_the_pointing_game() -> None:
    assert pointing_game(square_map(), square_mask()).tolist() == [True]


def test_deletion_drops_after_the_first_step(model: RedSquare) -> None:
    inputs = torch.ones(1, 3, SIZE, SIZE, dtype=torch.float64)
    curve = deletion(model, inputs, square_map(), [0], steps=16, score="raw")
    assert curve.fractions.tolist() == pytest.approx([k / 16 for k in range(17)])
    assert curve.scores[0].tolist() == pytest.approx([3.0] + [0.0] * 16)
    assert float(curve.auc[0]) == pytest.approx(3 / 32)  # one trapezoid from 3 to 0
    # probabilities: class 0 against the constant class 1 (4 − 2m): softmax of [3m, 4 − 2m]
    curve = deletion(model, inputs, square_map(), [0], steps=16)
    start, floor = sigmoid(3 - 2), sigmoid(0 - 4)
    assert curve.scores[0].tolist() == pytest.approx([start] + [floor] * 16)
    assert float(curve.auc[0]) == pytest.approx((start + floor) / 2 / 16 + floor * 15 / 16)


def test_deletion_with_the_reversed_map_drops_last(model: RedSquare) -> None:
    inputs = torch.ones(1, 3, SIZE, SIZE, dtype=torch.float64)
    curve = deletion(model, inputs, 1 - square_map(), [0], steps=16, score="raw")
    assert curve.scores[0].tolist() == pytest.approx([3.0] * 16 + [0.0])
    assert float(curve.auc[0]) == pytest.approx(3 * 15 / 16 + 3 / 32)


def test_insertion_rises_at_the_first_step(model: RedSquare) -> None:
    inputs = torch.ones(1, 3, SIZE, SIZE, dtype=torch.float64)
    curve = insertion(model, inputs, square_map(), [0], steps=16, baseline=0.0, score="raw")
    assert curve.scores[0].tolist() == pytest.approx([0.0] + [3.0] * 16)
    assert float(curve.auc[0]) == pytest.approx(3 * 31 / 32)
    # the default baseline, a blurred copy, of a constant image is the image itself
    flat = insertion(model, inputs, square_map(), [0], steps=16, score="raw")
    assert flat.scores[0].tolist() == pytest.approx([3.0] * 17)


def test_curves_are_chunked_per_image_and_targets_are_honoured(model: RedSquare) -> None:
    inputs = torch.ones(2, 3, SIZE, SIZE, dtype=torch.float64)
    inputs[1] *= 2.0
    maps = square_map(2)
    whole = deletion(model, inputs, maps, steps=16, score="raw", batch_size=64)
    chunked = deletion(model, inputs, maps, steps=16, score="raw", batch_size=5)
    torch.testing.assert_close(whole.scores, chunked.scores)
    assert whole.scores[:, 0].tolist() == pytest.approx([3.0, 6.0])  # predicted class 0
    margin = deletion(model, inputs, maps, lambda out: out[0] - out[1], steps=16, score="raw")
    assert margin.scores[:, 0].tolist() == pytest.approx([3.0 - 2.0, 6.0 - 0.0])
    assert margin.scores[:, -1].tolist() == pytest.approx([-4.0, -4.0])
    assert torch.equal(whole.original, whole.scores[:, 0])


def test_baselines_and_bad_arguments(model: RedSquare) -> None:
    inputs = torch.ones(1, 3, SIZE, SIZE, dtype=torch.float64)
    grey = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    curve = deletion(model, inputs, square_map(), [0], steps=16, baseline=grey, score="raw")
    assert float(curve.scores[0, -1]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="steps"):
        deletion(model, inputs, square_map(), [0], steps=0)
    with pytest.raises(ValueError, match="baseline"):
        deletion(model, inputs, square_map(), [0], baseline="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="B, H, W"):
        deletion(model, inputs, square_map(2), [0])


def test_ties_keep_raster_order() -> None:
    maps = torch.tensor([[[1.0, 2.0], [2.0, 1.0]]])
    assert relevance_ranks(maps).tolist() == [[2, 0, 1, 3]]
    assert relevance_ranks(maps, descending=False).tolist() == [[0, 2, 3, 1]]


def test_confidence_change_by_hand(model: RedSquare) -> None:
    # image 0 explains class 0 (3m): Y = 3, O = 1.5 -> drop 0.5, no increase;
    # image 1 explains class 1 (4 - 2m): Y = 2, O = 3 -> no drop, an increase.
    inputs = torch.ones(2, 3, SIZE, SIZE, dtype=torch.float64)
    maps = torch.full((2, SIZE, SIZE), 0.5, dtype=torch.float64)
    change = confidence_change(model, inputs, maps, [0, 1], score="raw")
    assert change.original.tolist() == pytest.approx([3.0, 2.0])
    assert change.masked.tolist() == pytest.approx([1.5, 3.0])
    assert change.drop.tolist() == pytest.approx([0.5, 0.0])
    assert change.increase.tolist() == [False, True]
    assert float(change.average_drop) == pytest.approx(25.0)
    assert float(change.increase_rate) == pytest.approx(0.5)
    # probabilities (the default): softmax over [3m, 4 - 2m]
    change = confidence_change(model, inputs, maps, [0, 1])
    y0, o0 = sigmoid(3 - 2), sigmoid(1.5 - 3)
    assert float(change.drop[0]) == pytest.approx((y0 - o0) / y0)
    assert float(change.increase_rate) == pytest.approx(0.5)


def test_confidence_change_multiplies_the_unnormalised_image(model: RedSquare) -> None:
    # normalised 1 with mean = std = 0.5 is the pixel value 1; half of it is 0.5, which
    # normalises back to 0: O = 0 for class 0 and 4 for class 1.
    inputs = torch.ones(2, 3, SIZE, SIZE, dtype=torch.float64)
    maps = torch.full((2, SIZE, SIZE), 0.5, dtype=torch.float64)
    change = confidence_change(
        model, inputs, maps, [0, 1], mean=[0.5] * 3, std=[0.5] * 3, score="raw"
    )
    assert change.masked.tolist() == pytest.approx([0.0, 4.0])
    assert float(change.average_drop) == pytest.approx(50.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confidence_change(model, inputs, maps * 3, [0, 1])


def test_confidence_change_drop_is_nan_for_non_positive_scores(model: RedSquare) -> None:
    inputs = -torch.ones(1, 3, SIZE, SIZE, dtype=torch.float64)  # Y = -3
    change = confidence_change(model, inputs, square_map(), [0], score="raw")
    assert torch.isnan(change.drop).all() and torch.isnan(change.average_drop)


def red_square_image(batch: int = 1) -> torch.Tensor:
    inputs = torch.zeros(batch, 3, SIZE, SIZE, dtype=torch.float64)
    inputs[:, 0, SQUARE[0], SQUARE[1]] = 1.0
    return inputs


def test_road_separates_the_right_map_from_the_reversed_one(model: RedSquare) -> None:
    # The square is red on black: imputing it from its black surroundings gives 0.
    inputs = red_square_image()
    good = road(model, inputs, square_map(), [0], noise_std=0.0, score="raw")
    assert good.percentiles.tolist() == pytest.approx([10, 20, 30, 40, 50, 60, 70, 80, 90])
    assert good.morf[0].tolist() == pytest.approx([0.0] * 9, abs=1e-6)
    assert good.lerf[0].tolist() == pytest.approx([3.0] * 9, abs=1e-6)
    assert float(good.morf_drop[0]) == pytest.approx(3.0, abs=1e-6)
    assert float(good.lerf_drop[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(good.gap[0]) == pytest.approx(3.0, abs=1e-6)
    bad = road(model, inputs, 1 - square_map(), [0], noise_std=0.0, score="raw")
    assert float(bad.gap[0]) == pytest.approx(-3.0, abs=1e-6)


def test_road_noise_is_seeded_and_independent_of_batching(model: RedSquare) -> None:
    inputs = red_square_image(2)
    maps = square_map(2)
    first = road(model, inputs, maps, [0], percentiles=(25, 75), batch_size=3, seed=4)
    second = road(model, inputs, maps, [0], percentiles=(25, 75), batch_size=8, seed=4)
    torch.testing.assert_close(first.morf, second.morf)
    torch.testing.assert_close(first.lerf, second.lerf)
    assert bool((first.gap > 0).all())
    with pytest.raises(ValueError, match="percentiles"):
        road(model, inputs, maps, [0], percentiles=(0, 50))
