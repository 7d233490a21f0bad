"""pytorch-grad-cam's extension point on camlens.BaseCAM (and camlens.compat.base_cam.BaseCAM):
a subclass overriding ``get_cam_weights`` or ``get_cam_image`` runs through camlens's
pipeline, and the attributes upstream scripts read behave as upstream's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camlens
from camlens.compat.activations_and_gradients import ActivationsAndGradients
from camlens.compat.base_cam import BaseCAM
from camlens.errors import CamlensError, InputShapeError, UnknownMethodError
from tests.compat.conftest import small_resnet18


class MeanGradientCAM(BaseCAM):
    """Grad-CAM written the upstream way."""

    def __init__(self, model: nn.Module, target_layers, reshape_transform=None) -> None:
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        assert isinstance(activations, np.ndarray) and activations.dtype == np.float32
        assert isinstance(input_tensor, torch.Tensor) and len(targets) == activations.shape[0]
        assert isinstance(target_layer, nn.Module)
        return np.mean(grads, axis=(2, 3))


class ActivationSumCAM(BaseCAM):
    """A gradient-free map written as ``get_cam_image``."""

    def __init__(self, model: nn.Module, target_layers) -> None:
        super().__init__(model, target_layers, uses_gradients=False)

    def get_cam_image(
        self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False
    ):
        assert grads is None
        return activations.sum(axis=1)


@pytest.fixture
def model() -> nn.Module:
    return small_resnet18()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_base_cam_is_camlens_base_cam() -> None:
    assert BaseCAM is camlens.BaseCAM


@pytest.mark.parametrize("targets", [None, [3, 5]])
def test_get_cam_weights_override_equals_gradcam(model, x, targets) -> None:
    layers = [model.layer4[-1], model.layer3[-1]]
    ours = MeanGradientCAM(model, layers)(input_tensor=x, targets=targets)
    reference = camlens.GradCAM(model=model, target_layers=layers)(input_tensor=x, targets=targets)
    assert ours.shape == (2, 32, 32) and ours.min() >= 0 and ours.max() <= 1
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_get_cam_image_override_runs_through_the_shared_post_processing(model, x) -> None:
    layers = [model.layer4[-1]]
    cam = ActivationSumCAM(model, layers)
    ours = cam(input_tensor=x, targets=None)
    activations = cam.activations_and_grads.activations[0]
    expected = camlens.postprocess.familiar_maps([activations.sum(1)], (32, 32)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_subclass_of_a_named_class_uses_its_override(model, x) -> None:
    class Uniform(camlens.HiResCAM):
        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            return np.ones(activations.shape[:2], dtype=np.float32)

    cam = Uniform(model=model, target_layers=[model.layer4])
    explanation = cam.explain(x)
    assert cam.method.label == "Uniform"
    assert explanation.maps.shape == (2, 32, 32)


def test_eigen_smooth_goes_to_the_override_once(model, x) -> None:
    seen = []

    class Spy(MeanGradientCAM):
        def get_cam_image(self, *args, eigen_smooth=False, **kwargs):
            seen.append(args[-1] if len(args) == 6 else eigen_smooth)
            return super().get_cam_image(*args, **kwargs)

    Spy(model, [model.layer4])(x, eigen_smooth=True)
    assert seen == [True]


def test_model_is_restored_after_an_exception_in_the_override(model, x) -> None:
    class Broken(BaseCAM):
        def get_cam_weights(self, *args):
            raise RuntimeError("boom")

    model.train()
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    with pytest.raises(RuntimeError, match="boom"):
        Broken(model, [model.layer4])(x)
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_wrong_shapes_from_overrides_are_camlens_errors(model, x) -> None:
    class BadWeights(BaseCAM):
        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            return np.ones(3)

    class BadImage(BaseCAM):
        def get_cam_image(self, *args, **kwargs):
            return np.ones((2, 5, 5))

    with pytest.raises(InputShapeError, match=r"get_cam_weights returned shape \(3,\)"):
        BadWeights(model, [model.layer4])(x)
    with pytest.raises(InputShapeError, match="get_cam_image returned shape"):
        BadImage(model, [model.layer4])(x)


def test_base_cam_without_a_method_says_how_to_define_one(model) -> None:
    with pytest.raises(UnknownMethodError, match="override get_cam_weights"):
        BaseCAM(model, [model.layer4])


def test_upstream_keywords_need_an_override(model) -> None:
    with pytest.raises(TypeError, match="uses_gradients"):
        camlens.GradCAM(model, [model.layer4], uses_gradients=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        BaseCAM(model, [model.layer4], colour="red")

    class WithTransforms(MeanGradientCAM):
        def __init__(self, model: nn.Module, target_layers) -> None:
            BaseCAM.__init__(self, model, target_layers, tta_transforms=["flip"])

    with pytest.raises(CamlensError, match="tta_transforms"):
        WithTransforms(model, [model.layer4])


def test_activations_and_grads_after_a_call(model, x) -> None:
    cam = camlens.GradCAM(model=model, target_layers=[model.layer4[-1], model.layer3[-1]])
    cam(x, targets=[1, 2], aug_smooth=True)
    recorder = cam.activations_and_grads
    assert [tuple(a.shape) for a in recorder.activations] == [(2, 64, 1, 1), (2, 32, 2, 2)]
    assert [tuple(g.shape) for g in recorder.gradients] == [(2, 64, 1, 1), (2, 32, 2, 2)]
    assert all(a.device.type == "cpu" and not a.requires_grad for a in recorder.activations)
    eigen = camlens.EigenCAM(model=model, target_layers=[model.layer4])
    eigen(x)
    assert len(eigen.activations_and_grads.activations) == 1
    assert eigen.activations_and_grads.gradients == []


def test_forward_compute_cam_per_layer_and_aggregate(model, x) -> None:
    cam = camlens.GradCAMPlusPlus(model=model, target_layers=[model.layer4[-1], model.layer3])
    final = cam.forward(x, [1, 2])
    per_layer = cam.compute_cam_per_layer(x, None, False)
    assert [p.shape for p in per_layer] == [(2, 1, 32, 32)] * 2
    np.testing.assert_allclose(cam.aggregate_multi_layers(per_layer), final, atol=1e-5)
    assert np.array_equal(cam(x, [1, 2]), final)


def test_get_cam_image_of_a_registered_method_is_its_layer_map(model, x) -> None:
    cam = camlens.HiResCAM(model=model, target_layers=[model.layer4])
    explanation = cam.explain(x, [3, 4])
    recorder = cam.activations_and_grads
    image = cam.get_cam_image(
        x, model.layer4, None, recorder.activations[0].numpy(), recorder.gradients[0].numpy()
    )
    np.testing.assert_allclose(image, explanation.layer_maps[0].numpy(), atol=1e-6)
    with pytest.raises(NotImplementedError):
        cam.get_cam_weights(x, model.layer4, None, None, None)
    with pytest.raises(CamlensError, match="re-runs the model"):
        camlens.ScoreCAM(model=model, target_layers=[model.layer4]).get_cam_image(
            x, model.layer4, None, np.zeros((2, 64, 1, 1), np.float32), None
        )


def test_compute_cam_per_layer_before_a_call_is_an_error(model, x) -> None:
    with pytest.raises(CamlensError, match="call the CAM"):
        camlens.GradCAM(model=model, target_layers=[model.layer4]).compute_cam_per_layer(
            x, None, False
        )


def test_small_attributes(model, x) -> None:
    cam = camlens.GradCAM(model=model, target_layers=[model.layer4])
    assert cam.get_target_width_height(torch.zeros(1, 3, 20, 30)) == (30, 20)
    assert cam.get_target_width_height(torch.zeros(1, 1, 4, 5, 6)) == (6, 5, 4)
    assert cam.device == torch.device("cpu")
    assert cam.uses_gradients and not camlens.EigenCAM(model, [model.layer4]).uses_gradients
    assert cam.compute_input_gradient is False and cam.detach is True
    smooth = cam.forward_augmentation_smoothing(x, [1, 1])
    assert np.array_equal(smooth, cam(x, [1, 1], aug_smooth=True))


def test_activations_and_gradients_standalone(model, x) -> None:
    recorder = ActivationsAndGradients(model, [model.layer4[-1]], None)
    output = recorder(x.requires_grad_())
    assert all(not m._forward_hooks for m in model.modules())
    assert recorder.activations[0].shape == (2, 64, 1, 1) and recorder.gradients == []
    output[:, 0].sum().backward()
    assert recorder.gradients[0].shape == (2, 64, 1, 1)
    recorder.release()
    assert recorder.activations == [] and recorder.gradients == []
