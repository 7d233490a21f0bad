"""FullGrad: the full-gradient decomposition is complete for ReLU networks, and the map is
the paper's post-processing of its terms."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.methods.fullgrad import effective_bias, fullgrad_decomposition
from camlens.models import tiny_resnet, tiny_vit
from camlens.reshape import tokens_to_grid
from camlens.targets import ClassifierOutputTarget

from .conftest import GapLinearNet


class BiasNet(nn.Module):
    """Piecewise-linear: convolutions with biases, batch norm (eval) with non-trivial running
    statistics, in-place ReLU, max pooling, average pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 5, 3, padding=1, bias=False),
            nn.BatchNorm2d(5),
            nn.ReLU(inplace=True),
            nn.Conv2d(5, 6, 1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.3, 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.mark.parametrize("category", [0, 2])
def test_decomposition_is_complete_for_relu_networks(seed: int, category: int) -> None:
    model = BiasNet().double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    decomposition = fullgrad_decomposition(model, x, [ClassifierOutputTarget(category)] * 2)
    with torch.no_grad():
        expected = model(x)[:, category]
    assert_close(decomposition.total(), expected, rtol=1e-10, atol=1e-12)
    names = [term.name for term in decomposition.bias_terms]
    assert names == ["features.0", "features.1", "features.5", "features.7", "fc"]


def test_batch_norm_bias_is_its_affine_offset() -> None:
    bn = BiasNet().double().features[1].eval()
    bias, axis = effective_bias(bn)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    slope = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert axis == 1
    assert_close(bn(x), x * slope[:, None, None] + bias[:, None, None])
    assert effective_bias(nn.ReLU()) is None
    assert effective_bias(nn.Conv2d(1, 1, 1, bias=False)) is None


def _psi(term: torch.Tensor, size) -> torch.Tensor:
    """The paper's post-processing: |.|, min-max per image, upsample, sum channels."""
    magnitude = term.abs()
    flat = magnitude.flatten(1)
    low = flat.min(1).values.view(-1, 1, 1, 1)
    high = flat.max(1).values.view(-1, 1, 1, 1)
    scaled = (magnitude - low) / (high - low + 1e-6)
    if tuple(scaled.shape[2:]) != tuple(size):
        scaled = F.interpolate(scaled, size=size, mode="bilinear", align_corners=True)
    return scaled.sum(1)


def test_map_is_the_post_processed_sum_of_terms(seed: int) -> None:
    model = GapLinearNet().double().eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    conv1, conv2 = model.features[0], model.features[2]
    leaf = x.clone().requires_grad_(True)
    z1 = conv1(leaf)
    z2 = conv2(torch.relu(z1))
    logits = model.fc(model.pool(torch.relu(z2)).flatten(1))
    score = logits[0, 1] + logits[1, 4]
    g_x, g_1, g_2 = torch.autograd.grad(score, [leaf, z1, z2])
    expected = (
        _psi(g_x * x, (12, 12))
        + _psi(g_1 * conv1.bias[:, None, None], (12, 12))
        + _psi(g_2 * conv2.bias[:, None, None], (12, 12))
    ).detach()
    result = camlens.explain(model, x, method="fullgrad", targets=[1, 4])
    assert result.layer_names == ["fullgrad(input+biases)"]
    assert result.layer_maps[0].shape == (2, 12, 12)
    assert_close(result.layer_maps[0], expected, rtol=1e-10, atol=1e-12)


def test_target_layers_are_ignored(caplog) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4)
    x = torch.randn(1, 3, 32, 32)
    with caplog.at_level(logging.INFO, logger="camlens"):
        familiar = camlens.FullGrad(model, [model.layer4[-1]])
    assert "ignored" in caplog.text
    assert familiar.target_layers == []
    maps = [
        familiar.explain(x, [2]).layer_maps[0],
        camlens.FullGrad(model, []).explain(x, [2]).layer_maps[0],
        camlens.explain(model, x, method="fullgrad", layers="auto", targets=[2]).layer_maps[0],
    ]
    for other in maps[1:]:
        assert torch.equal(other, maps[0])
    smoothed = camlens.explain(model, x, method="fullgrad", targets=[2], aug_smooth=True)
    assert smoothed.layer_maps[0].shape == (1, 32, 32)


def test_transformer_bias_layers_on_the_patch_grid() -> None:
    """ViT linear and layer-norm outputs are tokens; their terms go on the 4 × 4 patch grid,
    the head's (no grid) counts in the decomposition only."""
    torch.manual_seed(0)
    model = tiny_vit(num_classes=4).double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    decomposition = fullgrad_decomposition(model, x, [ClassifierOutputTarget(1)])
    shapes = {term.name: tuple(term.value.shape) for term in decomposition.bias_terms}
    assert shapes["patch_embed.proj"] == (1, 32, 4, 4)
    assert shapes["blocks.0.attn.qkv"] == (1, 17, 96)
    assert shapes["head"] == (1, 4)
    expected = _psi(decomposition.input_term, (32, 32))
    for term in decomposition.bias_terms:
        if term.value.dim() == 4:
            expected = expected + _psi(term.value, (32, 32))
        elif term.value.dim() == 3:
            expected = expected + _psi(tokens_to_grid(term.value), (32, 32))
    result = camlens.explain(model, x, method="fullgrad", targets=[1])
    assert_close(result.layer_maps[0], expected.detach(), rtol=1e-10, atol=1e-10)
