"""Guided backpropagation / Guided Grad-CAM, KPCA-CAM, Deep Feature Factorization,
Seg-Eigen-CAM and Smooth Grad-CAM++: values against formulas written out here (float64),
identities, batches, volumes and the borrowed model.

The registry methods (``kpcacam``, ``segeigencam``, ``smoothgradcam++``) also run through
the registry-driven tests (``test_conformance``, ``test_borrowed``, ``test_identities``,
``test_model_outputs.test_volumes``, and the per-class segmentation formulas of
``test_methods_values``, which take :func:`kpca_reference` from here).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import camlens
import camlens.image
from camlens.errors import InputShapeError
from camlens.methods.factorization import factorize_activations, nmf
from camlens.models import Tiny3DCNN, tiny_resnet

from .test_methods_values import A0, A1, G0, G1, Quadratic, _hand_model, _raw, tensor

DOUBLE = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}


# ------------------------------------------------------------------------------------------
# Guided backpropagation
# ------------------------------------------------------------------------------------------
class TwoReLUNet(nn.Module):
    """flatten → linear → ReLU → linear → ReLU → linear (one score per class), float64."""

    def __init__(self, inplace: bool = False, functional: bool = False) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.first = nn.Linear(8, 6).double()
        self.second = nn.Linear(6, 5).double()
        self.head = nn.Linear(5, 3).double()
        with torch.no_grad():
            for layer in (self.first, self.second, self.head):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
                layer.bias.copy_(0.3 * torch.randn(layer.bias.shape, generator=generator))
        self.relu1, self.relu2 = nn.ReLU(inplace), nn.ReLU(inplace)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activation = F.relu if self.functional else None
        hidden = self.first(x.flatten(1))
        hidden = activation(hidden) if activation else self.relu1(hidden)
        hidden = self.second(hidden)
        hidden = activation(hidden) if activation else self.relu2(hidden)
        return self.head(hidden)


def _guided_by_hand(model: TwoReLUNet, x: torch.Tensor, classes: list[int], guided: bool):
    """Backward through the two ReLUs written out: ``g · [z > 0]`` (plain) or
    ``g · [z > 0] · [g > 0]`` (guided), image by image."""
    rows = []
    for image, category in enumerate(classes):
        z1 = model.first.weight @ x[image].flatten() + model.first.bias
        z2 = model.second.weight @ torch.relu(z1) + model.second.bias
        gradient = model.head.weight[category]  # d score / d relu(z2)
        gradient = gradient * (z2 > 0) * ((gradient > 0) if guided else 1)
        gradient = model.second.weight.T @ gradient  # d score / d relu(z1)
        gradient = gradient * (z1 > 0) * ((gradient > 0) if guided else 1)
        rows.append((model.first.weight.T @ gradient).reshape(x.shape[1:]))
    return torch.stack(rows).detach()


def _net_input() -> torch.Tensor:
    return torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(5), dtype=DOUBLE)


def test_guided_backprop_by_hand_every_image() -> None:
    """Springenberg et al. 2015: only positive gradients pass a ReLU, where its input was
    positive; every image of the batch, each with its own class."""
    model, x, classes = TwoReLUNet(), _net_input(), [0, 2, 1]
    guided = camlens.guided_backprop(model, x, classes)
    expected = _guided_by_hand(model, x, classes, guided=True)
    assert_close(guided, expected, **TIGHT)
    plain = _guided_by_hand(model, x, classes, guided=False)
    assert (guided - plain).abs().max() > 1e-3  # the guiding changed something
    for image in range(3):  # a batch is its images one by one
        single = camlens.guided_backprop(model, x[image : image + 1], classes[image])
        assert_close(single[0], guided[image], **TIGHT)


def test_guided_backprop_inplace_relu_and_upstream_style_swap() -> None:
    """In-place ReLUs give the same gradients; so does the module swap pytorch-grad-cam
    makes (a guided-ReLU autograd function in place of each ReLU), done here on a copy."""

    class GuidedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):  # type: ignore[override]
            ctx.save_for_backward(value)
            return value.clamp_min(0)

        @staticmethod
        def backward(ctx, gradient):  # type: ignore[override]
            (value,) = ctx.saved_tensors
            return gradient * (value > 0) * (gradient > 0)

    class Swapped(nn.Module):
        def forward(self, value: torch.Tensor) -> torch.Tensor:
            return GuidedReLU.apply(value)

    model, x = TwoReLUNet(), _net_input()
    ours = camlens.guided_backprop(model, x, 1)
    assert_close(camlens.guided_backprop(TwoReLUNet(inplace=True), x, 1), ours, **TIGHT)
    swapped = copy.deepcopy(model)
    swapped.relu1, swapped.relu2 = Swapped(), Swapped()
    leaf = x.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(swapped(leaf)[:, 1].sum(), leaf)
    assert_close(ours, reference, **TIGHT)


def test_guided_backprop_on_a_resnet_matches_a_module_swap() -> None:
    """tiny_resnet reuses one in-place ReLU module twice per block: each call is guided."""
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=DOUBLE)
    ours = camlens.guided_backprop(model, x, [1, 3])

    class GuidedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):  # type: ignore[override]
            ctx.save_for_backward(value)
            return value.clamp_min(0)

        @staticmethod
        def backward(ctx, gradient):  # type: ignore[override]
            (value,) = ctx.saved_tensors
            return gradient * (value > 0) * (gradient > 0)

    class Swapped(nn.Module):
        def forward(self, value: torch.Tensor) -> torch.Tensor:
            return GuidedReLU.apply(value)

    swapped = copy.deepcopy(model)
    for module in list(swapped.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, name, Swapped())
    leaf = x.clone().requires_grad_(True)
    scores = swapped(leaf)
    (reference,) = torch.autograd.grad(scores[0, 1] + scores[1, 3], leaf)
    assert_close(ours, reference, rtol=1e-9, atol=1e-12)


def test_functional_relu_is_not_guided_and_says_so() -> None:
    model, x = TwoReLUNet(functional=True), _net_input()
    with pytest.warns(UserWarning, match="F.relu") as caught:
        result = camlens.guided_backprop(model, x, [0, 2, 1])
    assert caught[0].filename == __file__
    assert_close(result, _guided_by_hand(model, x, [0, 2, 1], guided=False), **TIGHT)


class Boom(RuntimeError):
    pass


def _exploding(_output: torch.Tensor) -> torch.Tensor:
    raise Boom("target failed")


def test_guided_backprop_leaves_the_model_and_input_as_found(snapshot) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4).train()
    model.layer2.eval()
    for parameter in model.layer1.parameters():
        parameter.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(model)
    camlens.guided_backprop(model, x, [1, 2])
    before.assert_same(model)
    with pytest.raises(Boom):
        camlens.guided_backprop(model, x, _exploding)
    before.assert_same(model)
    with pytest.raises(Boom):
        camlens.guided_gradcam(model, x, "layer4", _exploding)
    before.assert_same(model)
    assert not x.requires_grad and x.grad is None


def test_guided_gradcam_is_guided_backprop_times_the_final_map() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4).double()
    x = torch.randn(2, 3, 64, 64, dtype=DOUBLE)
    result = camlens.guided_gradcam(model, x, "layer3", [1, 3])
    maps = camlens.explain(model, x, "gradcam", "layer3", [1, 3]).maps
    assert float(maps.max()) > 0.99
    assert_close(result, camlens.guided_backprop(model, x, [1, 3]) * maps[:, None], **TIGHT)
    other = camlens.guided_gradcam(model, x, "layer3", [1, 3], method="layercam")
    assert other.shape == (2, 3, 64, 64) and not torch.allclose(other, result)
    top = camlens.guided_gradcam(model, x, "layer3")  # None: each image's predicted class
    predicted = model.eval()(x).argmax(1).tolist()
    assert_close(top, camlens.guided_gradcam(model, x, "layer3", predicted), **TIGHT)


def test_guided_backprop_relu_model_familiar_call() -> None:
    """pytorch-grad-cam's call: (H, W, 3) float32 for one image, top class by default; a
    batch gives every image (upstream: the first only)."""
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4)
    x = torch.randn(2, 3, 32, 32)
    guided = camlens.GuidedBackpropReLUModel(model, device="cpu")
    one = guided(x[:1])
    predicted = int(model.eval()(x[:1]).argmax())
    expected = camlens.guided_backprop(model, x[:1], predicted)[0].permute(1, 2, 0).numpy()
    assert one.shape == (32, 32, 3) and one.dtype == np.float32
    np.testing.assert_array_equal(one, expected)
    both = guided(x, target_category=2)
    assert both.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(both[1], guided(x[1:], 2), rtol=1e-4, atol=1e-7)


def test_guided_backprop_on_volumes() -> None:
    torch.manual_seed(0)
    model = Tiny3DCNN(in_channels=1, num_classes=3).double()
    x = torch.randn(2, 1, 8, 8, 8, dtype=DOUBLE)
    result = camlens.guided_backprop(model, x, [0, 2])
    assert result.shape == x.shape and torch.isfinite(result).all()
    assert_close(camlens.guided_backprop(model, x[1:], 2)[0], result[1], **TIGHT)
    assert camlens.guided_gradcam(model, x, "layer4", [0, 2]).shape == x.shape


# ------------------------------------------------------------------------------------------
# KPCA-CAM
# ------------------------------------------------------------------------------------------
def kpca_reference(activations: torch.Tensor, kernel: str, gamma: float | None) -> torch.Tensor:
    """``(B, C, h, w)`` → ``(B, h, w)`` in float64, written from the definition: kernel
    entries one pair at a time, ``K̃ = J K J`` with the centring matrix, numpy's ``eigh``,
    the top eigenvector times √λ, oriented to correlate with the channel sum."""
    batch, channels, height, width = activations.shape
    gamma = 1.0 / channels if gamma is None else gamma
    out = np.empty((batch, height * width))
    for b in range(batch):
        points = activations[b].reshape(channels, -1).T.double().numpy()
        centred = points - points.mean(axis=0)
        count = len(centred)
        matrix = np.empty((count, count))
        for i in range(count):
            for j in range(count):
                x, y = centred[i], centred[j]
                if kernel == "rbf":
                    matrix[i, j] = math.exp(-gamma * float(((x - y) ** 2).sum()))
                elif kernel == "sigmoid":
                    matrix[i, j] = math.tanh(gamma * float(x @ y) + 1.0)
                else:
                    matrix[i, j] = float(x @ y)
        centring = np.eye(count) - np.full((count, count), 1.0 / count)
        values, vectors = np.linalg.eigh(centring @ matrix @ centring)
        projection = vectors[:, -1] * math.sqrt(max(values[-1], 0.0))
        reference = points.sum(axis=1) - points.sum(axis=1).mean()
        out[b] = projection if projection @ reference > 0 else -projection
    return torch.from_numpy(out).reshape(batch, height, width)


def _activations() -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return torch.randn(2, 4, 3, 5, generator=generator, dtype=DOUBLE)


@pytest.mark.parametrize(
    ("kernel", "gamma"), [("rbf", 0.3), ("rbf", None), ("sigmoid", None), ("sigmoid", 0.2)]
)
def test_kpcacam_against_a_kernel_pca_written_out(kernel: str, gamma: float | None) -> None:
    x = _activations()
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(60, 2)).double()
    raw = camlens.explain(
        model, x, "kpcacam", "0", targets=[0, 1], options={"kernel": kernel, "gamma": gamma}
    ).layer_maps[0]
    assert_close(raw, kpca_reference(x, kernel, gamma), rtol=1e-9, atol=1e-9)
    assert_close(raw.sum(dim=(1, 2)), torch.zeros(2, dtype=DOUBLE), rtol=0, atol=1e-9)


def test_kpcacam_linear_kernel_is_eigencam() -> None:
    """Kernel PCA with ⟨x, y⟩ is PCA: the map is Eigen-CAM's (same sign rule)."""
    x = _activations()
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(60, 2)).double()
    linear = camlens.explain(model, x, "kpcacam", "0", 0, options={"kernel": "linear"})
    eigen = camlens.explain(model, x, "eigencam", "0", 0)
    assert_close(linear.layer_maps[0], eigen.layer_maps[0], rtol=1e-9, atol=1e-9)


