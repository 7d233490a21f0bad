"""Analytic identities of the CAM family, in float64 with tight tolerances."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import camlens
from camlens.methods import get_method
from camlens.targets import ClassifierOutputTarget

from .conftest import GapLinearNet

#: The methods that run on CNNs (attention methods need a transformer: test_attention_methods).
CNN_METHODS = [m for m in camlens.available_methods() if not get_method(m).needs_attention]

CLASSES = [1, 4]


def _explain(model, x, method, **kwargs):
    return camlens.explain(model, x, method=method, layers="features", targets=CLASSES, **kwargs)


def test_hirescam_sums_to_logit_minus_bias(gap_net: GapLinearNet) -> None:
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    explanation = _explain(gap_net, x, "hirescam")
    logits = gap_net(x).detach()
    expected = torch.stack(
        [logits[i, c] - gap_net.fc.bias[c].detach() for i, c in enumerate(CLASSES)]
    )
    assert explanation.layer_maps[0].dtype == torch.float64
    assert_close(explanation.layer_maps[0].sum(dim=(1, 2)), expected, rtol=1e-12, atol=1e-12)
    assert_close(explanation.scores, logits[[0, 1], CLASSES], rtol=0, atol=0)


def test_gradcam_equals_cam_over_pooling_constant(gap_net: GapLinearNet) -> None:
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    gradcam = _explain(gap_net, x, "gradcam").layer_maps[0]
    cam = _explain(gap_net, x, "cam").layer_maps[0]
    cells = gradcam.shape[1] * gradcam.shape[2]  # 6 x 6 grid: pooling constant 1/36
    assert_close(gradcam * cells, cam, rtol=1e-12, atol=1e-12)
    # For GAP + linear the gradient is constant over the grid, so HiResCAM = Grad-CAM.
    assert_close(_explain(gap_net, x, "hirescam").layer_maps[0], gradcam, rtol=1e-12, atol=1e-12)


def test_cam_by_hand(gap_net: GapLinearNet) -> None:
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    features = gap_net.features(x).detach()[0]
    expected = torch.einsum("c,chw->hw", gap_net.fc.weight[3].detach(), features)
    result = camlens.explain(gap_net, x, method="cam", layers="features", targets=[3])
    assert_close(result.layer_maps[0][0], expected, rtol=1e-12, atol=1e-12)


def _score_with_scaled_cell(model, x, category, row, col, t):
    """Target score when every channel of the layer at (row, col) is multiplied by 1 + t."""

    def hook(_module, _inputs, output):
        scale = torch.ones_like(output)
        scale[:, :, row, col] += t
        return output * scale

    handle = model.features.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return float(model(x)[0, category])
    finally:
        handle.remove()


def test_hirescam_matches_finite_differences(seed: int) -> None:
    """HiResCAM at a cell is Σ_c A·∂y/∂A = d y(A ⊙ (1 + t·e_cell)) / dt at t = 0, and the model
    below is not linear in the cell (a ReLU follows the target layer)."""
    model = torch.nn.Sequential()
    model.add_module("features", torch.nn.Conv2d(3, 5, 3, padding=1))
    model.add_module("relu", torch.nn.ReLU())
    model.add_module("mix", torch.nn.Conv2d(5, 4, 3, padding=1))
    model.add_module("pool", torch.nn.AdaptiveMaxPool2d(1))
    model.add_module("flat", torch.nn.Flatten())
    model = model.double().eval()
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    category = 2
    layer_map = camlens.explain(
        model, x, method="hirescam", layers="features", targets=[category]
    ).layer_maps[0][0]
    step = 1e-6
    for row, col in [(0, 0), (2, 3), (5, 5), (3, 1)]:
        plus = _score_with_scaled_cell(model, x, category, row, col, step)
        minus = _score_with_scaled_cell(model, x, category, row, col, -step)
        numeric = (plus - minus) / (2 * step)
        assert numeric == pytest.approx(float(layer_map[row, col]), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("method", CNN_METHODS)
def test_batch_equals_one_at_a_time(gap_net: GapLinearNet, method: str) -> None:
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    targets = [ClassifierOutputTarget(c) for c in (0, 2, 4)]
    batch = camlens.explain(gap_net, x, method=method, layers="features", targets=targets)
    for i in range(3):
        single = camlens.explain(
            gap_net, x[i : i + 1], method=method, layers="features", targets=[targets[i]]
        )
        assert_close(batch.layer_maps[0][i], single.layer_maps[0][0], rtol=1e-10, atol=1e-12)
        assert_close(batch.maps[i], single.maps[0], rtol=1e-10, atol=1e-12)


def test_segxrescam_interpolates_hirescam_and_gradcam(seed: int) -> None:
    """Pool size 1 is HiResCAM; a block covering the grid is Grad-CAM; in between, each block
    uses its own mean gradient (checked by hand on a 5 × 5 grid with 2 × 2 blocks)."""
    model = torch.nn.Sequential()
    model.add_module("features", torch.nn.Conv2d(3, 4, 3, padding=1))
    model.add_module("mix", torch.nn.Conv2d(4, 3, 3, padding=1))
    model = model.double().eval()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    target = [lambda out: (out[1] ** 2).sum()]  # a non-linear score: gradients vary in space

    def run(method: str, **options):
        cam = camlens.Explainer(model, "features", method=method, options=options)
        return cam.explain(x, target).layer_maps[0]

    assert_close(run("segxrescam", pool_size=1), run("hirescam"), rtol=1e-12, atol=1e-12)
    assert_close(run("segxrescam", pool_size=5), run("gradcam"), rtol=1e-12, atol=1e-12)
    assert_close(run("segxrescam", pool_size=8), run("gradcam"), rtol=1e-12, atol=1e-12)

    activations = model.features(x).detach()
    leaf = activations.clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(
        target[0](model.mix(leaf)[0]) + target[0](model.mix(leaf)[1]), leaf
    )
    expected = torch.zeros(2, 5, 5, dtype=torch.float64)
    for top in (0, 2, 4):
        for left in (0, 2, 4):
            block = (slice(None), slice(None), slice(top, top + 2), slice(left, left + 2))
            mean = grads[block].mean(dim=(2, 3), keepdim=True)
            expected[block[0], block[2], block[3]] = (mean * activations[block]).sum(1)
    assert_close(run("segxrescam", pool_size=2), expected, rtol=1e-12, atol=1e-12)
