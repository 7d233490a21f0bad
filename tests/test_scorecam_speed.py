"""ScoreCAM's exact speed-ups and its bfloat16 option: channels with bitwise-equal maps
(dead, constant, duplicated) share one re-run and get exactly the weights of one re-run per
channel; ``channels_last`` masked inputs give the same maps to float rounding, fall back to
the contiguous layout where a model cannot take them, and leave the model as found; the
bfloat16 option stays within its documented tolerance."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.errors import OptionError
from camlens.methods.perturbation import weighted_maps
from camlens.methods.score import channel_masks, distinct_maps, masked_layout
from camlens.models import tiny_resnet

from .test_borrowed import _mixed_mode_resnet
from .test_perturbation import Exploding, FailsAfter, Recording


class Degenerate(nn.Module):
    """conv → ReLU → GAP → linear, whose conv makes dead, constant and duplicated channels:
    channels 1 and 4 are all zero (zero weights, negative bias), 2 repeats 0, 5 repeats 3,
    6 is the constant 0.5 and 7 the constant 0.25 (zero weights, positive biases)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.ReLU())
        self.fc = nn.Linear(8, 3)
        with torch.no_grad():
            conv = self.features[0]
            for dead in (1, 4):
                conv.weight[dead] = 0
                conv.bias[dead] = -1
            conv.weight[2], conv.bias[2] = conv.weight[0], conv.bias[0]
            conv.weight[5], conv.bias[5] = conv.weight[3], conv.bias[3]
            for constant, value in ((6, 0.5), (7, 0.25)):
                conv.weight[constant] = 0
                conv.bias[constant] = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def plain_weights(model: nn.Module, x: torch.Tensor, categories: list[int]) -> torch.Tensor:
    """``(B, 1, C)`` ScoreCAM weights with one forward pass per channel and image, written
    with the same operations as camlens' loop, so that the results can be equal bit for bit."""
    store = {}
    handle = model.features.register_forward_hook(lambda _m, _i, out: store.setdefault("a", out))
    with torch.no_grad():
        model(x)
    handle.remove()
    activations = store["a"]
    weights = torch.zeros(len(x), 1, activations.shape[1], dtype=x.dtype)
    for image, category in enumerate(categories):
        scores = []
        for channel in range(activations.shape[1]):
            mask = channel_masks(activations[image, channel : channel + 1], tuple(x.shape[2:]))
            with torch.inference_mode():
                scores.append(model(x[image : image + 1] * mask.unsqueeze(1))[:, category])
        weights[image, 0] = torch.softmax(torch.stack(scores), dim=0)[:, 0]
    return weighted_maps(weights, activations)


