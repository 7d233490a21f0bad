"""Attention-aware methods for vision transformers: attention rollout, the gradient-weighted
rollout of Chefer et al. 2021, and LeGrad — runners over the captured attention probabilities.

Notation: a ViT with ``L`` attention blocks, ``T = P + h·w`` tokens (``P`` prefix tokens — a
class token first, then registers — followed by the patch tokens in row-major order), and
per block ``l`` the attention probabilities ``A_l`` of shape ``(B, heads, T, T)``, rows
summing to 1, as captured by :mod:`camlens.methods._attention` (timm's ``attn_drop`` input;
``fused_attn`` switched off for the call). ``E_h`` is the mean over heads, ``I`` the
``T × T`` identity, ``x⁺ = max(x, 0)``.

Reading a ``T × T`` relevance ``R`` (option ``query``): the class token's row ``R[0, P:]``
over the patch tokens, or — for models without a class token, or that mean-pool their patch
tokens (timm ``global_pool="avg"``) — the mean of the patch tokens' rows
``mean_{i ≥ P} R[i, P:]`` (the pooled output is the mean of those tokens); ``"auto"`` picks
from the model (:func:`camlens.methods._attention.query_relevance`).

These methods use no target layers: their one map is named ``"attention"`` (target layers are
accepted and ignored, as for FullGrad), at the patch grid ``(h, w)`` read from the model
(:func:`camlens.tokens.token_layout`); the shared pipeline upsamples it to the input. A
model without attention modules (a CNN) gets :class:`~camlens.errors.LayerNotFoundError`.
"""

from __future__ import annotations

import torch

from camlens.errors import LayerNotFoundError
from camlens.methods._attention import (
    attention_forward,
    grid_maps,
    patch_tokens,
    query_relevance,
)
from camlens.methods.registry import Method, Option, RunContext, register
from camlens.target_sets import TargetSet

__all__ = [
    "ATTENTION_METHODS",
    "MAP_NAME",
    "chefer2021",
    "fuse_heads",
    "legrad",
    "rollout",
    "rollout_matrix",
]

#: The name of these methods' one map (they use no target layers).
MAP_NAME = "attention"

#: The registry names of the methods that need attention modules (a ViT).
ATTENTION_METHODS = ("rollout", "chefer2021", "legrad")

_MODULES = Option(
    name="attention_modules",
    kind=str,
    default=None,
    nullable=True,
    help="glob over module names selecting the attention modules, e.g. 'blocks.*.attn' "
    "(default: every module with a `fused_attn` flag); each needs an `attn_drop` submodule",
)
_QUERY = Option(
    name="query",
    kind=str,
    default="auto",
    choices=("auto", "class", "patches"),
    help="whose row of the token relevance is the map: the class token's, the mean of the "
    "patch tokens' (mean-pooling heads), or auto (from the model's global_pool / class token)",
)


def _dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def fuse_heads(attention: torch.Tensor, how: str) -> torch.Tensor:
    """``(B, heads, T, T)`` → ``(B, T, T)``: the mean, max or min over heads."""
    if how == "mean":
        return attention.mean(dim=1)
    if how == "max":
        return attention.amax(dim=1)
    return attention.amin(dim=1)


