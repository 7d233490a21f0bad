"""Models as users have them: output containers, token and channels-last layers, volumes,
dotted and automatic layer names."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.errors import InputShapeError
from camlens.methods import get_method
from camlens.models import (
    DictOutputSegmenter,
    HuggingFaceStyle,
    SwinStyle,
    Tiny3DCNN,
    tiny_deeplabv3plus,
    tiny_resnet,
    tiny_vit,
)
from camlens.reshape import channels_last, tokens_to_grid
from camlens.targets import ClassifierOutputTarget, SemanticSegmentationTarget


class TupleOutput(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.inner(x)
        return logits, logits.detach() * 0


def test_dict_output_segmenter() -> None:
    torch.manual_seed(0)
    model = DictOutputSegmenter(num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:20, 4:30] = True
    result = camlens.explain(
        model,
        x,
        method="hirescam",
        layers="backbone.layer4",
        targets=[SemanticSegmentationTarget(2, mask)],
    )
    logits = model.eval()(x)["out"]
    assert result.outputs.shape == (2, 3, 32, 32)
    assert_close(result.scores, (logits[:, 2] * mask).sum(dim=(1, 2)).detach())
    assert result.maps.shape == (2, 32, 32)


def test_tuple_and_logits_outputs_match_plain_tensor() -> None:
    torch.manual_seed(0)
    base = tiny_resnet(num_classes=4)
    x = torch.randn(2, 3, 32, 32)
    plain = camlens.explain(base, x, method="gradcam", layers="layer4", targets=[1])
    as_tuple = camlens.explain(
        TupleOutput(base), x, method="gradcam", layers="inner.layer4", targets=[1]
    )
    hf = camlens.explain(
        HuggingFaceStyle(base), x, method="gradcam", layers="model.layer4", targets=[1]
    )
    for other in (as_tuple, hf):
        assert_close(other.layer_maps[0], plain.layer_maps[0])
        assert_close(other.scores, plain.scores)


def test_vit_tokens_become_a_grid() -> None:
    torch.manual_seed(0)
    model = tiny_vit(num_classes=5)  # 32 px, patch 8 → 1 + 16 tokens
    x = torch.randn(2, 3, 32, 32)
    result = camlens.explain(model, x, method="gradcam", layers="blocks[-1].norm1")
    assert result.layer_maps[0].shape == (2, 4, 4)
    assert result.maps.shape == (2, 32, 32)
    assert result.layer_maps[0].abs().sum() > 0
    # the same through an explicit pytorch-grad-cam style reshape_transform
    explicit = camlens.GradCAM(
        model, [model.blocks[-1].norm1], reshape_transform=lambda t: tokens_to_grid(t, grid=(4, 4))
    )
    assert_close(explicit.explain(x).layer_maps[0], result.layer_maps[0])


def test_token_grid_errors() -> None:
    with pytest.raises(InputShapeError, match="perfect square"):
        tokens_to_grid(torch.zeros(1, 7, 4))
    assert tokens_to_grid(torch.arange(2 * 5 * 3.0).reshape(2, 5, 3)).shape == (2, 3, 2, 2)


def test_swin_channels_last() -> None:
    torch.manual_seed(0)
    model = SwinStyle(num_classes=4)
    x = torch.randn(1, 3, 32, 32)
    layer = model.layers[-1].blocks[-1].norm2  # LayerNorm: channels-last inferred
    inferred = camlens.explain(model, x, method="hirescam", layers=[layer])
    explicit = camlens.HiResCAM(model, [layer], reshape_transform=channels_last).explain(x)
    assert_close(inferred.layer_maps[0], explicit.layer_maps[0])
    grid = inferred.layer_maps[0].shape[1:]
    assert len(grid) == 2 and grid[0] == grid[1] > 1


def test_volumes() -> None:
    torch.manual_seed(0)
    model = Tiny3DCNN(in_channels=1, num_classes=3)
    x = torch.randn(2, 1, 16, 16, 16)
    for method in camlens.available_methods():
        if get_method(method).needs_attention:
            continue  # needs a transformer's attention modules
        result = camlens.explain(model, x, method=method, layers="layer4", targets=[2])
        assert result.maps.shape == (2, 16, 16, 16), method
        assert result.layer_maps[0].dim() == 4
        assert torch.isfinite(result.maps).all()


def test_volume_hirescam_identity() -> None:
    """GAP + linear in 3-D as well: the raw map sums to logit − bias."""
    torch.manual_seed(0)
    model = Tiny3DCNN(in_channels=1, num_classes=3).double()
    x = torch.randn(1, 1, 16, 16, 16, dtype=torch.float64)
    result = camlens.explain(model, x, method="hirescam", layers="layer4", targets=[1])
    expected = model.eval()(x)[0, 1] - model.fc.bias[1]
    assert_close(result.layer_maps[0].sum(), expected.detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("factory", "size", "expected"),
    [
        (lambda: tiny_resnet(num_classes=4), 64, "layer4"),
        (lambda: tiny_deeplabv3plus(num_classes=3), 32, "decoder"),
        (lambda: tiny_vit(num_classes=4), 32, "blocks.1.norm1"),
    ],
)
def test_auto_layer(factory, size: int, expected: str, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = factory()
    x = torch.randn(1, 3, size, size)
    with caplog.at_level(logging.INFO, logger="camlens"):
        result = camlens.explain(model, x, method="gradcam", layers="auto", targets=[1])
    assert result.layer_names[0] == expected
    assert "resolved to" in caplog.text
    assert result.layer_maps[0].abs().sum() > 0


def test_dotted_and_indexed_names_agree() -> None:
    model = tiny_resnet(num_classes=4)
    x = torch.randn(1, 3, 32, 32)
    a = camlens.explain(model, x, layers="layer4[-1]", targets=[0])
    b = camlens.explain(model, x, layers="layer4.-1", targets=[0])
    c = camlens.explain(model, x, layers=[model.layer4[-1]], targets=[0])
    assert a.layer_names == b.layer_names == c.layer_names == ["layer4.0"]
    assert_close(a.layer_maps[0], c.layer_maps[0])


def test_several_layers_each_get_a_map() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=4)
    x = torch.randn(2, 3, 64, 64)
    result = camlens.explain(
        model, x, method="gradcam", layers=["layer3", "layer4"], targets=[ClassifierOutputTarget(1)]
    )
    assert [tuple(m.shape) for m in result.layer_maps] == [(2, 4, 4), (2, 2, 2)]
    assert result.maps.shape == (2, 64, 64)
    # layer4 alone gives the same layer4 map: total derivatives, not truncated ones
    alone = camlens.explain(model, x, method="gradcam", layers="layer4", targets=[1])
    assert_close(result.layer_maps[1], alone.layer_maps[0])
    layer3 = camlens.explain(model, x, method="gradcam", layers="layer3", targets=[1])
    assert_close(result.layer_maps[0], layer3.layer_maps[0])
