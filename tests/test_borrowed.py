"""The model is borrowed: it comes back exactly as it was, after success and after errors."""

from __future__ import annotations

import gc
import os

import pytest
import torch

import camlens
from camlens.errors import NonFiniteError, TargetError
from camlens.methods import get_method
from camlens.models import tiny_deeplabv3plus, tiny_resnet
from camlens.targets import ClassifierOutputTarget

from .conftest import GapLinearNet

#: The methods that run on CNNs (attention methods need a transformer: test_attention_methods).
CNN_METHODS = [m for m in camlens.available_methods() if not get_method(m).needs_attention]


def _mixed_mode_resnet() -> torch.nn.Module:
    """Training mode with some submodules in eval and some parameters frozen, and a stale
    ``.grad`` on one parameter: all of it must survive."""
    model = tiny_resnet(num_classes=4).train()
    model.layer2.eval()
    model.layer1[0].bn1.eval()
    for parameter in model.layer1.parameters():
        parameter.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    return model


@pytest.mark.parametrize("method", CNN_METHODS)
def test_model_untouched_after_success(method: str, snapshot) -> None:
    torch.manual_seed(0)
    model = _mixed_mode_resnet()
    before = snapshot(model)
    result = camlens.explain(model, torch.randn(2, 3, 32, 32), method=method, layers="layer4")
    assert result.maps.shape == (2, 32, 32)
    before.assert_same(model)


class Boom(RuntimeError):
    pass


def _exploding_target(_output: torch.Tensor) -> torch.Tensor:
    raise Boom("target failed")


@pytest.mark.parametrize("method", CNN_METHODS)
def test_model_untouched_after_exception(method: str, snapshot) -> None:
    torch.manual_seed(0)
    model = _mixed_mode_resnet()
    before = snapshot(model)
    with pytest.raises(Boom):
        camlens.explain(
            model,
            torch.randn(2, 3, 32, 32),
            method=method,
            layers="layer4",
            targets=[_exploding_target],
        )
    before.assert_same(model)
    with pytest.raises(TargetError):
        camlens.explain(
            model,
            torch.randn(1, 3, 32, 32),
            method=method,
            layers="layer4",
            targets=[ClassifierOutputTarget(99)],
        )
    before.assert_same(model)


def test_model_untouched_when_forward_raises(snapshot) -> None:
    model = tiny_resnet(num_classes=4)
    before = snapshot(model)
    with pytest.raises(RuntimeError):  # 5 input channels for a 3-channel model
        camlens.explain(model, torch.randn(1, 5, 32, 32), method="gradcam", layers="layer4")
    before.assert_same(model)


def test_model_untouched_after_nan(snapshot) -> None:
    model = tiny_deeplabv3plus(num_classes=3).train()
    before = snapshot(model)
    x = torch.randn(1, 3, 32, 32)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(NonFiniteError):
        camlens.explain(model, x, method="hirescam", layers="encoder.layer4", targets=[1])
    before.assert_same(model)


def test_batch_norm_statistics_not_updated_in_train_mode() -> None:
    model = tiny_resnet(num_classes=4).train()
    running = model.bn1.running_mean.clone()
    camlens.explain(model, torch.randn(4, 3, 32, 32) * 3 + 1, method="gradcam", layers="layer4")
    assert torch.equal(model.bn1.running_mean, running)
    assert model.training


def test_auto_layer_probe_leaves_model_untouched(snapshot) -> None:
    model = _mixed_mode_resnet()
    before = snapshot(model)
    camlens.explain(model, torch.randn(1, 3, 32, 32), method="gradcam", layers="auto")
    before.assert_same(model)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_flat_over_thousands_of_calls() -> None:
    torch.manual_seed(0)
    model = GapLinearNet(classes=3)
    cam = camlens.HiResCAM(model, [model.features])
    x = torch.randn(2, 3, 32, 32)  # a leaked activation per call would add 24 MiB
    for _ in range(200):  # warm-up: allocator pools, lazy imports
        cam.explain(x)
    gc.collect()
    before = _resident_bytes()
    for _ in range(2000):
        explanation = cam.explain(x)
    gc.collect()
    growth = _resident_bytes() - before
    assert growth < 8 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"
    assert all(not m._forward_hooks for m in model.modules())
    tensors = [explanation.maps, explanation.scores, explanation.outputs, *explanation.layer_maps]
    assert all(t.grad_fn is None and not t.requires_grad for t in tensors)
    assert cam.outputs is explanation.outputs
