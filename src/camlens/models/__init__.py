"""A small model zoo whose attribute layouts mimic torchvision, timm, smp and transformers.

Used by camlens' tests, benchmarks and demo, so that target-layer paths such as
``model.layer4[-1]``, ``model.encoder.layer4`` or ``model.blocks[-1].norm1`` mean the same thing
here as in users' real models, without depending on those libraries.
"""

from camlens.models.deeplab import (
    DeepLabV3Plus,
    DeepLabV3PlusDecoder,
    DictOutputSegmenter,
    deeplabv3plus_resnet50,
    tiny_deeplabv3plus,
)
from camlens.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNetEncoder,
    resnet18,
    resnet50,
    tiny_resnet,
)
from camlens.models.vgg import VGG, tiny_vgg11, vgg11
from camlens.models.vit import (
    HuggingFaceStyle,
    HuggingFaceViT,
    ImageClassifierOutput,
    SwinStyle,
    VisionTransformer,
    ViTConfig,
    ViTSegmenter,
    tiny_register_vit,
    tiny_vit,
)
from camlens.models.vit_attention import TimmAttention, tiny_attention_vit, with_timm_attention
from camlens.models.volume import Tiny3DCNN

__all__ = [
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "DeepLabV3Plus",
    "DeepLabV3PlusDecoder",
    "DictOutputSegmenter",
    "HuggingFaceStyle",
    "HuggingFaceViT",
    "ImageClassifierOutput",
    "ResNet",
    "ResNetEncoder",
    "SwinStyle",
    "TimmAttention",
    "Tiny3DCNN",
    "ViTConfig",
    "ViTSegmenter",
    "VisionTransformer",
    "deeplabv3plus_resnet50",
    "resnet18",
    "resnet50",
    "tiny_attention_vit",
    "tiny_deeplabv3plus",
    "tiny_register_vit",
    "tiny_resnet",
    "tiny_vgg11",
    "tiny_vit",
    "vgg11",
    "with_timm_attention",
]
