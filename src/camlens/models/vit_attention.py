"""timm's attention module with both of its paths, for the attention methods' tests.

timm's ``Attention`` has a ``fused_attn`` flag: when true it calls
``F.scaled_dot_product_attention`` (the probabilities never exist); when false it computes
them explicitly and passes them through ``attn_drop`` before multiplying with ``v``::

    attn = (q @ k.transpose(-2, -1)) * scale
    attn = attn.softmax(dim=-1)
    attn = self.attn_drop(attn)
    x = attn @ v

:class:`TimmAttention` is :class:`camlens.models.vit.Attention` (same parameters, same
``qkv`` / ``proj`` layout) with timm's ``q_norm``, ``k_norm``, ``attn_drop``, ``proj_drop``
and ``fused_attn``; :func:`with_timm_attention` swaps it, weights kept, into any model built
from the small ViTs of :mod:`camlens.models.vit` (the classifier, the register ViT, the
Hugging Face-style model, the segmenter's encoder).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from camlens.models.vit import Attention, VisionTransformer

__all__ = ["TimmAttention", "tiny_attention_vit", "with_timm_attention"]


class TimmAttention(Attention):
    """timm's ``Attention``: ``qkv``, ``q_norm``, ``k_norm``, ``attn_drop``, ``proj``,
    ``proj_drop`` and the ``fused_attn`` flag (default ``True``, as timm's
    ``use_fused_attn()`` on recent PyTorch)."""

    def __init__(self, dim: int, num_heads: int = 4, attn_drop: float = 0.0) -> None:
        super().__init__(dim, num_heads)
        self.fused_attn = True
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            p = self.attn_drop.p if self.training else 0.0
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = attn.softmax(dim=-1)
            attn = self.attn_drop(attn)
            x = attn @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


def with_timm_attention(model: nn.Module, fused_attn: bool = True) -> nn.Module:
    """``model`` with every :class:`~camlens.models.vit.Attention` replaced, in place, by a
    :class:`TimmAttention` holding the same weights (so outputs are unchanged)."""
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is Attention
    ]
    for parent, name, child in swaps:
        dim = child.qkv.in_features
        replacement = TimmAttention(dim, child.num_heads).to(child.qkv.weight)
        replacement.load_state_dict(child.state_dict())
        replacement.fused_attn = fused_attn
        replacement.train(child.training)
        setattr(parent, name, replacement)
    return model


def tiny_attention_vit(
    num_classes: int = 5,
    depth: int = 3,
    *,
    reg_tokens: int = 0,
    global_pool: str = "token",
    fused_attn: bool = True,
) -> VisionTransformer:
    """A 32×32, patch-8 (4×4 grid) ViT with timm attention: embed 16, 2 heads, ``depth``
    blocks; ``reg_tokens`` registers after the class token (then ``dynamic_img_size``, as
    :func:`tiny_register_vit`: other input sizes get their own grid)."""
    model = VisionTransformer(
        32,
        8,
        3,
        16,
        depth,
        2,
        2.0,
        num_classes,
        reg_tokens=reg_tokens,
        dynamic_img_size=reg_tokens > 0,
        global_pool=global_pool,
    )
    with_timm_attention(model, fused_attn)
    return model
