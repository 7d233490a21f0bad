"""Attention rollout, Chefer 2021 (gradient × attention rollout) and LeGrad.

The references below run the tiny ViTs' blocks by hand — attention computed explicitly
from the ``qkv`` weights — and write each paper's formula with plain loops, independent of
``camlens.methods.attention`` and its capture machinery.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camlens
from camlens.errors import LayerNotFoundError, OptionError
from camlens.methods._attention import attention_forward
from camlens.methods.attention import ATTENTION_METHODS, MAP_NAME
from camlens.models import (
    HuggingFaceViT,
    TimmAttention,
    ViTSegmenter,
    tiny_attention_vit,
    tiny_resnet,
    tiny_vit,
    with_timm_attention,
)
from camlens.postprocess import familiar_maps
from camlens.targets import ClassifierOutputTarget

TOLERANCE = {"rtol": 1e-5, "atol": 1e-8}


def _vit(**kwargs) -> nn.Module:
    """A tiny ViT (3 blocks, 2 heads, embed 16) in float64, its ``qkv`` weights scaled up so
    that the attention is far from uniform (timm's init gives nearly uniform attention)."""
    torch.manual_seed(0)
    model = tiny_attention_vit(**kwargs).double().eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.mul_(25.0)
    return model


def _inputs(batch: int = 2, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, 3, *size, dtype=torch.float64)


# ---------------------------------------------------------------- the references


def _by_hand(model, x):
    """The ViT run block by block with explicit attention: logits, the attentions
    ``(B, heads, T, T)`` (in the graph) and the block outputs ``(B, T, C)``."""
    patch = model.patch_embed.patch_size
    tokens = model._pos_embed(
        model.patch_embed(x), (x.shape[-2] // patch[0], x.shape[-1] // patch[1])
    )
    attentions, outputs = [], []
    for block in model.blocks:
        attn = block.attn
        b, n, c = tokens.shape
        heads = attn.num_heads
        qkv = F.linear(block.norm1(tokens), attn.qkv.weight, attn.qkv.bias)
        q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / (c // heads) ** 0.5
        a = torch.exp(scores - scores.amax(-1, keepdim=True))
        a = a / a.sum(-1, keepdim=True)
        attentions.append(a)
        mixed = (a @ v).transpose(1, 2).reshape(b, n, c)
        tokens = tokens + F.linear(mixed, attn.proj.weight, attn.proj.bias)
        tokens = tokens + block.mlp(block.norm2(tokens))
        outputs.append(tokens)
    return _head(model, tokens), attentions, outputs


def _head(model, tokens):
    tokens = model.norm(tokens)
    if model.global_pool == "avg":
        pooled = tokens[:, model.num_prefix_tokens :].mean(1)
    else:
        pooled = tokens[:, 0]
    return model.head(model.fc_norm(pooled))


def _read(relevance, prefix, pooled):
    """One image's ``(T, T)`` relevance → the patch tokens' values."""
    if pooled:
        return relevance[prefix:, prefix:].mean(0)
    return relevance[0, prefix:]


def _reference_rollout(model, x, head_fusion="mean", discard_ratio=0.0):
    _, attentions, _ = _by_hand(model, x)
    prefix, pooled = model.num_prefix_tokens, model.global_pool == "avg"
    maps = []
    for image in range(x.shape[0]):
        tokens = attentions[0].shape[-1]
        rolled = torch.eye(tokens, dtype=torch.float64)
        for a in attentions:
            heads = a[image].detach()
            fused = {"mean": heads.mean(0), "max": heads.max(0).values, "min": heads.min(0).values}
            fused = fused[head_fusion].clone()
            drop = int(discard_ratio * tokens * tokens)
            if drop:
                threshold = fused.flatten().sort().values[drop - 1]
                fused[fused <= threshold] = 0.0
            step = 0.5 * fused + 0.5 * torch.eye(tokens, dtype=torch.float64)
            for row in range(tokens):
                step[row] = step[row] / step[row].sum()
            rolled = step @ rolled
        maps.append(_read(rolled, prefix, pooled))
    return torch.stack(maps)


def _reference_chefer(model, x, classes):
    prefix, pooled = model.num_prefix_tokens, model.global_pool == "avg"
    maps = torch.zeros(x.shape[0], len(classes), model.patch_embed.num_patches, dtype=x.dtype)
    for image in range(x.shape[0]):
        for column, category in enumerate(classes):
            logits, attentions, _ = _by_hand(model, x[image : image + 1])
            grads = torch.autograd.grad(logits[0, category], attentions)
            tokens = attentions[0].shape[-1]
            relevance = torch.eye(tokens, dtype=torch.float64)
            for a, g in zip(attentions, grads, strict=True):
                cam = (g[0] * a[0]).clamp(min=0).mean(0)
                relevance = relevance + cam @ relevance
            maps[image, column] = _read(relevance.detach(), prefix, pooled)
    return maps


def _reference_legrad(model, x, classes, intermediate=True, last=None):
    prefix = model.num_prefix_tokens
    maps = torch.zeros(x.shape[0], len(classes), model.patch_embed.num_patches, dtype=x.dtype)
    for image in range(x.shape[0]):
        for column, category in enumerate(classes):
            logits, attentions, outputs = _by_hand(model, x[image : image + 1])
            blocks = range(len(attentions))[-last:] if last else range(len(attentions))
            total = 0.0
            for index in blocks:
                score = _head(model, outputs[index])[0, category] if intermediate else None
                score = score if intermediate else logits[0, category]
                (grad,) = torch.autograd.grad(score, attentions[index], retain_graph=True)
                total = total + grad[0].clamp(min=0).mean(dim=(0, 1))
            maps[image, column] = (total / len(blocks))[prefix:]
    return maps


def _layer_map(model, x, method, classes, **options):
    result = camlens.explain(model, x, method, targets=classes, options=options)
    return result, result.layer_maps[0].reshape(x.shape[0], -1)


# ---------------------------------------------------------------- values


def test_the_hand_run_model_is_the_model_and_both_attention_paths_agree() -> None:
    model, x = _vit(), _inputs()
    logits, _, _ = _by_hand(model, x)
    fused = model(x)
    torch.testing.assert_close(logits, fused, rtol=1e-10, atol=1e-12)
    for block in model.blocks:
        block.attn.fused_attn = False
    torch.testing.assert_close(model(x), fused, rtol=1e-10, atol=1e-12)
    torch.manual_seed(0)
    plain = tiny_vit()
    converted = with_timm_attention(tiny_vit().requires_grad_(False)).eval()
    plain.load_state_dict(converted.state_dict())
    torch.testing.assert_close(plain.eval()(x.float()), converted(x.float()))


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.3])
def test_rollout_is_abnar_and_zuidema(head_fusion: str, discard_ratio: float) -> None:
    model, x = _vit(), _inputs()
    options = {"head_fusion": head_fusion, "discard_ratio": discard_ratio}
    result, raw = _layer_map(model, x, "rollout", [1, 3], **options)
    torch.testing.assert_close(raw, _reference_rollout(model, x, **options), **TOLERANCE)
    assert result.layer_names == [MAP_NAME]
    assert result.layer_maps[0].shape == (2, 4, 4)


def test_rollout_is_class_agnostic_over_k_targets() -> None:
    model, x = _vit(), _inputs()
    seg = camlens.explain_segmentation(
        ViTSegmenter(model, 3).double(), x, classes=[0, 1, 2], methods="rollout"
    )
    maps = seg.layer_maps["rollout"][0]
    assert maps.shape == (2, 3, 4, 4)
    assert torch.equal(maps[:, 0], maps[:, 1]) and torch.equal(maps[:, 0], maps[:, 2])
    expected = _reference_rollout(model, x).reshape(2, 4, 4)
    torch.testing.assert_close(maps[:, 0], expected, **TOLERANCE)


@pytest.mark.parametrize("kwargs", [{}, {"reg_tokens": 4}, {"global_pool": "avg"}])
def test_chefer2021_is_the_iccv_rule(kwargs: dict) -> None:
    """Registers are prefix tokens (not on the map); mean-pooling models read the mean of
    the patch tokens' rows."""
    model, x = _vit(**kwargs), _inputs()
    classes = [1, 3]
    rows = [[ClassifierOutputTarget(c) for c in classes] for _ in range(2)]
    raw = _explain_k(model, x, "chefer2021", rows)
    torch.testing.assert_close(raw, _reference_chefer(model, x, classes), **TOLERANCE)
    torch.testing.assert_close(
        _explain_k(model, x, "rollout", rows)[:, 0], _reference_rollout(model, x), **TOLERANCE
    )


def _explain_k(model, x, method, rows, **options):
    """``(B, K, h·w)`` raw maps of ``K`` targets per image through the engine."""
    from camlens.engine import explain_batch, plan_methods
    from camlens.target_sets import TargetSet

    calls = plan_methods([method], options or None)
    result = explain_batch(model, x, calls, [], [], lambda _outputs: TargetSet(rows))
    raw = result.layer_maps[method][0]
    return raw.reshape(*raw.shape[:2], -1)


@pytest.mark.parametrize("kwargs", [{}, {"reg_tokens": 4}, {"global_pool": "avg"}])
def test_legrad_per_block_scores_from_the_head(kwargs: dict) -> None:
    model, x = _vit(**kwargs), _inputs()
    rows = [[ClassifierOutputTarget(c) for c in (0, 2)] for _ in range(2)]
    raw = _explain_k(model, x, "legrad", rows)
    torch.testing.assert_close(raw, _reference_legrad(model, x, [0, 2]), **TOLERANCE)
    explicit = _explain_k(model, x, "legrad", rows, scores="intermediate")
    torch.testing.assert_close(explicit, raw, rtol=0, atol=0)


@pytest.mark.parametrize("last", [None, 2])
def test_legrad_final_score_variant_and_last_blocks(last: int | None) -> None:
    model, x = _vit(), _inputs()
    _, raw = _layer_map(model, x, "legrad", [4, 1], scores="final", last_blocks=last)
    expected = torch.stack(
        [
            _reference_legrad(model, x[i : i + 1], [c], False, last)[0, 0]
            for i, c in enumerate([4, 1])
        ]
    )
    torch.testing.assert_close(raw, expected, **TOLERANCE)
    _, per_block = _layer_map(model, x, "legrad", [4, 1], last_blocks=last)
    expected = torch.stack(
        [
            _reference_legrad(model, x[i : i + 1], [c], True, last)[0, 0]
            for i, c in enumerate([4, 1])
        ]
    )
    torch.testing.assert_close(per_block, expected, **TOLERANCE)


def test_legrad_of_the_last_block_alone_is_the_same_for_both_scores() -> None:
    """The head applied to the last block's tokens is the model's output."""
    model, x = _vit(), _inputs()
    _, final = _layer_map(model, x, "legrad", [2, 2], scores="final", last_blocks=1)
    _, per_block = _layer_map(model, x, "legrad", [2, 2], scores="intermediate", last_blocks=1)
    torch.testing.assert_close(final, per_block, rtol=1e-10, atol=1e-12)


def test_a_non_square_grid_of_a_register_vit() -> None:
    model, x = _vit(reg_tokens=4), _inputs(1, (32, 48))
    for method in ATTENTION_METHODS:
        result = camlens.explain(model, x, method, targets=[1])
        assert result.layer_maps[0].shape == (1, 4, 6), method
        assert result.maps.shape == (1, 32, 48), method
    rows = [[ClassifierOutputTarget(1)]]
    torch.testing.assert_close(
        _explain_k(model, x, "chefer2021", rows)[:, 0],
        _reference_chefer_any(model, x, 1),
        **TOLERANCE,
    )


def _reference_chefer_any(model, x, category):
    logits, attentions, _ = _by_hand(model, x)
    grads = torch.autograd.grad(logits[0, category], attentions)
    relevance = torch.eye(attentions[0].shape[-1], dtype=torch.float64)
    for a, g in zip(attentions, grads, strict=True):
        relevance = relevance + (g[0] * a[0]).clamp(min=0).mean(0) @ relevance
    return relevance[0, model.num_prefix_tokens :][None].detach()


# ---------------------------------------------------------------- the pipeline and front ends


@pytest.mark.parametrize("method", ATTENTION_METHODS)
def test_front_ends_and_final_maps(method: str) -> None:
    model, x = _vit(), _inputs()
    result = camlens.explain(model, x, method=method, targets=[1, 2])
    assert result.maps.shape == (2, 32, 32)
    torch.testing.assert_close(result.maps, familiar_maps(result.layer_maps, (32, 32)))
    assert float(result.maps.min()) >= 0 and float(result.maps.max()) <= 1
    # target layers are accepted and ignored
    explainer = camlens.Explainer(model, "blocks[-1].norm1", method)
    again = explainer.explain(x, [1, 2])
    torch.testing.assert_close(again.layer_maps[0], result.layer_maps[0], rtol=0, atol=0)
    segmenter = ViTSegmenter(_vit(), num_classes=3).double()
    seg = camlens.explain_segmentation(segmenter, x, classes=[0, 1, 2], methods=method)
    assert seg.layer_maps[method][0].shape == (2, 3, 4, 4)
    assert seg.maps[method].shape == (2, 3, 32, 32)
    assert torch.isfinite(seg.maps[method]).all()


def test_a_hugging_face_style_model_and_a_module_pattern() -> None:
    torch.manual_seed(0)
    model = with_timm_attention(HuggingFaceViT()).double().eval()
    x = _inputs(1, (28, 42))
    for method in ATTENTION_METHODS:
        result = camlens.explain(model, x, method, targets=[1])
        assert result.layer_maps[0].shape == (1, 2, 3), method
        named = camlens.explain(
            model,
            x,
            method,
            targets=[1],
            options={"attention_modules": "dinov2.encoder.layer.*.attn"},
        )
        torch.testing.assert_close(named.layer_maps[0], result.layer_maps[0], rtol=0, atol=0)
    with pytest.raises(LayerNotFoundError, match="forward_head"):
        camlens.explain(model, x, "legrad", targets=[1], options={"scores": "intermediate"})


def test_a_cnn_is_refused_with_a_clear_error() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=3)
    for method in ATTENTION_METHODS:
        with pytest.raises(LayerNotFoundError, match="no attention modules found"):
            camlens.explain(model, torch.randn(1, 3, 32, 32), method)
    with pytest.raises(LayerNotFoundError, match="matches no module"):
        camlens.explain(_vit(), _inputs(), "rollout", options={"attention_modules": "nope.*"})
    with pytest.raises(LayerNotFoundError, match="no `attn_drop`"):  # the plain Attention
        camlens.explain(
            tiny_vit(),
            torch.randn(1, 3, 32, 32),
            "rollout",
            options={"attention_modules": "blocks.*.attn"},
        )


