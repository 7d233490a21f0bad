"""Segmentation models with the attribute layouts of smp's DeepLabV3+ and torchvision's
``deeplabv3_*`` / ``fcn_*`` (dict output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camlens.models.resnet import BasicBlock, Bottleneck, ResNetEncoder, init_weights

__all__ = [
    "ASPP",
    "DeepLabV3Plus",
    "DeepLabV3PlusDecoder",
    "DictOutputSegmenter",
    "SeparableConv2d",
    "deeplabv3plus_resnet50",
    "tiny_deeplabv3plus",
]


class SeparableConv2d(nn.Sequential):
    """Depthwise conv followed by a 1x1 pointwise conv (smp's ``SeparableConv2d``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        pointwise = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias)
        super().__init__(depthwise, pointwise)


class ASPPSeparableConv(nn.Sequential):
    """One atrous branch of the ASPP: separable 3x3 conv at ``dilation``, BN, ReLU (smp)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            SeparableConv2d(
                in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """Image-pooling branch of the ASPP: global average, 1x1 conv, BN, ReLU, upsampled back.

    Like torchvision/smp this has a BatchNorm on a 1x1 map, so training needs batch size > 1.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with smp's layout: ``convs`` (5 branches) + ``project``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        atrous_rates: Sequence[int] = (12, 24, 36),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(atrous_rates) != 3:
            raise ValueError(f"atrous_rates must have 3 entries, got {list(atrous_rates)}")
        branches: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            )
        ]
        branches += [ASPPSeparableConv(in_channels, out_channels, r) for r in atrous_rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """smp's DeepLabV3+ decoder: ``aspp``, ``up``, ``block1`` (low-level 1x1) and ``block2``.

    ``forward`` takes the encoder's feature list and fuses ``features[-1]`` (ASPP, upsampled)
    with ``features[-4]`` (the stride-4 ``layer1`` output).
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        out_channels: int = 256,
        atrous_rates: Sequence[int] = (12, 24, 36),
        output_stride: int = 16,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.out_channels = out_channels
        self.output_stride = output_stride
        self.aspp = nn.Sequential(
            ASPP(encoder_channels[-1], out_channels, atrous_rates),
            SeparableConv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )
        self.up = nn.UpsamplingBilinear2d(scale_factor=output_stride // 4)
        highres_channels = 48
        self.block1 = nn.Sequential(
            nn.Conv2d(encoder_channels[-4], highres_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(highres_channels),
            nn.ReLU(),
        )
        self.block2 = nn.Sequential(
            SeparableConv2d(highres_channels + out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        aspp = self.up(self.aspp(features[-1]))
        highres = self.block1(features[-4])
        return self.block2(torch.cat([aspp, highres], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ with segmentation_models_pytorch's layout: ``encoder``, ``decoder``,
    ``segmentation_head`` (and ``classification_head = None``), so smp target paths resolve.

    Returns logits ``[B, num_classes, H, W]`` at the input size for H, W multiples of 16.
    """

    def __init__(
        self,
        encoder: ResNetEncoder,
        num_classes: int,
        decoder_channels: int = 256,
        atrous_rates: Sequence[int] = (12, 24, 36),
        upsampling: int = 4,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = DeepLabV3PlusDecoder(
            encoder.out_channels,
            out_channels=decoder_channels,
            atrous_rates=atrous_rates,
            output_stride=encoder.output_stride,
        )
        self.segmentation_head = nn.Sequential(
            nn.Conv2d(decoder_channels, num_classes, kernel_size=3, padding=1),
            nn.UpsamplingBilinear2d(scale_factor=upsampling) if upsampling > 1 else nn.Identity(),
            nn.Identity(),  # smp's activation slot (None -> Identity)
        )
        self.classification_head: nn.Module | None = None
        init_weights(self.decoder)
        init_weights(self.segmentation_head)

    def forward(self, x: Tensor) -> Tensor:
        features = self.encoder(x)
        return self.segmentation_head(self.decoder(features))


def deeplabv3plus_resnet50(num_classes: int = 13) -> DeepLabV3Plus:
    """Full-size smp ``DeepLabV3Plus("resnet50")`` (output stride 16, 256 decoder channels).

    Used by the speed benchmarks at 512x512 and 1024x1024.
    """
    encoder = ResNetEncoder(Bottleneck, [3, 4, 6, 3], width=64, output_stride=16)
    return DeepLabV3Plus(encoder, num_classes=num_classes, decoder_channels=256)


def tiny_deeplabv3plus(
    num_classes: int = 4, width: int = 8, decoder_channels: int = 16, in_channels: int = 3
) -> DeepLabV3Plus:
    """A tiny DeepLabV3+ (BasicBlock [1, 1, 1, 1] encoder) with the smp layout.

    A 64x64 forward takes a few ms on CPU; used by unit tests and the CPU-trained demo.
    """
    encoder = ResNetEncoder(
        BasicBlock, [1, 1, 1, 1], width=width, in_channels=in_channels, output_stride=16
    )
    return DeepLabV3Plus(encoder, num_classes=num_classes, decoder_channels=decoder_channels)


class FCNHead(nn.Sequential):
    """torchvision's ``FCNHead``: 3x3 conv, BN, ReLU, dropout, 1x1 classifier conv."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = max(in_channels // 4, 1)
        super().__init__(
            nn.Conv2d(in_channels, inter, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, kernel_size=1),
        )


class DictOutputSegmenter(nn.Module):
    """torchvision-segmentation-style model (``deeplabv3_*``, ``fcn_*``): ``backbone`` and
    ``classifier``, and ``forward`` returns ``{"out": logits}`` at the input size.

    The backbone is a tiny output-stride-8 ResNet trunk, so ``backbone.layer4`` resolves as in
    torchvision; the dict output is what CAM libraries must unwrap.
    """

    def __init__(self, num_classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.backbone = ResNetEncoder(BasicBlock, [1, 1, 1, 1], width=width, output_stride=8)
        self.classifier = FCNHead(self.backbone.out_channels[-1], num_classes)
        self.aux_classifier: nn.Module | None = None
        init_weights(self.classifier)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)[-1]
        logits = self.classifier(features)
        return {"out": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}