def test_kpcacam_refuses_large_grids_with_the_way_out() -> None:
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(60, 2)).double()
    with pytest.raises(InputShapeError, match=r"15 positions.*max_locations=10"):
        camlens.explain(model, _activations(), "kpcacam", "0", 0, options={"max_locations": 10})


def test_kpca_cam_familiar_class() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=3)
    x = torch.randn(2, 3, 128, 128)
    maps = camlens.KPCA_CAM(model, [model.layer4], kernel="rbf", gamma=0.5)(x, None)
    expected = camlens.explain(
        model, x, "kpcacam", "layer4", options={"kernel": "rbf", "gamma": 0.5}
    )
    np.testing.assert_array_equal(maps, expected.numpy())
    with pytest.raises(camlens.errors.OptionError, match="kernel"):
        camlens.KPCA_CAM(model, [model.layer4], kernel="poly")


# ------------------------------------------------------------------------------------------
# Deep Feature Factorization
# ------------------------------------------------------------------------------------------
def test_nmf_recovers_a_nonnegative_low_rank_matrix() -> None:
    generator = torch.Generator().manual_seed(1)
    left = torch.rand(20, 3, generator=generator, dtype=DOUBLE)
    right = torch.rand(3, 30, generator=generator, dtype=DOUBLE)
    matrix = left @ right
    found_left, found_right = nmf(matrix, 3, iterations=2000, tolerance=0)
    assert bool((found_left >= 0).all()) and bool((found_right >= 0).all())
    error = torch.linalg.matrix_norm(matrix - found_left @ found_right) / torch.linalg.matrix_norm(
        matrix
    )
    assert float(error) < 1e-6
    again = nmf(matrix, 3, iterations=2000, tolerance=0)
    assert torch.equal(again[0], found_left)  # seeded


