"""Transformer-style classifiers with timm's attribute layouts, and a HuggingFace-style wrapper.

* :class:`VisionTransformer` mimics ``timm.models.vision_transformer`` (token outputs
  ``[B, 1 + N, C]`` that need a reshape transform for CAMs).
* :class:`SwinStyle` mimics timm's newer Swin (channels-last ``[B, H, W, C]`` features).
* :class:`HuggingFaceStyle` mimics ``transformers`` (output object with ``.logits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from camlens.models.resnet import init_weights

__all__ = [
    "Attention",
    "Block",
    "HuggingFaceStyle",
    "ImageClassifierOutput",
    "Mlp",
    "PatchEmbed",
    "SwinStyle",
    "VisionTransformer",
    "tiny_vit",
]


def _init_transformer(module: nn.Module) -> None:
    """timm-like init: truncated-normal (std 0.02) Linear weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class PatchEmbed(nn.Module):
    """timm's ``PatchEmbed``: a strided ``proj`` Conv2d, then flatten to tokens or NHWC.

    ``flatten=True`` gives ``[B, N, C]`` (ViT); ``flatten=False`` gives ``[B, H, W, C]`` (Swin).
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 8,
        in_channels: int = 3,
        embed_dim: int = 32,
        flatten: bool = True,
        norm: bool = False,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm: nn.Module = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)  # [B, C, h, w]
        x = x.flatten(2).transpose(1, 2) if self.flatten else x.permute(0, 2, 3, 1)
        return self.norm(x)


class Attention(nn.Module):
    """timm's multi-head self-attention: a fused ``qkv`` Linear and an output ``proj``."""

    def __init__(self, dim: int, num_heads: int = 4) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """timm's ``Mlp``: ``fc1``, ``act`` (GELU), ``fc2``; works on any leading shape."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block, timm's layout: ``norm1, attn, norm2, mlp``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """A small ViT with timm's layout: ``patch_embed.proj, cls_token, pos_embed, blocks,
    norm, head``; blocks output tokens ``[B, 1 + N, C]``, logits come from the cls token.

    Also exposes timm's ``num_prefix_tokens``, ``forward_features`` and ``forward_head``.
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 8,
        in_channels: int = 3,
        embed_dim: int = 32,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.num_prefix_tokens = 1
        self.patch_embed = PatchEmbed(img_size, patch_size, in_channels, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        _init_transformer(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def tiny_vit(num_classes: int = 10) -> VisionTransformer:
    """A 32x32, patch-8, 2-block ViT (timm layout) for fast unit tests."""
    return VisionTransformer(num_classes=num_classes)


class SwinBlock(nn.Module):
    """Channels-last block in the spirit of timm's ``SwinTransformerBlock``.

    ``norm1`` (LayerNorm over C), a depthwise-conv ``token_mixer`` standing in for window
    attention, ``norm2`` and ``mlp``; input and output are ``[B, H, W, C]``.
    """

    def __init__(self, dim: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        mixed = self.token_mixer(self.norm1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + mixed
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """timm's ``PatchMerging``: 2x2 neighbours concatenated (4C), ``norm``, ``reduction`` to 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"PatchMerging needs an even grid, got {h}x{w}")
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """timm's ``SwinTransformerStage``: ``downsample`` (Identity/PatchMerging), ``blocks``."""

    def __init__(self, dim: int, out_dim: int, depth: int, downsample: bool) -> None:
        super().__init__()
        self.downsample: nn.Module = PatchMerging(dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[SwinBlock(out_dim) for _ in range(depth)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class ClassifierHead(nn.Module):
    """timm's NHWC ``ClassifierHead``: global mean over H and W, then ``fc``."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(1, 2)))


class SwinStyle(nn.Module):
    """A tiny hierarchical model whose features are channels-last ``[B, H, W, C]``, like timm's
    newer Swin: ``patch_embed, layers[i].blocks[j].norm1/norm2, norm, head`` (``head.fc``).

    CAM libraries must detect or be told to permute these activations to NCHW.
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 4,
        embed_dim: int = 16,
        depths: tuple[int, ...] = (1, 1),
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.patch_embed = PatchEmbed(
            img_size, patch_size, in_channels, embed_dim, flatten=False, norm=True
        )
        stages: list[nn.Module] = []
        dim = embed_dim
        for i, depth in enumerate(depths):
            out_dim = dim * 2 if i > 0 else dim
            stages.append(SwinStage(dim, out_dim, depth, downsample=i > 0))
            dim = out_dim
        self.layers = nn.Sequential(*stages)
        self.num_features = dim
        self.norm = nn.LayerNorm(dim)
        self.head = ClassifierHead(dim, num_classes)
        _init_transformer(self)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.norm(self.layers(self.patch_embed(x)))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@dataclass
class ImageClassifierOutput:
    """Minimal stand-in for ``transformers.modeling_outputs.ImageClassifierOutput``."""

    logits: Tensor


class HuggingFaceStyle(nn.Module):
    """Wraps a classifier so ``forward`` returns an object with ``.logits``, like transformers.

    The wrapped classifier is ``self.model``, so its layers are ``model.model.<path>``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> ImageClassifierOutput:
        return ImageClassifierOutput(logits=self.model(pixel_values))
