"""FEM and ShapleyCAM: parity with pytorch-grad-cam 1.5.7, ShapleyCAM = Grad-CAM on ReLU
networks, a curved dense head with K classes, and the borrowed model.

The hand-computed maps of both methods are in ``tests/test_methods_values.py``
(``test_fem_by_hand``, ``test_shapleycam_quadratic_heads_by_hand``).

The ``UPSTREAM_*`` numbers below are pytorch-grad-cam 1.5.7's final maps (ReLU, min–max,
no resize: the target layer keeps the 6 × 6 input grid), rounded to 6 decimals, produced in
``bench/.env-gradcam`` with torch 2.13.0 by::

    model, x = curved_cnn(), curved_input()          # the two functions below, copied
    targets = [ClassifierOutputTarget(0), ClassifierOutputTarget(2)]
    FEM(model, [model.features[2]])(input_tensor=x, targets=targets)         # UPSTREAM_FEM2
    FEM(model, [model.features[2]], k=1)(input_tensor=x, targets=targets)    # UPSTREAM_FEM1
    ShapleyCAM(model, [model.features[2]])(input_tensor=x, targets=targets)  # UPSTREAM_SHAPLEY

(``from pytorch_grad_cam import FEM, ShapleyCAM``; the SiLU after the target layer makes the
Hessian non-zero, so ShapleyCAM differs from Grad-CAM there.) camlens agreed with them to
within 6e-7 when they were taken; the tests allow 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.models import tiny_resnet

PARITY = {"rtol": 0.0, "atol": 1e-4}


def curved_cnn() -> nn.Module:
    """conv → ReLU → conv (target: ``features.2``) → SiLU → global average pool → linear,
    float32, weights drawn from a seeded generator (the same numbers on every torch)."""
    generator = torch.Generator().manual_seed(2025)
    model = nn.Sequential()
    model.features = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1)
    )
    model.head = nn.Sequential(nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.6)
    return model.eval()


def curved_input() -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 6, 6, generator=generator)
    x[0, :, 1, 4] += 3.0  # a bright cell: outliers for the K-sigma rule
    x[1, :, 4, 1] -= 3.0
    return x


UPSTREAM_FEM2 = [
    [
        [0.085104, 0.385774, 0.000000, 0.000000, 0.496577, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.571645, 1.000000],
        [0.049680, 0.309672, 0.000000, 0.000000, 0.133347, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.606001, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.194368, 0.034409],
        [0.000000, 0.164443, 0.000000, 0.000000, 0.095741, 0.211555],
    ],
    [
        [0.505874, 0.679478, 0.000000, 0.138131, 0.128008, 0.251485],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 0.647800],
        [0.000000, 0.000000, 0.000000, 0.195390, 0.000000, 0.250592],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.520500, 1.000000],
        [0.000000, 0.555523, 0.000000, 0.000000, 0.459930, 0.627888],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 0.000000],
    ],
]
UPSTREAM_FEM1 = [
    [
        [0.000000, 0.288834, 0.000000, 0.000000, 0.529957, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 1.000000],
        [0.000000, 0.254626, 0.000000, 0.000000, 0.363632, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.142747, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.179174, 0.000000],
        [0.000000, 0.097611, 0.000000, 0.000000, 0.000000, 0.000000],
    ],
    [
        [0.000000, 0.000000, 0.000000, 0.000000, 0.070238, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.891157, 0.093466, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 1.000000],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 0.000000],
        [0.000000, 0.000000, 0.007151, 0.000000, 0.000000, 0.283504],
    ],
]
UPSTREAM_SHAPLEY = [
    [
        [0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 0.040481],
        [0.000000, 0.077335, 0.000000, 0.000000, 0.000000, 0.000000],
        [0.314217, 0.253094, 0.000000, 0.000000, 0.000000, 0.000000],
        [0.000000, 0.000000, 0.808193, 0.000000, 0.000000, 0.000000],
        [0.000000, 0.000000, 0.000000, 0.219253, 0.499640, 0.000000],
        [0.225528, 1.000000, 0.000000, 0.000000, 0.655731, 0.074893],
    ],
    [
        [0.082744, 0.275622, 0.219272, 0.137824, 0.287806, 0.000000],
        [0.279363, 0.166843, 0.542262, 0.877332, 0.432827, 0.016227],
        [0.000000, 0.213775, 0.006482, 0.444063, 0.798770, 0.070750],
        [0.285179, 0.073350, 0.000000, 0.000000, 0.000000, 1.000000],
        [0.422258, 0.000000, 0.398836, 0.665755, 0.000000, 0.276743],
        [0.000000, 0.000000, 0.000000, 0.000000, 0.598074, 0.536928],
    ],
]


def _maps(method: str, **options) -> torch.Tensor:
    explanation = camlens.explain(
        curved_cnn(),
        curved_input(),
        method=method,
        layers="features.2",
        targets=[0, 2],
        options=options,
    )
    return explanation.maps


@pytest.mark.parametrize(
    ("method", "options", "expected"),
    [
        ("fem", {}, UPSTREAM_FEM2),
        ("fem", {"k": 1.0}, UPSTREAM_FEM1),
        ("shapleycam", {}, UPSTREAM_SHAPLEY),
    ],
    ids=["fem-k2", "fem-k1", "shapleycam"],
)
def test_parity_with_pytorch_grad_cam_1_5_7(method: str, options: dict, expected) -> None:
    assert_close(_maps(method, **options), torch.tensor(expected), **PARITY)


def test_shapleycam_differs_from_gradcam_where_the_head_is_curved() -> None:
    """The SiLU head has a non-zero Hessian: the parity above is not Grad-CAM's map."""
    difference = (_maps("shapleycam") - _maps("gradcam")).abs().max()
    assert float(difference) > 0.05


