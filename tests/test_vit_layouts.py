"""Token layouts read from the model: class + register tokens (pathology foundation models:
Virchow2 1 + 4 + 256 tokens, UNI2-h 1 + 8 + 256), patch 14, square and non-square inputs,
timm / Hugging Face / torchvision attribute layouts, and a ViT encoder under a segmenter.

Identities (float64): a head that is linear in the explained layer's patch tokens makes
HiResCAM's raw map add up over the patch grid to the score minus what does not pass
through those patch tokens (the bias, and for DINOv2's head the class token's share).
"""

from __future__ import annotations

import logging
import re

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.errors import InputShapeError
from camlens.layers import layer_name
from camlens.models import (
    HuggingFaceViT,
    VisionTransformer,
    ViTConfig,
    ViTSegmenter,
    tiny_register_vit,
    tiny_vit,
)
from camlens.reshape import default_reshape, tokens_to_grid
from camlens.tokens import TokenLayout, token_layout

SIZES = [(224, 224), (224, 336)]
GRIDS = {(224, 224): (16, 16), (224, 336): (16, 24)}


def _input(size: tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *size, generator=generator, dtype=torch.float64)


def _register_vit(
    registers: int, global_pool: str = "token", final_norm: bool = True
) -> VisionTransformer:
    torch.manual_seed(registers)
    model = tiny_register_vit(registers, global_pool=global_pool, final_norm=final_norm)
    return model.double().eval()


# --------------------------------------------------------------------------- the layout


@pytest.mark.parametrize("registers", [4, 8])
@pytest.mark.parametrize("size", SIZES)
def test_timm_layout_is_read_from_the_model(registers: int, size: tuple[int, int]) -> None:
    model = _register_vit(registers)
    layout = token_layout(model, size)
    assert layout == TokenLayout(GRIDS[size], 1 + registers, "timm attributes")
    with torch.no_grad():
        tokens = model.forward_features(_input(size, batch=1))
    assert tokens.shape[1] == 1 + registers + GRIDS[size][0] * GRIDS[size][1]
    assert layout.fits(tokens.shape[1])


def test_fixed_size_timm_model_uses_its_grid_size() -> None:
    layout = token_layout(tiny_vit(), (32, 32))  # no dynamic_img_size: patch_embed.grid_size
    assert layout == TokenLayout((4, 4), 1, "timm attributes")


def test_huggingface_and_torchvision_layouts() -> None:
    config = ViTConfig(num_register_tokens=8)
    assert token_layout(HuggingFaceViT(config), (224, 336)) == TokenLayout(
        (16, 24), 9, "Hugging Face config"
    )

    class TorchvisionStyle(nn.Module):  # torchvision.models.VisionTransformer's attributes
        def __init__(self) -> None:
            super().__init__()
            self.patch_size = 16
            self.class_token = nn.Parameter(torch.zeros(1, 1, 8))

    assert token_layout(TorchvisionStyle(), (224, 224)) == TokenLayout(
        (14, 14), 1, "torchvision attributes"
    )
    # a ViT inside another module (a segmenter, a wrapper) declares the layout too
    segmenter = ViTSegmenter(tiny_register_vit(8))
    assert token_layout(segmenter, (224, 336)) == TokenLayout((16, 24), 9, "timm attributes")
    # nothing declared, volumes: no layout; the user's grid keeps the declared prefix count
    assert token_layout(nn.Conv2d(3, 4, 3), (32, 32)) is None
    assert token_layout(tiny_register_vit(4), (8, 16, 16)) is None
    assert token_layout(tiny_register_vit(4), (224, 224), grid=(8, 32)).prefix_tokens == 5
    assert token_layout(nn.Conv2d(3, 4, 3), (32, 32), grid=(2, 3)) == TokenLayout((2, 3))
    with pytest.raises(InputShapeError, match="two positive ints"):
        token_layout(nn.Conv2d(3, 4, 3), (32, 32), grid=(0, 3))


def test_registers_are_dropped_and_the_grid_is_row_major() -> None:
    prefix, grid = 5, (2, 3)
    tokens = torch.arange(1 * (prefix + 6) * 2, dtype=torch.float64).reshape(1, prefix + 6, 2)
    layout = TokenLayout(grid, prefix, "test")
    spatial = default_reshape(nn.Identity(), tokens, layout)
    assert spatial.shape == (1, 2, 2, 3)
    assert_close(spatial[0, 0].flatten(), tokens[0, prefix:, 0])  # patches only, in order
    # the same layer before the prefix tokens are added (patch embedding): h·w tokens
    assert default_reshape(nn.Identity(), tokens[:, prefix:], layout).shape == (1, 2, 2, 3)
    assert_close(tokens_to_grid(tokens, grid, prefix_tokens=prefix), spatial)
    with pytest.raises(InputShapeError, match="prefix tokens"):
        tokens_to_grid(tokens, grid, prefix_tokens=4)
    # a layout the layer does not fit falls back to the square guess (1 + 2·2 tokens) ...
    assert default_reshape(nn.Identity(), tokens[:, :5], layout).shape == (1, 2, 2, 2)
    # ... and when that fails too, the error names the layout and both fixes
    with pytest.raises(InputShapeError, match=r"2×3 patch grid \(test\).*grid=.*reshape_transform"):
        default_reshape(nn.Identity(), tokens[:, :7], layout)


