"""Every registered method × model family × batch size: the contract every method keeps."""

from __future__ import annotations

import pytest
import torch

import camlens
from camlens.methods import get_method
from camlens.models import tiny_deeplabv3plus, tiny_resnet, tiny_vit, with_timm_attention
from camlens.targets import SemanticSegmentationTarget


def _segmentation_targets(model, x):
    predicted = model.eval()(x).argmax(1)
    return [SemanticSegmentationTarget(1, predicted[i] == 1) for i in range(x.shape[0])]


CASES = {
    "cnn-classifier": (lambda: tiny_resnet(num_classes=5), "layer4", 64, None),
    "vit-classifier": (
        lambda: with_timm_attention(tiny_vit(num_classes=5)),  # timm's attention modules
        "blocks[-1].norm1",
        32,
        None,
    ),
    "segmenter": (lambda: tiny_deeplabv3plus(num_classes=3), "encoder.layer4", 32, "mask"),
}


#: Every method with every model family it applies to (attention methods need a transformer).
PAIRS = [
    (method, case)
    for method in camlens.available_methods()
    for case in CASES
    if case.startswith("vit") or not get_method(method).needs_attention
]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize(("method", "case"), PAIRS)
def test_method_contract(method: str, case: str, batch: int, snapshot) -> None:
    factory, layer, size, targets = CASES[case]
    torch.manual_seed(0)
    model = factory()
    x = torch.randn(batch, 3, size, size)
    if targets == "mask":
        targets = _segmentation_targets(model, x)
    if method == "cam" and case == "segmenter":
        with pytest.raises(camlens.errors.CamlensError):
            camlens.explain(model, x, method=method, layers=layer, targets=targets)
        return
    before = snapshot(model)
    first = camlens.explain(model, x, method=method, layers=layer, targets=targets)
    second = camlens.explain(model, x, method=method, layers=layer, targets=targets)
    before.assert_same(model)
    assert first.maps.shape == (batch, size, size)
    assert first.scores.shape == (batch,)
    assert first.layer_maps[0].shape[0] == batch
    assert first.maps.device == x.device
    assert torch.isfinite(first.maps).all() and torch.isfinite(first.layer_maps[0]).all()
    assert float(first.maps.min()) >= 0 and float(first.maps.max()) <= 1
    assert torch.equal(first.layer_maps[0], second.layer_maps[0])
    assert torch.equal(first.maps, second.maps)