def test_factorization_concepts_add_back_the_channel_offsets() -> None:
    """A layer with negative values: each channel is shifted by its minimum, so adding a
    constant per channel moves the concepts by that constant and leaves the maps alone; a
    shifted rank-3 layer is rebuilt from its 3 concepts."""
    generator = torch.Generator().manual_seed(2)
    codes = torch.rand(2, 3, 4, 5, generator=generator, dtype=DOUBLE)  # (B, k, h, w)
    codes[0, :, 0, 0] = 0  # so each channel's minimum is -0.5 and V − min is rank 3
    basis = torch.rand(6, 3, generator=generator, dtype=DOUBLE)  # (C, k)
    activations = torch.einsum("ck,bkhw->bchw", basis, codes) - 0.5
    shift = torch.linspace(-2, 3, 6, dtype=DOUBLE)
    found = factorize_activations(activations, 3)
    moved = factorize_activations(activations + shift[None, :, None, None], 3)
    assert found.concepts.shape == (6, 3) and found.maps.shape == (2, 3, 4, 5)
    assert bool((found.maps >= 0).all())
    assert_close(moved.maps, found.maps, rtol=1e-8, atol=1e-8)
    assert_close(moved.concepts, found.concepts + shift[:, None], rtol=1e-8, atol=1e-8)
    offset = activations.transpose(0, 1).reshape(6, -1).min(1).values
    rebuilt = torch.einsum("ck,bkhw->bchw", found.concepts - offset[:, None], found.maps)
    relative = (rebuilt - activations + offset[None, :, None, None]).norm() / activations.norm()
    assert float(relative) < 0.05  # 500 multiplicative updates (the default): close, not exact