# --------------------------------------------------------------------------- explanations


@pytest.mark.parametrize("registers", [4, 8])
@pytest.mark.parametrize("size", SIZES)
def test_register_vit_auto_and_named_layer(registers: int, size: tuple[int, int]) -> None:
    model = _register_vit(registers)
    x = _input(size)
    explainer = camlens.Explainer(model, "auto", "hirescam")
    auto = explainer.explain(x, targets=[0, 2])
    assert [layer_name(model, layer) for layer in explainer.layers] == ["blocks.1.norm1"]
    assert auto.layer_maps[0].shape == (2, *GRIDS[size])
    assert auto.maps.shape == (2, *size)
    assert auto.layer_maps[0].abs().sum() > 0
    named = camlens.explain(model, x, "hirescam", layers="blocks[-1].norm1", targets=[0, 2])
    assert_close(named.layer_maps[0], auto.layer_maps[0])
    # pytorch-grad-cam's spelling, no reshape_transform needed any more
    cam = camlens.GradCAM(model=model, target_layers=[model.blocks[-1].norm1])
    assert cam(input_tensor=x).shape == (2, *size)


@pytest.mark.parametrize("registers", [4, 8])
@pytest.mark.parametrize("size", SIZES)
def test_hirescam_sums_to_the_logit_minus_bias(registers: int, size: tuple[int, int]) -> None:
    """Mean-pooled patch tokens → one linear layer: the HiResCAM map at the last block,
    summed over the patch grid, is the logit minus the head's bias."""
    model = _register_vit(registers, global_pool="avg", final_norm=False)
    x = _input(size, seed=1)
    targets = [1, 2]
    bias = model.head.bias.detach()[targets]
    for layers in ("blocks[-1]", "auto"):
        result = camlens.explain(model, x, "hirescam", layers=layers, targets=targets)
        assert result.layer_maps[0].shape == (2, *GRIDS[size])
        assert_close(result.layer_maps[0].sum((1, 2)), result.scores - bias)
    with torch.no_grad():
        assert_close(result.scores, model(x)[[0, 1], targets])


@pytest.mark.parametrize("size", SIZES)
def test_huggingface_vit_with_registers(size: tuple[int, int]) -> None:
    torch.manual_seed(3)
    model = HuggingFaceViT().double().eval()
    x = _input(size, seed=2)
    explainer = camlens.Explainer(model, "auto", "hirescam")
    result = explainer.explain(x, targets=[1, 0])
    assert [layer_name(model, layer) for layer in explainer.layers] == ["dinov2.layernorm"]
    assert result.layer_maps[0].shape == (2, *GRIDS[size])
    assert result.maps.shape == (2, *size)
    # classifier([cls, mean(patches)]): the patch half is what the map adds up to
    with torch.no_grad():
        hidden = model(x).last_hidden_state
    weight, bias = model.classifier.weight.detach(), model.classifier.bias.detach()
    width = hidden.shape[-1]
    cls_share = torch.stack([hidden[i, 0] @ weight[t, :width] for i, t in enumerate([1, 0])])
    expected = result.scores - bias[[1, 0]] - cls_share
    assert_close(result.layer_maps[0].sum((1, 2)), expected)
    named = camlens.explain(model, x, "gradcam", layers="dinov2.encoder.layer[-1].norm1")
    assert named.layer_maps[0].shape == (2, *GRIDS[size])
    assert named.maps.shape == (2, *size)


@pytest.mark.parametrize("size", SIZES)
def test_vit_segmenter(size: tuple[int, int]) -> None:
    """tokens → grid → 1×1 conv → bilinear upsampling: the class score (sum of logits over
    its mask) is affine in the encoder's final tokens, so HiResCAM there adds up to the
    score minus the conv bias times the mask's area."""
    torch.manual_seed(5)
    model = ViTSegmenter(tiny_register_vit(8), num_classes=3).double().eval()
    x = _input(size, seed=3)
    result = camlens.explain_segmentation(model, x, "all", methods=["hirescam", "gradcam"])
    assert result.layer_names == ["encoder.norm"]
    raw = result.layer_maps["hirescam"][0]
    assert raw.shape == (2, 3, *GRIDS[size])
    assert result.maps["hirescam"].shape == (2, 3, *size)
    area = result.masks.flatten(2).sum(-1)
    bias = model.head.bias.detach().view(1, -1)
    assert_close(raw.sum((2, 3)), result.scores - bias * area)
    named = camlens.explain_segmentation(
        model, x, "present", methods="hirescam", layers="encoder.blocks[-1].norm1"
    )
    assert named.layer_maps["hirescam"][0].shape[2:] == GRIDS[size]
    assert named.maps["hirescam"].shape[2:] == size


