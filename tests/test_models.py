"""Tests for the model zoo in ``camlens.models`` (layouts mimicking torchvision/timm/smp)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from camlens.models import (
    BasicBlock,
    Bottleneck,
    DeepLabV3Plus,
    DictOutputSegmenter,
    HuggingFaceStyle,
    ImageClassifierOutput,
    ResNetEncoder,
    SwinStyle,
    Tiny3DCNN,
    VisionTransformer,
    deeplabv3plus_resnet50,
    resnet18,
    resnet50,
    tiny_deeplabv3plus,
    tiny_resnet,
    tiny_vit,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def big_resnet50() -> nn.Module:
    torch.manual_seed(0)
    return resnet50().eval()


@pytest.fixture(scope="module")
def big_deeplab() -> DeepLabV3Plus:
    torch.manual_seed(0)
    return deeplabv3plus_resnet50().eval()


# --------------------------------------------------------------------------- ResNet


def test_resnet50_matches_torchvision_layout(big_resnet50: nn.Module) -> None:
    assert n_params(big_resnet50) == 25_557_032
    sd = big_resnet50.state_dict()
    # 53 convs + 53 BNs (weight, bias, running_mean, running_var, num_batches_tracked) + fc
    assert len(sd) == 320
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.weight": (256,),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer2.0.downsample.0.weight": (512, 256, 1, 1),
        "layer3.5.bn3.num_batches_tracked": (),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "fc.weight": (1000, 2048),
        "fc.bias": (1000,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert [len(getattr(big_resnet50, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    # torchvision's v1.5: the stride sits on the 3x3 conv, not the first 1x1.
    assert big_resnet50.layer2[0].conv1.stride == (1, 1)
    assert big_resnet50.layer2[0].conv2.stride == (2, 2)
    assert isinstance(big_resnet50.avgpool, nn.AdaptiveAvgPool2d)


def test_resnet18_param_count_and_blocks() -> None:
    model = resnet18()
    assert n_params(model) == 11_689_512
    assert isinstance(model.layer4[-1], BasicBlock)
    assert model.layer1[0].downsample is None
    assert isinstance(model.layer2[0].downsample, nn.Sequential)
    assert tuple(model.fc.weight.shape) == (1000, 512)


def test_resnet_shared_inplace_relu() -> None:
    model = tiny_resnet()
    block = model.layer1[0]
    assert isinstance(block.relu, nn.ReLU) and block.relu.inplace
    assert not hasattr(block, "relu2")  # one module, called twice, as in torchvision


def test_tiny_resnet_forward_and_grad() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=7, width=8, in_channels=1).eval()
    assert n_params(model) < 100_000
    x = torch.randn(2, 1, 64, 64)
    acts: list[Tensor] = []
    model.layer4[-1].register_forward_hook(lambda _m, _i, out: acts.append(out))
    out = model(x)
    assert out.shape == (2, 7)
    assert acts[0].shape == (2, 64, 2, 2)
    out[:, 3].sum().backward()
    assert model.layer4[-1].conv2.weight.grad is not None


def test_resnet_encoder_state_dict_matches_classifier_trunk(big_resnet50: nn.Module) -> None:
    encoder = ResNetEncoder(Bottleneck, [3, 4, 6, 3], output_stride=16)
    enc_sd = encoder.state_dict()
    cls_sd = {k: v for k, v in big_resnet50.state_dict().items() if not k.startswith("fc.")}
    assert enc_sd.keys() == cls_sd.keys()
    assert all(enc_sd[k].shape == cls_sd[k].shape for k in enc_sd)
    assert n_params(encoder) == 25_557_032 - 2048 * 1000 - 1000
    assert not hasattr(encoder, "fc") and not hasattr(encoder, "avgpool")
    assert encoder.out_channels == (3, 64, 256, 512, 1024, 2048)


@pytest.mark.parametrize(
    ("output_stride", "strides", "dilations"),
    [(16, (1, 2, 4, 8, 16, 16), (1, 2)), (8, (1, 2, 4, 8, 8, 8), (2, 4)), (32, None, (1, 1))],
)
def test_resnet_encoder_features(
    output_stride: int, strides: tuple[int, ...] | None, dilations: tuple[int, int]
) -> None:
    encoder = ResNetEncoder(BasicBlock, [1, 1, 1, 1], width=8, output_stride=output_stride)
    features = encoder(torch.randn(1, 3, 64, 64))
    assert len(features) == 6
    assert tuple(f.shape[1] for f in features) == encoder.out_channels == (3, 8, 8, 16, 32, 64)
    strides = strides or (1, 2, 4, 8, 16, 32)
    assert tuple(64 // f.shape[-1] for f in features) == strides
    assert encoder.layer3[0].conv1.dilation == (dilations[0], dilations[0])
    assert encoder.layer4[0].conv2.dilation == (dilations[1], dilations[1])


def test_resnet_encoder_rejects_bad_output_stride() -> None:
    with pytest.raises(ValueError, match="output_stride"):
        ResNetEncoder(BasicBlock, [1, 1, 1, 1], width=8, output_stride=4)


# --------------------------------------------------------------------------- DeepLab


def test_tiny_deeplab_layout_and_shape() -> None:
    model = tiny_deeplabv3plus(num_classes=4).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 4, 64, 64)
    assert isinstance(model.encoder.layer4, nn.Sequential)
    assert model.encoder.layer4[0].conv1.stride == (1, 1)
    decoder = model.decoder
    assert isinstance(decoder.aspp, nn.Sequential) and len(decoder.aspp) == 4
    assert len(decoder.aspp[0].convs) == 5
    assert isinstance(decoder.aspp[0].project[-1], nn.Dropout)
    assert isinstance(decoder.up, nn.UpsamplingBilinear2d) and decoder.up.scale_factor == 4
    assert decoder.block1[0].out_channels == 48
    head = model.segmentation_head
    assert isinstance(head, nn.Sequential) and len(head) == 3
    assert isinstance(head[0], nn.Conv2d) and head[0].out_channels == 4
    assert isinstance(head[1], nn.UpsamplingBilinear2d) and isinstance(head[2], nn.Identity)
    assert model.classification_head is None


def test_tiny_deeplab_decoder_takes_feature_list() -> None:
    model = tiny_deeplabv3plus(decoder_channels=16, in_channels=1).eval()
    features = model.encoder(torch.randn(1, 1, 32, 48))
    decoded = model.decoder(features)
    assert decoded.shape == (1, 16, 8, 12)
    assert model(torch.randn(1, 1, 32, 48)).shape == (1, 4, 32, 48)


def test_tiny_deeplab_trains_with_batch() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).train()
    logits = model(torch.randn(2, 3, 64, 64))
    loss = nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 64, 64)))
    loss.backward()
    assert model.encoder.conv1.weight.grad is not None


def test_big_deeplab_shape_and_layout(big_deeplab: DeepLabV3Plus) -> None:
    assert n_params(big_deeplab.encoder) == 23_508_032
    assert big_deeplab.encoder.out_channels[-1] == 2048
    assert big_deeplab.decoder.block2[0][1].out_channels == 256
    with torch.no_grad():
        out = big_deeplab(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 13, 64, 64)


def test_dict_output_segmenter() -> None:
    model = DictOutputSegmenter(num_classes=5, width=8).eval()
    acts: list[Tensor] = []
    model.backbone.layer4.register_forward_hook(lambda _m, _i, out: acts.append(out))
    out = model(torch.randn(2, 3, 48, 64))
    assert isinstance(out, dict) and set(out) == {"out"}
    assert out["out"].shape == (2, 5, 48, 64)
    assert acts[0].shape == (2, 64, 6, 8)  # output stride 8, like torchvision's deeplabv3
    assert isinstance(model.classifier, nn.Sequential)


# --------------------------------------------------------------------------- transformers


def test_vit_layout_and_tokens() -> None:
    model = tiny_vit(num_classes=6).eval()
    assert isinstance(model, VisionTransformer)
    assert isinstance(model.patch_embed.proj, nn.Conv2d)
    assert model.cls_token.shape == (1, 1, 32)
    assert model.pos_embed.shape == (1, 17, 32)
    block = model.blocks[-1]
    for path in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.act", "mlp.fc2"):
        assert isinstance(block.get_submodule(path), nn.Module), path
    acts: list[Tensor] = []
    block.norm1.register_forward_hook(lambda _m, _i, out: acts.append(out))
    model.blocks[0].register_forward_hook(lambda _m, _i, out: acts.append(out))
    out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 6)
    assert [a.shape for a in acts] == [(3, 17, 32), (3, 17, 32)]
    assert isinstance(model.head, nn.Linear) and model.num_prefix_tokens == 1


def test_swin_channels_last_features() -> None:
    model = SwinStyle(num_classes=5).eval()
    acts: list[Tensor] = []
    model.layers[-1].blocks[-1].norm2.register_forward_hook(lambda _m, _i, o: acts.append(o))
    model.norm.register_forward_hook(lambda _m, _i, o: acts.append(o))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 5)
    assert acts[0].shape == (2, 4, 4, 32)  # [B, h, w, C]
    assert acts[1].shape == (2, 4, 4, 32)
    assert isinstance(model.layers[0].blocks[0].norm1, nn.LayerNorm)
    assert isinstance(model.head.fc, nn.Linear)


def test_huggingface_style_output() -> None:
    inner = tiny_resnet(num_classes=4).eval()
    model = HuggingFaceStyle(inner).eval()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert isinstance(out, ImageClassifierOutput)
    assert out.logits.shape == (2, 4)
    torch.testing.assert_close(out.logits, inner(x))
    assert model.model.layer4 is inner.layer4


# --------------------------------------------------------------------------- 3D


def test_tiny_3d_cnn() -> None:
    model = Tiny3DCNN(in_channels=2, num_classes=3, width=4).eval()
    acts: list[Tensor] = []
    model.layer4.register_forward_hook(lambda _m, _i, out: acts.append(out))
    out = model(torch.randn(2, 2, 16, 24, 32))
    assert out.shape == (2, 3)
    assert acts[0].shape == (2, 32, 2, 3, 4)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool3d)
    assert isinstance(model.stem[0], nn.Conv3d)


# --------------------------------------------------------------------------- determinism

FACTORIES: list[tuple[Callable[[], nn.Module], tuple[int, ...]]] = [
    (tiny_resnet, (2, 3, 32, 32)),
    (tiny_deeplabv3plus, (2, 3, 64, 64)),
    (DictOutputSegmenter, (1, 3, 32, 32)),
    (tiny_vit, (2, 3, 32, 32)),
    (SwinStyle, (2, 3, 32, 32)),
    (Tiny3DCNN, (1, 1, 16, 16, 16)),
]


@pytest.mark.parametrize(("factory", "shape"), FACTORIES, ids=[f.__name__ for f, _ in FACTORIES])
def test_deterministic_under_seed(factory: Callable[[], nn.Module], shape: tuple[int, ...]) -> None:
    def build_and_run() -> tuple[dict[str, Tensor], Tensor]:
        torch.manual_seed(123)
        model = factory().eval()
        x = torch.randn(shape)
        with torch.no_grad():
            out = model(x)
        return model.state_dict(), out["out"] if isinstance(out, dict) else out

    sd1, out1 = build_and_run()
    sd2, out2 = build_and_run()
    assert sd1.keys() == sd2.keys()
    for key in sd1:
        torch.testing.assert_close(sd1[key], sd2[key], rtol=0, atol=0)
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)
    torch.manual_seed(124)
    other = factory().state_dict()
    assert any(not torch.equal(sd1[k], other[k]) for k in sd1 if sd1[k].is_floating_point())
