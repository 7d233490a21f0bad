"""Wrappers around any method: the noise tunnel (SmoothGrad), RefineCAM and SESS — values
against formulas written out here, identities with the plain method, seeds, batches and
the borrowed model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.errors import OptionError
from camlens.methods.smooth import input_noise
from camlens.models import tiny_resnet
from camlens.postprocess import familiar_maps, min_max
from camlens.sess import _blur, window_starts

from .test_methods_values import WeightedSum

DOUBLE = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}


def _linear_case() -> tuple[WeightedSum, torch.Tensor, torch.Tensor]:
    """``y_k = Σ P_k ⊙ x + b_k`` after an identity layer: HiResCAM's raw map of class k is
    ``Σ_c P_k,c ⊙ x_c``, linear in the input."""
    generator = torch.Generator().manual_seed(2)
    weights = torch.randn(3, 2, 4, 5, generator=generator, dtype=DOUBLE)
    model = WeightedSum(weights, torch.randn(3, generator=generator, dtype=DOUBLE))
    x = torch.randn(2, 2, 4, 5, generator=generator, dtype=DOUBLE)
    x[1] *= 3.0  # a different value range, so a different σ
    return model, x, weights


@pytest.mark.parametrize("kind", ["mean", "mean_of_squares", "variance"])
def test_noise_tunnel_on_a_linear_map_by_hand(kind: str) -> None:
    """m_i = Σ_c P_c ⊙ (x_c + σ δ_i,c) with the documented noise (δ from the seeded CPU
    generator, σ_b = level · (max x_b − min x_b)): mean, mean of squares and population
    variance over i, written out."""
    model, x, weights = _linear_case()
    samples, level, seed = 5, 0.2, 7
    explainer = camlens.Explainer(model, "features", "hirescam")
    result = camlens.noise_tunnel(
        explainer, x, [1, 2], samples=samples, noise_level=level, kind=kind, seed=seed
    )
    delta = input_noise(samples, tuple(x.shape[1:]), seed)
    for image, category in enumerate([1, 2]):
        sigma = level * float(x[image].max() - x[image].min())
        copies = [
            (weights[category] * (x[image] + sigma * delta[i])).sum(0) for i in range(samples)
        ]
        stacked = torch.stack(copies)
        expected = {
            "mean": stacked.mean(0),
            "mean_of_squares": stacked.pow(2).mean(0),
            "variance": stacked.var(0, unbiased=False),
        }[kind]
        assert_close(result.layer_maps[0][image], expected, **TIGHT)
    assert_close(result.maps, familiar_maps(result.layer_maps, (4, 5)), **TIGHT)
    assert result.scores.shape == (2,) and result.extras["noise_tunnel"]["kind"] == kind


def test_noise_tunnel_without_noise_is_the_plain_method(snapshot) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=5).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=DOUBLE)
    explainer = camlens.GradCAMPlusPlus(model, [model.layer3, model.layer4])
    before = snapshot(model)
    smooth = camlens.noise_tunnel(explainer, x, samples=3, noise_level=0.0)
    before.assert_same(model)
    plain = explainer.explain(x)
    for ours, theirs in zip(smooth.layer_maps, plain.layer_maps, strict=True):
        assert torch.equal(ours, theirs)
    assert torch.equal(smooth.maps, plain.maps)
    assert torch.equal(smooth.scores, plain.scores)
    assert [t.category for t in smooth.targets] == [t.category for t in plain.targets]


def test_noise_tunnel_is_seeded_and_a_batch_is_its_images() -> None:
    torch.manual_seed(1)
    model = tiny_resnet(num_classes=4).double().eval()
    x = torch.randn(3, 3, 32, 32, dtype=DOUBLE)
    explainer = camlens.Explainer(model, "layer3", "gradcam")
    first = camlens.noise_tunnel(explainer, x, samples=3, kind="variance", seed=3)
    again = camlens.noise_tunnel(explainer, x, samples=3, kind="variance", seed=3)
    other = camlens.noise_tunnel(explainer, x, samples=3, kind="variance", seed=4)
    assert torch.equal(first.layer_maps[0], again.layer_maps[0])
    assert not torch.allclose(first.layer_maps[0], other.layer_maps[0])
    for image in range(3):
        single = camlens.noise_tunnel(
            explainer, x[image : image + 1], samples=3, kind="variance", seed=3
        )
        assert_close(single.layer_maps[0][0], first.layer_maps[0][image], **TIGHT)
    with pytest.raises(OptionError, match="kind"):
        camlens.noise_tunnel(explainer, x, kind="median")
    with pytest.raises(OptionError, match="samples"):
        camlens.noise_tunnel(explainer, x, samples=0)


class TwoIdentities(nn.Module):
    """``first`` and ``second`` (identities) → the weighted-sum head of ``_linear_case``: both
    layers' HiResCAM maps are ``m = Σ_c P_c ⊙ x_c``."""

    def __init__(self, head: WeightedSum) -> None:
        super().__init__()
        self.first, self.second, self.head = nn.Identity(), nn.Identity(), head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(self.first(x)))


