"""Speed of camlens on a pathology-foundation-model-size ViT, as multiples of a plain forward.

The model: a ViT-B/14 with registers at 224×224, the layout of pathology foundation models
such as Virchow2 (embed 768, 12 blocks, 12 heads, MLP ratio 4, patch 14 → a 16×16 grid, one
class token and 4 register tokens, ``dynamic_img_size``), built from the repository's own
test classes (:class:`camlens.models.VisionTransformer` with timm-style attention from
:func:`camlens.models.with_timm_attention`, ``fused_attn`` on as timm's default). Random
weights (seed 0), eval mode, float32, 9 classes, target class 1.

Every contender of a case — a plain ``torch.no_grad()`` forward pass and one
``camlens.Explainer(model, "blocks[-1].norm1", method)(x, targets=[class] * B)`` per method —
is timed in the same ``time_interleaved`` call (order rotated every repeat; medians), so all
rows of a case share one forward baseline. Grad-CAM and HiResCAM take the tokens of the last
block's ``norm1`` (the prefix tokens dropped, the patch tokens as a 16×16 grid) and
differentiate only what follows it. The attention methods (``rollout``, ``chefer2021``,
``legrad``) ignore the target layer and read every block's attention probabilities: they
switch each module's ``fused_attn`` off for the call (explicit softmax attention instead of
``F.scaled_dot_product_attention``), which is part of their cost (small on CPU at 261 tokens:
an explicit-attention forward measured within noise of the fused one), and they run the model
a second time, after the pipeline's own forward pass that resolves the targets. The gradient
ones (Chefer 2021, LeGrad) record the autograd graph through all 12 blocks in that second
pass and differentiate back to every block's attention; LeGrad (the paper's per-block
scores) adds the head applied to each block's tokens and a backward pass per block.

    python bench/bench_vit.py [--repeats 5] [--batches 1,8] [--methods gradcam,hirescam,...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, time_interleaved

import camlens
from camlens.models import VisionTransformer, with_timm_attention

METHODS = ("gradcam", "hirescam", "rollout", "chefer2021", "legrad")
LAYER = "blocks[-1].norm1"
TARGET_CLASS = 1


def vit_b14_registers(num_classes: int = 9) -> VisionTransformer:
    """ViT-B/14, 4 registers, 224 px, dynamic image size, timm attention; seed 0, eval."""
    torch.manual_seed(0)
    model = VisionTransformer(
        224, 14, 3, 768, 12, 12, 4.0, num_classes, reg_tokens=4, dynamic_img_size=True
    )
    return with_timm_attention(model).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    model = vit_b14_registers()
    print(f"# {machine_line()}")
    print(f"# python bench/bench_vit.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"# median of {args.repeats} interleaved runs; × forward = time / plain no_grad forward")
    print("| model | method | forward (ms) | camlens (ms) | × forward |")
    print("|---|---|---|---|---|")
    for batch in (int(b) for b in args.batches.split(",")):
        torch.manual_seed(0)
        inputs = torch.randn(batch, 3, 224, 224)
        targets = [TARGET_CLASS] * batch

        def forward(inputs=inputs) -> None:
            with torch.no_grad():
                model(inputs)

        contenders = {"forward": forward}
        for method in methods:
            explainer = camlens.Explainer(model, LAYER, method)
            contenders[method] = lambda e=explainer, x=inputs, t=targets: e(x, targets=t)
        times = time_interleaved(contenders, args.repeats)
        base = times["forward"]
        for method in methods:
            print(
                f"| ViT-B/14 + 4 reg, 224², b{batch} | {method} | {base * 1e3:.1f} | "
                f"{times[method] * 1e3:.1f} | {times[method] / base:.2f}× |",
                flush=True,
            )


if __name__ == "__main__":
    main()