def test_deep_feature_factorization_familiar_call(snapshot) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4)
    x = torch.randn(2, 3, 64, 64)
    before = snapshot(model)
    dff = camlens.DeepFeatureFactorization(model, model.layer4, computation_on_concepts=model.fc)
    concepts, explanations, outputs = dff(x, 3)
    before.assert_same(model)
    assert concepts.shape == (64, 3) and explanations.shape == (2, 3, 64, 64)
    assert explanations.min() >= 0 and explanations.max() <= 1
    with torch.no_grad():
        expected = model.fc(torch.from_numpy(concepts.T.copy()))
    np.testing.assert_allclose(outputs, expected.numpy(), rtol=1e-5, atol=1e-5)
    concepts_only, _ = camlens.DeepFeatureFactorization(model, "layer4")(x, 3)
    np.testing.assert_array_equal(concepts_only, concepts)
    picture = camlens.image.show_factorization_on_image(
        np.zeros((64, 64, 3), dtype=np.float32), explanations[0], image_weight=0.3
    )
    assert picture.shape[:2] == (64, 64) or picture.shape[1] == 64


# ------------------------------------------------------------------------------------------
# Seg-Eigen-CAM
# ------------------------------------------------------------------------------------------
def test_segeigencam_by_hand() -> None:
    """Chung & Ying 2025: first principal component of |G| ⊙ A (eigh of the covariance,
    not an SVD), oriented to agree with Σ_c |G_c| A_c."""
    model, x = _hand_model()
    points = torch.stack([(tensor(G0).abs() * tensor(A0)), (tensor(G1).abs() * tensor(A1))])
    points = points.reshape(2, -1).T  # (6 cells, 2 channels)
    centred = points - points.mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    projection = centred @ vectors[:, -1]
    reference = points.sum(1) - points.sum(1).mean()
    expected = projection if float(projection @ reference) > 0 else -projection
    assert_close(_raw(model, x, "segeigencam")[0], expected.reshape(2, 3), **TIGHT)