def test_refine_cam_by_hand_and_with_one_layer() -> None:
    """Two layers with the same map m: min–max(F²) with F = min–max(ReLU m); one layer:
    the plain method's maps."""
    head, x, weights = _linear_case()
    model = TwoIdentities(head)
    refined = camlens.RefineCAM(model, ["first", "second"], base_method="hirescam").explain(
        x, [0, 2]
    )
    for image, category in enumerate([0, 2]):
        m = (weights[category] * x[image]).sum(0)
        single = min_max(torch.relu(m)[None])[0]
        assert_close(refined.maps[image], min_max((single * single)[None])[0], **TIGHT)
        assert_close(refined.layer_maps[1][image], m, **TIGHT)
    one = camlens.refine_cam(camlens.Explainer(model, "first", "gradcam++"), x, [0, 2])
    plain = camlens.GradCAMPlusPlus(model, ["first"]).explain(x, [0, 2])
    assert_close(one.maps, plain.maps, rtol=1e-6, atol=1e-6)  # one more min–max (ε 1e-7)


def test_refine_cam_is_the_product_of_the_per_layer_maps(snapshot) -> None:
    torch.manual_seed(2)
    model = tiny_resnet(num_classes=5).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=DOUBLE)
    before = snapshot(model)
    with camlens.RefineCAM(model, [model.layer2, model.layer3, model.layer4]) as cam:
        maps = cam(x, [camlens.targets.ClassifierOutputTarget(1)])
    before.assert_same(model)
    per_layer = [
        camlens.GradCAMPlusPlus(model, [layer]).explain(x, [1]).maps
        for layer in (model.layer2, model.layer3, model.layer4)
    ]
    expected = min_max(per_layer[0] * per_layer[1] * per_layer[2])
    assert_close(torch.from_numpy(maps), expected.float(), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------
# SESS
# ------------------------------------------------------------------------------------------
def _sess_case() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(3)
    return tiny_resnet(num_classes=5).double().eval(), torch.randn(2, 3, 32, 64, dtype=DOUBLE)


def test_window_starts_by_hand() -> None:
    assert window_starts(10, 4, 4) == [0, 4, 6]  # the last window moved back inside
    assert window_starts(8, 4, 4) == [0, 4]
    assert window_starts(10, 3, 4) == [0, 3, 6]
    assert window_starts(4, 4, 4) == [0]
    assert window_starts(3, 4, 4) == [0]


def test_sess_with_one_full_window_is_the_plain_method(snapshot) -> None:
    """One scale equal to the image, one window covering it: the patch is the image, its
    weight is 1, and the fusion returns its map."""
    model, x = _sess_case()
    square = x[..., :32]
    explainer = camlens.GradCAM(model, [model.layer3])
    before = snapshot(model)
    fused = camlens.sess(explainer, square, [1, 3], scales=[32], smooth=False)
    before.assert_same(model)
    plain = explainer.explain(square, [1, 3])
    assert_close(fused.layer_maps[0], plain.maps, **TIGHT)
    assert_close(fused.maps, plain.maps, rtol=1e-6, atol=1e-6)  # one more min–max
    assert fused.extras["sess"]["patches"] == [1, 1]


def test_sess_windows_weighted_by_their_scores_by_hand() -> None:
    """A 32 × 64 image, window 32, one scale: two side-by-side patches, each with the plain
    method's map of that patch times softmax score / best score (the paper's channel-wise
    weight); pre-filtering half of them keeps the better one only; without overlap the
    max fusion is the mean fusion."""
    model, x = _sess_case()
    explainer = camlens.HiResCAM(model, [model.layer4])
    fused = camlens.sess(explainer, x, [2, 0], scales=[32], smooth=False)
    for image, category in enumerate([2, 0]):
        halves = [x[image : image + 1, :, :, :32], x[image : image + 1, :, :, 32:]]
        plain = [explainer.explain(half, [category]).maps[0] for half in halves]
        with torch.no_grad():
            scores = [torch.softmax(model(half), 1)[0, category] for half in halves]
        best = max(scores)
        expected = torch.cat([m * s / best for m, s in zip(plain, scores, strict=True)], dim=1)
        assert_close(fused.layer_maps[0][image], expected, **TIGHT)
        kept = camlens.sess(
            explainer,
            x[image : image + 1],
            [category],
            scales=[32],
            smooth=False,
            pre_filter_ratio=0.5,
        ).layer_maps[0][0]
        winner = int(scores[1] > scores[0])
        assert not kept[:, 32 * (1 - winner) : 32 * (2 - winner)].any()
        assert_close(kept[:, 32 * winner : 32 * (winner + 1)], plain[winner], **TIGHT)
    maximum = camlens.sess(explainer, x, [2, 0], scales=[32], smooth=False, pool="max")
    assert_close(maximum.layer_maps[0], fused.layer_maps[0], **TIGHT)


def test_sess_blur_batch_and_familiar_call(snapshot) -> None:
    impulse = torch.zeros(1, 21, 21, dtype=DOUBLE)
    impulse[0, 10, 10] = 1.0
    offsets = torch.arange(11, dtype=DOUBLE) - 5
    kernel = torch.exp(-(offsets**2) / 50)
    kernel = kernel / kernel.sum()
    assert_close(_blur(impulse)[0, 5:16, 5:16], torch.outer(kernel, kernel), **TIGHT)
    assert_close(_blur(torch.ones(1, 12, 9, dtype=DOUBLE)), torch.ones(1, 12, 9, dtype=DOUBLE))
    model, x = _sess_case()
    before = snapshot(model)
    with camlens.SESS(model, [model.layer3], num_scales=2, step_size=16) as cam:
        maps = cam(x, None)
        batch = cam.explain(x)
    before.assert_same(model)
    assert maps.shape == (2, 32, 64) and maps.dtype.name == "float32"
    for image in range(2):
        single = cam.explain(x[image : image + 1])
        assert_close(single.layer_maps[0][0], batch.layer_maps[0][image], **TIGHT)
    explainer = camlens.Explainer(model, "layer3", "gradcam")
    with pytest.raises(ValueError, match="at least the window"):
        camlens.sess(explainer, x, scales=[16])
    with pytest.raises(TypeError, match="unknown option"):
        camlens.sess(explainer, x, pre_filter=0.5)
    with pytest.raises(OptionError, match="pool"):
        camlens.SESS(model, [model.layer3], pool="median")


def test_wrappers_hand_the_model_back_after_an_error(snapshot) -> None:
    """A target that fails once the copies are scored: the model is as it was."""
    model, x = _sess_case()
    model.layer2.train()  # a mixed train/eval state to restore

    class FailsOnSoftmax:
        def __call__(self, output: torch.Tensor) -> torch.Tensor:
            if float(output.detach().sum()) == pytest.approx(1.0):
                raise RuntimeError("boom")
            return output[0]

    before = snapshot(model)
    explainer = camlens.Explainer(model, "layer3", "gradcam")
    with pytest.raises(RuntimeError, match="boom"):
        camlens.sess(explainer, x, [FailsOnSoftmax()], scales=[32])
    before.assert_same(model)
    with pytest.raises(camlens.errors.TargetError):
        camlens.noise_tunnel(explainer, x, [lambda output: output], samples=2)
    before.assert_same(model)