@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapleycam_equals_gradcam_on_a_relu_cnn(layer: str, dtype: torch.dtype) -> None:
    """A ReLU CNN is piecewise linear after any layer: H = 0 almost everywhere, H·A = 0."""
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=5).to(dtype)
    x = torch.randn(2, 3, 32, 32, dtype=dtype)
    shapley = camlens.explain(model, x, method="shapleycam", layers=layer, targets=[1, 3])
    gradcam = camlens.explain(model, x, method="gradcam", layers=layer, targets=[1, 3])
    assert_close(shapley.layer_maps[0], gradcam.layer_maps[0], rtol=0.0, atol=1e-6)
    assert_close(shapley.maps, gradcam.maps, rtol=0.0, atol=1e-6)
    smoothed = [
        camlens.explain(model, x, method=m, layers=layer, targets=[1, 3], eigen_smooth=True)
        for m in ("shapleycam", "gradcam")
    ]
    assert_close(smoothed[0].maps, smoothed[1].maps, rtol=0.0, atol=1e-6)


class DenseQuadratic(nn.Module):
    """``features`` (identity) → ``logits_k = Σ_c W[k, c] A_c²`` at every cell."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.register_buffer("weight", weight)  # (K, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kc,bchw->bkhw", self.weight, self.features(x) ** 2)


def test_shapleycam_k_classes_on_a_quadratic_dense_head() -> None:
    """K = 3 segmentation classes, one backward and one HVP per class over one forward:
    score_k = Σ M_k ⊙ logits_k, so g = 2 W[k, c] M_k A_c = H·A and g − ½H·A = W[k, c] M_k A_c;
    the map of class k is Σ_c mean(W[k, c] M_k A_c) · A_c (Grad-CAM's weights are twice that)."""
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    x = torch.randn(2, 4, 4, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 4, 5), generator=generator)
    labels[:, 0, :3] = torch.tensor([0, 1, 2])  # every class present in both images
    masks = (labels[:, None] == torch.arange(3)[None, :, None, None]).to(torch.float64)
    result = camlens.explain_segmentation(
        DenseQuadratic(weight),
        x,
        classes=[0, 1, 2],
        methods=["shapleycam", "gradcam"],
        layers="features",
        masks=labels,
    )
    weights = torch.einsum("kc,bkhw,bchw->bkc", weight, masks, x) / 20  # mean over 4 × 5
    expected = torch.einsum("bkc,bchw->bkhw", weights, x)
    assert_close(result.layer_maps["shapleycam"][0], expected, rtol=1e-12, atol=1e-12)
    assert_close(result.layer_maps["gradcam"][0], 2 * expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["fem", "shapleycam"])
def test_model_is_borrowed_and_param_grad_untouched(method: str, snapshot) -> None:
    """Called inside ``torch.no_grad()``, on a model in train mode with ``param.grad`` set:
    everything (weights, flags, hooks, ``requires_grad``, ``.grad``) is as it was."""
    model = curved_cnn().train()
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 0.25)
    model.head[3].weight.requires_grad_(False)
    before = snapshot(model)
    with torch.no_grad():
        first = camlens.explain(model, curved_input(), method=method, layers="features.2")
    before.assert_same(model)
    second = camlens.explain(model, curved_input(), method=method, layers="features.2")
    assert torch.equal(first.maps, second.maps)


def test_fem_on_volumes_by_hand() -> None:
    """3-D grid: channel 0 is seven 0s and one 8 (mean 1, std √7, threshold 1 + 2√7 ≈ 6.3):
    weight 1/8; channel 1 is constant (std 0, no cell strictly above): weight 0."""
    volume = torch.zeros(1, 2, 2, 2, 2, dtype=torch.float64)
    volume[0, 0, 1, 0, 1] = 8.0
    volume[0, 1] = 3.0
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(16, 2)).double()
    explanation = camlens.explain(model, volume, method="fem", layers="0", targets=[1])
    assert_close(explanation.layer_maps[0], volume[:, 0] / 8, rtol=1e-12, atol=1e-12)


def test_fem_option_k_is_checked() -> None:
    with pytest.raises(camlens.errors.OptionError):
        camlens.explain(curved_cnn(), curved_input(), "fem", "features.2", options={"k": "two"})
    with pytest.raises(camlens.errors.OptionError):
        camlens.explain(curved_cnn(), curved_input(), "shapleycam", "features.2", options={"k": 1})


def test_familiar_classes_fem_and_shapleycam() -> None:
    """pytorch-grad-cam's class names: FEM(k=...) and ShapleyCAM; ShapleyCAM's picture is
    Grad-CAM's on a ReLU network."""
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=3).eval()
    x = torch.randn(1, 3, 128, 128)
    shapley = camlens.ShapleyCAM(model=model, target_layers=[model.layer4])(x, [1])
    gradcam = camlens.GradCAM(model=model, target_layers=[model.layer4])(x, [1])
    np.testing.assert_allclose(shapley, gradcam, atol=1e-5)
    fem = camlens.FEM(model=model, target_layers=[model.layer4], k=1.0)
    assert fem.options == {"k": 1.0} and fem(x, [1]).shape == (1, 128, 128)