# --------------------------------------------------------------------------- undeclared layouts


class Undeclared(nn.Module):
    """Five prefix tokens and 16×24 patches, and no attribute that says so."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 14, stride=14)
        self.extra = nn.Parameter(torch.randn(1, 5, 8))
        self.norm = nn.LayerNorm(8)
        self.mix = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        tokens = self.norm(torch.cat([self.extra.expand(x.shape[0], -1, -1), tokens], 1))
        return self.out(tokens[:, 0] + self.mix(tokens).mean(1))


def test_undeclared_layout_names_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = Undeclared().double().eval()
    x = _input((224, 336))
    with pytest.raises(InputShapeError, match=r"grid=\(h, w\).*reshape_transform"):
        camlens.explain(model, x, "gradcam", layers="norm")
    with caplog.at_level(logging.WARNING, logger="camlens.layers"):
        explainer = camlens.Explainer(model, "auto", "gradcam")
        explainer.explain(x)  # the patch conv: the token layers cannot be laid out
    assert [layer_name(model, layer) for layer in explainer.layers] == ["proj"]
    assert re.search(r"could not infer \(mix, \.\.\.\).*grid=\(h, w\)", caplog.text)
    result = camlens.explain(model, x, "hirescam", layers="auto", grid=(16, 24))
    assert result.layer_names == ["mix"]  # the last token layer, now that it has a grid
    assert result.layer_maps[0].shape == (2, 16, 24)
    explicit = camlens.explain(
        model, x, "hirescam", layers="mix", reshape_transform=lambda t: tokens_to_grid(t, (16, 24))
    )
    assert_close(result.layer_maps[0], explicit.layer_maps[0])
    with pytest.raises(InputShapeError, match="needs at least"):
        camlens.explain(model, x, "gradcam", layers="norm", grid=(20, 24))


class _SwinConfig:
    model_type = "swin"
    patch_size = 4
    depths = (1, 1)
    window_size = 7


class _PatchMerge(nn.Module):
    """Tokens (B, h·w, C) on a (h, w) grid → (B, ⌈h/2⌉·⌈w/2⌉, C): 2 × 2 means, as Swin's
    patch merging halves the grid (padding odd sides)."""

    def __init__(self) -> None:
        super().__init__()
        self.grid: tuple[int, int] = (0, 0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        height, width = self.grid
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
        merged = nn.functional.avg_pool2d(grid, 2, ceil_mode=True)
        return merged.flatten(2).transpose(1, 2)


class _HuggingFaceSwin(nn.Module):
    """A two-stage Swin-like stand-in with Hugging Face's config: no class token, tokens
    (B, L, C) whose grid halves at the second stage; a mean-pool + linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.config = _SwinConfig()
        self.embed = nn.Conv2d(3, 8, kernel_size=4, stride=4)
        self.stage0 = nn.Linear(8, 8)
        self.merge = _PatchMerge()
        self.stage1 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.embed(x)
        self.merge.grid = tuple(grid.shape[-2:])
        tokens = torch.relu(self.stage0(grid.flatten(2).transpose(1, 2)))
        tokens = torch.relu(self.stage1(self.merge(tokens)))
        return self.head(tokens.mean(1))


@pytest.mark.parametrize("size", [(32, 32), (32, 56), (36, 44)])
def test_hugging_face_swin_stages_are_read_from_the_token_count(size: tuple[int, int]) -> None:
    """Swin has no class token and each stage halves the grid: a layer's token count tells
    its stage, on square and non-square inputs (odd stage grids are rounded up, as patch
    merging pads). HiResCAM at the last stage, before a mean-pool + linear head, sums to
    logit − bias."""
    torch.manual_seed(0)
    model = _HuggingFaceSwin().double().eval()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    layout = token_layout(model, size)
    assert layout is not None and layout.hierarchical and layout.prefix_tokens == 0
    first = camlens.explain(model, x, "hirescam", "stage0", targets=[1, 2])
    second = camlens.explain(model, x, "hirescam", "stage1", targets=[1, 2])
    height, width = -(-size[0] // 4), -(-size[1] // 4)
    assert first.layer_maps[0].shape[-2:] == (height, width)
    assert second.layer_maps[0].shape[-2:] == (-(-height // 2), -(-width // 2))
    assert second.maps.shape[-2:] == size
    logits = model(x)
    expected = logits[[0, 1], [1, 2]] - model.head.bias[[1, 2]]
    torch.testing.assert_close(second.layer_maps[0].flatten(1).sum(1), expected)