def test_distinct_maps_groups_bitwise_equal_maps() -> None:
    maps = torch.tensor([[1.0, 2.0], [0.0, 0.0], [1.0, 2.0], [-0.0, 0.0], [math.nan, 1.0]])
    maps = torch.cat([maps, maps[4:]])  # a NaN map equals its own bit pattern
    first, group = distinct_maps(maps)
    assert first.tolist() == [0, 1, 3, 4]  # -0.0 is not 0.0: different bits
    assert group.tolist() == [0, 1, 0, 2, 3, 3]
    first, group = distinct_maps(torch.zeros(0, 2, 2))
    assert first.tolist() == [] and group.tolist() == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shared_reruns_equal_one_rerun_per_channel_bit_for_bit(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = Recording(Degenerate().to(dtype).eval())
    model.features = model.model.features  # for plain_weights' hook
    x = torch.randn(2, 3, 12, 12, dtype=dtype)
    categories = [0, 2]
    expected = plain_weights(model.model, x, categories)
    options = {"batch_size": 1, "memory_format": "contiguous"}
    result = camlens.explain(
        model, x, method="scorecam", layers="model.features", targets=categories, options=options
    )
    assert torch.equal(result.layer_maps[0], expected[:, 0])
    # channels 1 = 4 (dead), 2 = 0 and 5 = 3 share a re-run; the constants 0.5 and 0.25
    # differ in their bits, so they do not
    assert len(model.batches) == 1 + 2 * 5


@pytest.mark.parametrize("method", ["scorecam", "sscam", "iscam"])
def test_chunked_shared_reruns_match_the_plain_loop(method: str) -> None:
    torch.manual_seed(1)
    model = Degenerate().double().eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    maps = [
        camlens.explain(
            model, x, method=method, layers="features", targets=[1, 0], options=options
        ).layer_maps[0]
        for options in ({"batch_size": 1}, {"batch_size": 3}, {})
    ]
    # a constant channel's mask is its upsampling's rounding noise scaled up by the min-max
    # (range ~1e-16 over epsilon 1e-8): how the chunk is upsampled moves it, as before
    assert_close(maps[1], maps[0], rtol=1e-9, atol=1e-10)
    assert_close(maps[2], maps[0], rtol=1e-9, atol=1e-10)
    if method == "scorecam":
        assert torch.equal(maps[0], plain_weights(model, x, [1, 0])[:, 0])


def test_auto_layout_is_channels_last_for_large_cpu_images_only() -> None:
    image, small, volume = (
        torch.zeros(1, 3, 128, 160),
        torch.zeros(1, 3, 64, 64),
        torch.zeros(1, 1, 8, 8, 8),
    )
    assert masked_layout(image, "auto") == torch.channels_last
    assert masked_layout(small, "auto") == torch.contiguous_format
    assert masked_layout(small, "channels_last") == torch.channels_last
    assert masked_layout(volume, "auto") == torch.contiguous_format
    assert masked_layout(volume, "channels_last") == torch.channels_last_3d
    assert masked_layout(image, "contiguous") == torch.contiguous_format
    assert masked_layout(torch.zeros(1, 3, 200), "channels_last") == torch.contiguous_format


class LayoutSeen(nn.Module):
    """Records whether each forward pass's input was ``channels_last``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.layouts: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        return self.model(x)


def test_channels_last_gives_the_contiguous_maps_and_leaves_the_model(snapshot) -> None:
    torch.manual_seed(0)
    model = LayoutSeen(tiny_resnet(num_classes=4).eval())
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(model)

    def run(memory_format: str) -> torch.Tensor:
        options = {"batch_size": 8, "memory_format": memory_format}
        cam = camlens.Explainer(model, "model.layer4", method="scorecam", options=options)
        return cam.explain(x, [1, 3]).layer_maps[0]

    contiguous = run("contiguous")
    assert not any(model.layouts[1:])
    model.layouts.clear()
    assert_close(run("channels_last"), contiguous, rtol=1e-4, atol=1e-6)
    assert all(model.layouts[1:])  # the original forward pass keeps the user's layout
    before.assert_same(model)


def test_model_untouched_after_a_midway_exception_in_channels_last(snapshot) -> None:
    torch.manual_seed(0)
    model = FailsAfter(_mixed_mode_resnet(), limit=3)  # the original pass and two chunks
    options = {"batch_size": 4, "memory_format": "channels_last"}
    cam = camlens.Explainer(model, "model.layer4", method="scorecam", options=options)
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(model)
    with pytest.raises(Exploding):
        cam.explain(x, [1])
    before.assert_same(model)
    model.limit, model.calls = 1, 0  # fails in the first chunk: retried contiguous, raises
    with pytest.raises(Exploding, match="forward pass 3"):
        cam.explain(x, [1])
    before.assert_same(model)
    model.limit, model.calls = math.inf, 0
    assert cam.explain(x, [1]).maps.shape == (2, 32, 32)
    before.assert_same(model)


class ViewsItsFeatures(nn.Module):
    """Calls ``.view`` on a convolution's output: fails on a ``channels_last`` batch."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        return self.fc(features.view(features.shape[0], -1))


def test_a_model_that_refuses_channels_last_falls_back(caplog) -> None:
    torch.manual_seed(0)
    model = Recording(ViewsItsFeatures().eval())
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(RuntimeError, match="view"):
        model(x.contiguous(memory_format=torch.channels_last))

    def run(memory_format: str) -> torch.Tensor:
        options = {"batch_size": 2, "memory_format": memory_format}
        cam = camlens.Explainer(model, "model.features", method="scorecam", options=options)
        return cam.explain(x, [1]).layer_maps[0]

    contiguous = run("contiguous")
    model.batches.clear()
    with caplog.at_level(logging.INFO, logger="camlens"):
        fallen_back = run("channels_last")
    assert "using contiguous" in caplog.text
    assert torch.equal(fallen_back, contiguous)
    assert model.batches[:3] == [1, 2, 2]  # the failed chunk ran once more, then no retries


@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_is_within_its_documented_tolerance(seed: int) -> None:
    torch.manual_seed(seed)
    model = tiny_resnet(num_classes=4).eval()
    x = torch.randn(2, 3, 32, 32)

    def run(precision: str) -> torch.Tensor:
        options = {"precision": precision}
        return camlens.explain(
            model, x, method="scorecam", layers="layer3", targets=[1, 3], options=options
        ).maps

    exact, rounded = run("float32"), run("bfloat16")
    assert (exact - rounded).abs().max() <= 0.05  # the help: ≤ 0.024 on classifiers
    correlation = torch.corrcoef(torch.stack([exact.flatten(), rounded.flatten()]))[0, 1]
    assert correlation > 0.99


def test_float64_models_ignore_bfloat16() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4).double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    maps = [
        camlens.explain(
            model, x, method="scorecam", layers="layer4", targets=[1], options=options
        ).layer_maps[0]
        for options in ({}, {"precision": "bfloat16"})
    ]
    assert torch.equal(maps[0], maps[1])  # autocast leaves float64 alone


@pytest.mark.parametrize(
    ("options", "match"),
    [({"precision": "float16"}, "precision"), ({"memory_format": "nhwc"}, "memory_format")],
)
def test_bad_layout_or_precision(options: dict, match: str) -> None:
    with pytest.raises(OptionError, match=match):
        camlens.Explainer(tiny_resnet(num_classes=4), "layer4", method="scorecam", options=options)


def test_masks_of_dead_channels_are_empty() -> None:
    dead = torch.zeros(3, 4, 4)
    assert torch.equal(channel_masks(dead, (9, 9)), torch.zeros(3, 9, 9))
    assert not F.interpolate(dead[None], size=(9, 9)).any()
