"""Transformer-style classifiers with timm's attribute layouts, and a HuggingFace-style wrapper.

* :class:`VisionTransformer` mimics ``timm.models.vision_transformer``: tokens ``[B, P + N,
  C]`` (class token, registers, patches); :func:`tiny_register_vit` is a pathology model's.
* :class:`HuggingFaceViT` mimics ``transformers``' DINOv2-with-registers classifier.
* :class:`ViTSegmenter`: a ViT encoder, patch tokens as a grid, a 1×1 conv, upsampled.
* :class:`SwinStyle` mimics timm's newer Swin (channels-last ``[B, H, W, C]`` features).
* :class:`HuggingFaceStyle` mimics ``transformers`` (output object with ``.logits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camlens.models.resnet import init_weights

__all__ = [
    "Attention",
    "Block",
    "HuggingFaceStyle",
    "HuggingFaceViT",
    "ImageClassifierOutput",
    "Mlp",
    "PatchEmbed",
    "SwinStyle",
    "ViTConfig",
    "ViTSegmenter",
    "VisionTransformer",
    "tiny_register_vit",
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
    ``strict_img_size=False`` (timm's flag, set by ``dynamic_img_size`` models) marks that
    inputs of other sizes are embedded to their own ``(H // p, W // p)`` grid.
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 8,
        in_channels: int = 3,
        embed_dim: int = 32,
        flatten: bool = True,
        norm: bool = False,
        strict_img_size: bool = True,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.strict_img_size = strict_img_size
        self.dynamic_img_pad = False
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


def _resample(pos: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Patch position embeddings ``[1, h·w, C]`` for ``grid`` resampled (bilinear) to ``size``."""
    if tuple(grid) == tuple(size):
        return pos
    planes = pos.reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
    planes = F.interpolate(planes, size=size, mode="bilinear", align_corners=False)
    return planes.flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """A small ViT with timm's layout: ``patch_embed.proj, cls_token, reg_token, pos_embed,
    blocks, norm, fc_norm, head``; blocks output ``[B, 1 + R + N, C]`` (class, registers,
    patches); timm's ``num_prefix_tokens``, ``num_reg_tokens``, ``dynamic_img_size``,
    ``forward_features`` and ``forward_head``. ``global_pool="token"`` reads the class token,
    ``"avg"`` mean-pools the patch tokens. With registers or ``dynamic_img_size``,
    ``pos_embed`` covers the patches only (timm's ``no_embed_class``), resampled to the
    input's grid. ``final_norm=False``: ``norm`` and ``fc_norm`` are identities."""

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
        *,
        reg_tokens: int = 0,
        dynamic_img_size: bool = False,
        global_pool: str = "token",
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.num_reg_tokens = reg_tokens
        self.num_prefix_tokens = 1 + reg_tokens
        self.dynamic_img_size = dynamic_img_size
        self.global_pool = global_pool
        self.no_embed_class = reg_tokens > 0 or dynamic_img_size
        self.patch_embed = PatchEmbed(
            img_size, patch_size, in_channels, embed_dim, strict_img_size=not dynamic_img_size
        )
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        embedded = num_patches + (0 if self.no_embed_class else 1)
        self.pos_embed = nn.Parameter(torch.zeros(1, embedded, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        pair = (nn.LayerNorm(embed_dim) if final_norm else nn.Identity(), nn.Identity())
        self.norm, self.fc_norm = pair if global_pool == "token" else pair[::-1]
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        _init_transformer(self)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=0.02)

    def _pos_embed(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        tokens = [t for t in (self.cls_token, self.reg_token) if t is not None]
        prefix = [t.expand(x.shape[0], -1, -1) for t in tokens]
        if not self.no_embed_class:
            return torch.cat([*prefix, x], dim=1) + self.pos_embed
        pos = _resample(self.pos_embed, self.patch_embed.grid_size, size)
        return torch.cat([*prefix, x + pos], dim=1)

    def forward_features(self, x: Tensor) -> Tensor:
        patch = self.patch_embed.patch_size
        size = (x.shape[-2] // patch[0], x.shape[-1] // patch[1])
        x = self._pos_embed(self.patch_embed(x), size)
        return self.norm(self.blocks(x))

    def forward_head(self, x: Tensor) -> Tensor:
        pooled = x[:, self.num_prefix_tokens :].mean(1) if self.global_pool == "avg" else x[:, 0]
        return self.head(self.fc_norm(pooled))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def tiny_vit(num_classes: int = 10) -> VisionTransformer:
    """A 32x32, patch-8, 2-block ViT (timm layout) for fast unit tests."""
    return VisionTransformer(num_classes=num_classes)


def tiny_register_vit(
    reg_tokens: int = 4, num_classes: int = 3, global_pool: str = "token", final_norm: bool = True
) -> VisionTransformer:
    """A pathology-foundation-model layout in miniature (Virchow2: 4 registers, UNI2-h: 8):
    224 px, patch 14 (a 16×16 grid), ``dynamic_img_size`` (e.g. 224×336 → 16×24), a class
    token and ``reg_tokens`` registers; embed dim 16, 2 blocks, 2 heads."""
    pool = {"global_pool": global_pool, "final_norm": final_norm, "dynamic_img_size": True}
    return VisionTransformer(224, 14, 3, 16, 2, 2, 2.0, num_classes, reg_tokens=reg_tokens, **pool)


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
    """Minimal stand-in for ``transformers.modeling_outputs.ImageClassifierOutput`` (plus
    the final tokens ``last_hidden_state`` where a model gives them)."""

    logits: Tensor
    last_hidden_state: Tensor | None = None


class HuggingFaceStyle(nn.Module):
    """Wraps a classifier so ``forward`` returns an object with ``.logits``, like transformers.

    The wrapped classifier is ``self.model``, so its layers are ``model.model.<path>``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> ImageClassifierOutput:
        return ImageClassifierOutput(logits=self.model(pixel_values))


@dataclass
class ViTConfig:
    """The fields of ``transformers``' ``Dinov2WithRegistersConfig`` that the models read."""

    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 16
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_register_tokens: int = 4
    num_labels: int = 3


class HuggingFaceViT(nn.Module):
    """``Dinov2WithRegistersForImageClassification`` in miniature: ``config``; in ``dinov2``:
    ``embeddings`` (``cls_token``, ``register_tokens``, ``patch_embeddings.projection``,
    ``position_embeddings`` resampled to the input), ``encoder.layer[i]`` (``norm1``,
    ``norm2``, ``mlp``), ``layernorm``; ``classifier`` on [class token, mean patch token].
    Returns ``.logits`` and ``.last_hidden_state``."""

    def __init__(self, config: ViTConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ViTConfig()
        dim, self.grid = c.hidden_size, (c.image_size // c.patch_size,) * 2
        emb = nn.Module()
        conv = nn.Conv2d(3, dim, c.patch_size, stride=c.patch_size)
        emb.patch_embeddings = nn.ModuleDict({"projection": conv})
        emb.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        emb.register_tokens = nn.Parameter(torch.randn(1, c.num_register_tokens, dim) * 0.02)
        emb.position_embeddings = nn.Parameter(torch.randn(1, 1 + self.grid[0] ** 2, dim) * 0.02)
        blocks = [Block(dim, c.num_attention_heads) for _ in range(c.num_hidden_layers)]
        parts = {"embeddings": emb, "encoder": nn.ModuleDict({"layer": nn.Sequential(*blocks)})}
        self.dinov2 = nn.ModuleDict({**parts, "layernorm": nn.LayerNorm(dim)})
        self.dinov2.config = c
        self.classifier = nn.Linear(2 * dim, c.num_labels)
        _init_transformer(self)

    def forward(self, pixel_values: Tensor) -> ImageClassifierOutput:
        emb, p = self.dinov2.embeddings, self.config.patch_size
        x = emb.patch_embeddings.projection(pixel_values).flatten(2).transpose(1, 2)
        size = (pixel_values.shape[-2] // p, pixel_values.shape[-1] // p)
        pos = emb.position_embeddings
        cls = (emb.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x + _resample(pos[:, 1:], self.grid, size)], 1)
        x = torch.cat([x[:, :1], emb.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]], 1)
        x = self.dinov2.layernorm(self.dinov2.encoder.layer(x))
        patches = x[:, 1 + self.config.num_register_tokens :]
        logits = self.classifier(torch.cat([x[:, 0], patches.mean(1)], dim=1))
        return ImageClassifierOutput(logits=logits, last_hidden_state=x)


class ViTSegmenter(nn.Module):
    """``encoder`` (a ViT) → patch tokens as a grid → 1×1 conv ``head`` → upsampled to input."""

    def __init__(self, encoder: VisionTransformer, num_classes: int = 3) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Conv2d(encoder.embed_dim, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.encoder.forward_features(x)[:, self.encoder.num_prefix_tokens :]
        (p, q), (b, c) = self.encoder.patch_embed.patch_size, tokens.shape[::2]
        grid = tokens.transpose(1, 2).reshape(b, c, x.shape[-2] // p, x.shape[-1] // q)
        return F.interpolate(self.head(grid), x.shape[-2:], mode="bilinear", align_corners=False)
