"""Padding images to a dense model's side multiple and cropping the results back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlens
from camlens.jobs.padding import (
    crop,
    grid_padding,
    model_multiple,
    pad_batch,
    padding_for,
    parse_pad,
)
from camlens.models import tiny_deeplabv3plus, tiny_vit


@pytest.mark.parametrize(
    ("height", "width", "multiple", "padded"),
    [
        (300, 200, 16, (304, 208)),
        (300, 200, 32, (320, 224)),
        (64, 48, 16, (64, 48)),  # already multiples: nothing to pad
        (1, 1, 16, (16, 16)),
        (17, 31, 1, (17, 31)),
        (33, 65, 8, (40, 72)),
    ],
)
def test_padding_amounts(height: int, width: int, multiple: int, padded: tuple) -> None:
    top, bottom, left, right = padding_for(height, width, multiple)
    assert top == left == 0  # bottom/right only: pixel coordinates are kept
    assert (height + bottom, width + right) == padded
    assert 0 <= bottom < multiple and 0 <= right < multiple


@pytest.mark.parametrize("bad", [(0, 10, 16), (10, 10, 0), (10, -1, 16), (10.5, 10, 16)])
def test_padding_for_rejects_non_positive(bad: tuple) -> None:
    with pytest.raises(ValueError, match="whole numbers"):
        padding_for(*bad)


@pytest.mark.parametrize("mode", ["auto", "reflect", "replicate", "constant"])
@pytest.mark.parametrize("padding", [(0, 4, 0, 12), (3, 1, 2, 5), (0, 0, 0, 0)])
def test_crop_undoes_pad_exactly(mode: str, padding: tuple) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 20, 13)
    padded = pad_batch(x, padding, mode)  # type: ignore[arg-type]
    top, bottom, left, right = padding
    assert padded.shape == (2, 3, 20 + top + bottom, 13 + left + right)
    assert torch.equal(crop(padded, padding), x)


def test_modes_fill_as_documented() -> None:
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    reflect = pad_batch(x, (0, 2, 0, 1))
    assert reflect[0, 0, 3].tolist() == [4.0, 5.0, 6.0, 7.0, 6.0]  # mirrors row 1, not row 2
    assert reflect[0, 0, 4, :4].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert reflect[0, 0, 0, 4] == 2.0  # column 2 mirrored past column 3
    # padding as large as the side: reflect is impossible, auto replicates the edge
    tall = pad_batch(x, (0, 5, 0, 0))
    assert torch.equal(tall[0, 0, 3:], x[0, 0, 2].expand(5, 4))
    constant = pad_batch(x, (1, 0, 0, 0), "constant", value=-1.0)
    assert constant[0, 0, 0].tolist() == [-1.0] * 4
    labels = torch.ones(2, 5, 5, dtype=torch.int64)  # (B, H, W) label maps
    assert int(pad_batch(labels, (0, 3, 0, 3), "constant", value=255).max()) == 255
    with pytest.raises(ValueError, match="mode"):
        pad_batch(x, (0, 1, 0, 1), "circular")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="four whole numbers"):
        pad_batch(x, (0, -1, 0, 1))
    with pytest.raises(ValueError, match="leaves nothing"):
        crop(x, (0, 3, 0, 0))


class _SmpLike(nn.Module):
    """segmentation_models_pytorch's layout: ``encoder.output_stride``."""

    def __init__(self, stride: int, divisible: bool = True) -> None:
        super().__init__()
        self.encoder = nn.Identity()
        self.encoder.output_stride = stride  # type: ignore[assignment]
        self.requires_divisible_input_shape = divisible


class _TimmLike(nn.Module):
    def __init__(self, patch: object) -> None:
        super().__init__()
        self.patch_embed = nn.Identity()
        self.patch_embed.patch_size = patch  # type: ignore[assignment]


class _TorchvisionLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch_size = 14


class _HuggingFaceLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = type("ViTConfig", (), {"patch_size": 16})()


def test_model_multiple_reads_declared_attributes() -> None:
    assert model_multiple(tiny_deeplabv3plus()) == 16  # encoder.output_stride
    assert model_multiple(tiny_vit()) == 8  # patch_embed.patch_size == (8, 8)
    assert model_multiple(_SmpLike(32)) == 32  # smp U-Net
    assert model_multiple(_SmpLike(32, divisible=False)) == 1
    assert model_multiple(_TimmLike(16)) == 16
    assert model_multiple(_TimmLike((4, 6))) == 12  # both sides served by one multiple
    assert model_multiple(_TorchvisionLike()) == 14
    assert model_multiple(_HuggingFaceLike()) == 16
    assert model_multiple(nn.Conv2d(3, 3, 1)) is None
    assert model_multiple(_TimmLike("16")) is None  # not a declared size


def test_parse_pad() -> None:
    assert parse_pad("auto") == "auto"
    assert parse_pad(" AUTO ") == "auto"
    assert parse_pad("none") is None
    assert parse_pad("32") == 32
    assert parse_pad("1") == 1
    for bad in ["0", "-16", "1.5", "", "sixteen", "16px"]:
        with pytest.raises(ValueError, match="'auto', 'none' or a whole number"):
            parse_pad(bad)


def test_grid_padding_keeps_every_cell_touching_the_image() -> None:
    # 50 × 36 padded to 64 × 48, a stride-4 layer: 16 × 12 cells; the image spans 12.5 × 9
    assert grid_padding((0, 14, 0, 12), (64, 48), (16, 12)) == (0, 3, 0, 3)
    assert grid_padding((0, 0, 0, 0), (64, 48), (4, 3)) == (0, 0, 0, 0)


def test_segmentation_on_padded_input_crops_back() -> None:
    """tiny_deeplabv3plus has output stride 16: 50 × 36 fails, padded to 64 × 48 it runs."""
    torch.manual_seed(0)
    model = tiny_deeplabv3plus().eval()
    x = torch.rand(2, 3, 50, 36)
    with pytest.raises(RuntimeError):
        camlens.explain_segmentation(model, x, classes="all", methods="gradcam")
    multiple = model_multiple(model)
    assert multiple == 16
    padding = padding_for(50, 36, multiple)
    padded = pad_batch(x, padding)
    result = camlens.explain_segmentation(
        model, padded, classes="all", methods=["gradcam", "hirescam"]
    )
    for method in ("gradcam", "hirescam"):
        maps = crop(result.maps[method], padding)
        assert maps.shape == (2, 4, 50, 36)
        assert torch.isfinite(maps).all()
        raw = result.layer_maps[method][0]
        kept = crop(raw, grid_padding(padding, padded.shape[-2:], raw.shape[-2:]))
        assert kept.shape[-2:] == (13, 9)  # ceil(50 / 4) × 36 / 4 cells
        assert torch.isfinite(kept).all()
    assert torch.equal(crop(padded, padding), x)
    # a box in image coordinates keeps classes predicted on the padding out of the targets
    inside = camlens.explain_segmentation(
        model, padded, classes="all", methods="gradcam", region=(0, 50, 0, 36)
    )
    assert not inside.masks[..., 50:, :].any() and not inside.masks[..., 36:].any()