def _discard_lowest(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the ``⌊ratio · T²⌋`` smallest entries of each image's ``(T, T)`` matrix."""
    count = int(ratio * fused.shape[-1] * fused.shape[-2])
    if count == 0:
        return fused
    flat = fused.flatten(1)
    lowest = flat.topk(count, dim=1, largest=False).indices
    return flat.scatter(1, lowest, 0.0).reshape(fused.shape)


def rollout_matrix(
    probabilities: list[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> torch.Tensor:
    """``(B, T, T)``: Abnar & Zuidema's rollout ``Ã = Â_L ⋯ Â_2 · Â_1`` with
    ``Â_l = normalise_rows(0.5 · fuse(A_l) + 0.5 · I)`` (see :func:`rollout`)."""
    first = probabilities[0]
    dtype = _dtype(first)
    eye = torch.eye(first.shape[-1], dtype=dtype, device=first.device)
    result = eye.expand(first.shape[0], -1, -1)
    for attention in probabilities:
        fused = fuse_heads(attention.detach().to(dtype), head_fusion)
        if discard_ratio > 0:
            fused = _discard_lowest(fused, discard_ratio)
        mixed = 0.5 * fused + 0.5 * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed @ result
    return result


def rollout(context: RunContext) -> list[torch.Tensor]:
    """Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers",
    ACL 2020), class-agnostic: ``(B, K, h, w)``, the same map for every target.

    Per block, the attention is fused over heads (option ``head_fusion``: the paper averages
    heads; max and min are the common implementation's alternatives), optionally the
    ``⌊discard_ratio · T²⌋`` smallest entries of each image's fused matrix are set to 0 (the
    common implementation's ``discard_ratio``; the paper has none), the residual connection
    is accounted for as the paper does — ``0.5 · A + 0.5 · I`` — and the rows are
    re-normalised to sum to 1 (a no-op for the paper's mean over heads without discarding,
    since each row of ``A`` already sums to 1). The rolled-out attention multiplies these
    from the first block to the last, ``Ã = Â_L ⋯ Â_1``: ``Ã[i, j]`` is how much output
    token ``i`` attends to input token ``j`` through all blocks. The map is ``Ã`` read over
    the patch tokens (module docstring, option ``query``).
    """
    options = context.options
    with attention_forward(
        context.model, context.inputs, options["attention_modules"], gradients=False
    ) as run:
        probabilities = run.probabilities
    prefix, grid = patch_tokens(context.model, context.inputs, probabilities[0].shape[-1])
    matrix = rollout_matrix(probabilities, options["head_fusion"], options["discard_ratio"])
    relevance = query_relevance(context.model, matrix, prefix, options["query"])
    return [grid_maps([relevance] * context.num_targets, grid)]


def _gradients(
    score: torch.Tensor, tensors: list[torch.Tensor], retain: bool
) -> list[torch.Tensor]:
    """``∂score/∂t`` for each of ``tensors`` (zeros where the score does not depend on it)."""
    found = torch.autograd.grad(score, tensors, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, found, strict=True)]


def chefer2021(context: RunContext) -> list[torch.Tensor]:
    """Gradient-weighted attention rollout, the self-attention rule of Chefer, Gur & Wolf,
    "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
    Transformers", ICCV 2021 (its self-attention rule, often called "GAE"), which simplifies their
    "Transformer Interpretability Beyond Attention Visualization", CVPR 2021 by using the
    attention maps ``A_l`` themselves where the CVPR rule used their LRP relevance — so no
    LRP is needed. Per target ``k``, with ``∇A_l = ∂y_k/∂A_l``::

        Ā_l = E_h((∇A_l ⊙ A_l)⁺)               (B, T, T)
        R ← R + Ā_l · R,  R = I initially,  for l = 1 … L (first block first)

    and the map is ``R`` read over the patch tokens (module docstring, option ``query``).
    One forward pass with a retained graph serves all ``K`` targets, one backward pass
    each; gradients go to the attention probabilities only.
    """
    options = context.options
    maps = []
    with attention_forward(
        context.model, context.inputs, options["attention_modules"], gradients=True
    ) as run:
        probabilities = run.probabilities
        scores = TargetSet(context.targets).scores(context.score_tensor(run.output))
        prefix, grid = patch_tokens(context.model, context.inputs, probabilities[0].shape[-1])
        dtype = _dtype(probabilities[0])
        count = scores.shape[1]
        for k in range(count):
            grads = _gradients(scores[:, k].sum(), probabilities, retain=k < count - 1)
            tokens = probabilities[0].shape[-1]
            relevance = torch.eye(tokens, dtype=dtype, device=scores.device).expand(
                scores.shape[0], -1, -1
            )
            for attention, grad in zip(probabilities, grads, strict=True):
                weighted = (grad.detach() * attention.detach()).to(dtype).clamp_min(0).mean(dim=1)
                relevance = relevance + weighted @ relevance
            maps.append(query_relevance(context.model, relevance, prefix, options["query"]))
    return [grid_maps(maps, grid)]


def _has_timm_head(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "forward_head", None)) and isinstance(
        getattr(model, "norm", None), torch.nn.Module
    )


def legrad(context: RunContext) -> list[torch.Tensor]:
    """LeGrad (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, "LeGrad: An Explainability
    Method for Vision Transformers via Feature Formation Sensitivity", arXiv 2404.03214,
    2024; ICCV 2025). Our reading of the paper's formula, per target ``k``:

    * per block ``l``, the activation ``s_l`` is the target read off the model's own final
      norm and head applied to block ``l``'s output tokens ``z_l`` (the paper's per-layer
      activation: the intermediate tokens mapped to the output space by the final layers) —
      for a timm ViT ``s_l = y_k(forward_head(norm(z_l)))``, i.e. the model's own pooling
      (class token, or the mean of the patch tokens) and classifier; for the last block
      ``s_L`` is the score itself;
    * ``E_l = mean_{heads, query tokens i} (∂s_l/∂A_l)⁺``, a value per key token — the mean
      over all ``T`` query rows (class, register and patch tokens), as the authors' code
      does — read over the patch tokens;
    * the map is the mean over the blocks, ``Ē = (1/L) Σ_l E_l`` (the paper's aggregation
      over all layers; the min-max normalisation is the shared pipeline's).

    Options: ``scores="intermediate"`` is the above and needs timm's ``forward_head`` and
    ``norm`` on the model; ``"final"`` is **a variant**, not the paper's formula:
    ``s_l = y_k`` (the model's score) for every block, for models whose head cannot be
    applied to intermediate tokens (segmenters, Hugging Face models); ``"auto"`` (default)
    is intermediate when the model has that head, else final. ``last_blocks=n`` aggregates
    only the last ``n`` blocks (the authors' code starts at a chosen depth; the paper's
    formula uses all). One forward pass serves every target and block, with a backward
    pass per target (and per block for intermediate scores).
    """
    options = context.options
    model = context.model
    mode = options["scores"]
    if mode == "auto":
        mode = "intermediate" if _has_timm_head(model) else "final"
    if mode == "intermediate" and not _has_timm_head(model):
        raise LayerNotFoundError(
            f"LeGrad scores='intermediate' applies the model's head to each block's tokens and "
            f"needs timm's `forward_head` and `norm` on the model; {type(model).__name__} has "
            "not both: use scores='final'."
        )
    targets = TargetSet(context.targets)
    maps = []
    with attention_forward(
        model,
        context.inputs,
        options["attention_modules"],
        gradients=True,
        blocks=mode == "intermediate",
    ) as run:
        probabilities = run.probabilities
        prefix, grid = patch_tokens(model, context.inputs, probabilities[0].shape[-1])
        depth = len(probabilities)
        used = list(range(depth - min(options["last_blocks"] or depth, depth), depth))
        if mode == "intermediate":
            blocks = run.block_outputs
            layer_scores = [
                targets.scores(context.score_tensor(model.forward_head(model.norm(blocks[b]))))
                for b in used
            ]
        else:
            final = targets.scores(context.score_tensor(run.output))
        count = targets.num_targets
        dtype = _dtype(probabilities[0])
        for k in range(count):
            last = k == count - 1
            if mode == "intermediate":
                grads = [
                    _gradients(score[:, k].sum(), [probabilities[b]], retain=True)[0]
                    for score, b in zip(layer_scores, used, strict=True)
                ]
            else:
                chosen = [probabilities[b] for b in used]
                grads = _gradients(final[:, k].sum(), chosen, retain=not last)
            per_block = [g.detach().to(dtype).clamp_min(0).mean(dim=(1, 2)) for g in grads]
            maps.append(torch.stack(per_block).mean(dim=0)[:, prefix:])
    return [grid_maps(maps, grid)]


register(
    Method(
        name="rollout",
        runner=rollout,
        needs_gradients=False,
        map_names=(MAP_NAME,),
        needs_attention=True,
        label="Attention Rollout",
        class_name="AttentionRollout",
        reference="Abnar & Zuidema, ACL 2020",
        options=(
            Option(
                name="head_fusion",
                kind=str,
                default="mean",
                choices=("mean", "max", "min"),
                help="how the heads of a block are fused (the paper: mean)",
            ),
            Option(
                name="discard_ratio",
                kind=float,
                default=0.0,
                minimum=0.0,
                maximum=1.0,
                help="fraction of each block's smallest fused attentions set to 0 first",
            ),
            _QUERY,
            _MODULES,
        ),
    )
)

register(
    Method(
        name="chefer2021",
        runner=chefer2021,
        needs_gradients=True,
        map_names=(MAP_NAME,),
        needs_attention=True,
        label="Chefer 2021",
        class_name="TransformerAttribution",
        reference="Chefer, Gur & Wolf, ICCV 2021 (self-attention rule); CVPR 2021",
        options=(_QUERY, _MODULES),
    )
)

register(
    Method(
        name="legrad",
        runner=legrad,
        needs_gradients=True,
        map_names=(MAP_NAME,),
        needs_attention=True,
        label="LeGrad",
        class_name="LeGrad",
        reference="Bousselham et al., arXiv 2404.03214, 2024 (ICCV 2025)",
        options=(
            Option(
                name="scores",
                kind=str,
                default="auto",
                choices=("auto", "intermediate", "final"),
                help="per-block scores from the model's head on each block's tokens (the "
                "paper), the final score for every block (a variant), or auto",
            ),
            Option(
                name="last_blocks",
                kind=int,
                default=None,
                nullable=True,
                minimum=1,
                help="aggregate only the last n attention blocks (None: all, the paper)",
            ),
            _MODULES,
        ),
    )
)