# ------------------------------------------------------------------------------------------
# Smooth Grad-CAM++
# ------------------------------------------------------------------------------------------
def test_smooth_gradcam_plusplus_without_noise_is_gradcam_plusplus() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4).double()
    x = torch.randn(2, 3, 64, 64, dtype=DOUBLE)
    options = {"noise_level": 0.0, "samples": 3}
    smooth = camlens.explain(model, x, "smoothgradcam++", "layer3", [1, 2], options=options)
    plain = camlens.explain(model, x, "gradcam++", "layer3", [1, 2])
    assert_close(smooth.layer_maps[0], plain.layer_maps[0], rtol=1e-12, atol=1e-12)


def test_smooth_gradcam_plusplus_by_hand_on_a_quadratic_head() -> None:
    """y = ½ Σ P ⊙ A² at an identity layer: the noisy copy i has G_i = P ⊙ (A + σ δ_i), with
    the documented noise (10 draws N(0, 1) of the input's shape, CPU generator seeded 0,
    σ = 0.15 · (max − min) of the image); D¹, D², D³ averaged, Grad-CAM++'s α and weights
    from them, times the clean activations."""
    weights = tensor([[[1.0, -2.0, 0.5], [2.0, 1.0, -1.0]], [[0.5, 1.0, 2.0], [-1.0, 3.0, 1.0]]])
    model = Quadratic(weights)
    x = tensor([[A0, A1]])
    raw = _raw(model, x, "smoothgradcam++")
    sigma = 0.15 * (x.max() - x.min())
    noise = torch.randn((10, 2, 2, 3), generator=torch.Generator().manual_seed(0), dtype=DOUBLE)
    gradients = weights * (x[0] + sigma * noise)  # (10, C, h, w)
    first, second, third = (gradients.pow(p).mean(0) for p in (1, 2, 3))
    sums = x[0].sum(dim=(1, 2))[:, None, None]
    alpha = second / (2 * second + sums * third + 1e-6)
    channel = (alpha * torch.relu(first)).sum(dim=(1, 2))
    expected = (channel[:, None, None] * x[0]).sum(0)
    assert_close(raw[0], expected, **TIGHT)
    other = _raw(model, x, "smoothgradcam++", seed=1)
    assert not torch.allclose(other, raw)


def test_smooth_gradcam_plusplus_batch_is_images_one_by_one() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4).double()
    x = torch.randn(2, 3, 64, 64, dtype=DOUBLE)
    both = camlens.explain(model, x, "smoothgradcam++", "layer3", [1, 2], options={"samples": 3})
    for image in range(2):
        one = camlens.explain(
            model,
            x[image : image + 1],
            "smoothgradcam++",
            "layer3",
            [1, 2][image],
            options={"samples": 3},
        )
        assert_close(one.layer_maps[0][0], both.layer_maps[0][image], rtol=1e-10, atol=1e-12)