def test_options_are_checked_up_front() -> None:
    model = _vit()
    for method, options in [
        ("rollout", {"head_fusion": "median"}),
        ("rollout", {"discard_ratio": 1.5}),
        ("chefer2021", {"query": "cls"}),
        ("legrad", {"last_blocks": 0}),
        ("legrad", {"scores": "layer"}),
    ]:
        with pytest.raises(OptionError):
            camlens.Explainer(model, method=method, options=options)
    avg = _vit(global_pool="avg")
    pooled = camlens.explain(avg, _inputs(), "rollout", options={"query": "patches"})
    auto = camlens.explain(avg, _inputs(), "rollout")
    torch.testing.assert_close(auto.layer_maps[0], pooled.layer_maps[0], rtol=0, atol=0)
    by_class = camlens.explain(avg, _inputs(), "rollout", options={"query": "class"})
    assert not torch.allclose(by_class.layer_maps[0], pooled.layer_maps[0])


# ---------------------------------------------------------------- the model is handed back


def _flags(model: nn.Module) -> dict[str, object]:
    return {
        name: (module.fused_attn, "fused_attn" in vars(module))
        for name, module in model.named_modules()
        if hasattr(module, "fused_attn")
    }


class Boom(RuntimeError):
    pass


class _SecondCallRaises:
    """Passes the engine's own forward pass, raises inside the method's."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise Boom("target failed in the method's forward pass")
        return output[1]


@pytest.mark.parametrize("method", ATTENTION_METHODS)
def test_model_identical_after_success_and_after_an_exception(method: str, snapshot) -> None:
    model = _vit().train()
    model.blocks[0].eval()
    model.blocks[1].attn.fused_attn = False
    model.head.weight.requires_grad_(False)
    before, flags = snapshot(model), _flags(model)
    camlens.explain(model, _inputs(), method, targets=[1, 2])
    before.assert_same(model)
    assert _flags(model) == flags
    if method != "rollout":  # rollout reads no target: nothing can raise inside it
        with pytest.raises(Boom):
            camlens.explain(model, _inputs(1), method, targets=[_SecondCallRaises()])
        before.assert_same(model)
        assert _flags(model) == flags


def test_capture_restores_flags_hooks_and_modes_when_the_caller_raises(snapshot) -> None:
    model = _vit().train()
    TimmAttention.fused_attn = True  # a class attribute on one module's class ...
    try:
        del model.blocks[2].attn.fused_attn  # ... read through, not held by the module
        before, flags = snapshot(model), _flags(model)
        with pytest.raises(Boom), attention_forward(model, _inputs(), None, gradients=True) as run:
            assert all(not m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
            assert not model.training and len(run.probabilities) == 3
            raise Boom("caller failed")
        before.assert_same(model)
        assert _flags(model) == flags and "fused_attn" not in vars(model.blocks[2].attn)
    finally:
        del TimmAttention.fused_attn


def test_inside_no_grad_and_for_a_frozen_model() -> None:
    model = _vit().requires_grad_(False)
    x = _inputs()
    with torch.no_grad():
        _, raw = _layer_map(model, x, "chefer2021", [1, 3])
    reference = _reference_chefer(model.requires_grad_(True), x, [1, 3])
    torch.testing.assert_close(raw, torch.stack([reference[0, 0], reference[1, 1]]), **TOLERANCE)
