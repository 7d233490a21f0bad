"""Every class of a segmentation at once vs one call per class.

DeepLabV3+ with a ResNet-50 encoder (random weights), target ``encoder.layer4``, 13 classes
at 512×512, HiResCAM, each class's target summing its logits over its mask (a ground-truth
style label map with all 13 classes, so no class is empty). Side by side in one run,
interleaved, median of ``--repeats``:

* ``explain_segmentation`` with ``strategy="loop"`` (one forward, a backward per class over
  the retained graph) and ``strategy="batched"`` (one batched vector-Jacobian product);
* 13 separate single-class camlens calls;
* 13 pytorch-grad-cam calls, where it is importable (``bench/.env-gradcam/bin/python``).

The maps of every approach are compared with the loop's (max abs difference).

    python bench/bench_segmentation.py [--repeats 3] [--size 512] [--classes 13]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import import_pytorch_grad_cam, machine_line, time_interleaved

import camlens
from camlens.models import deeplabv3plus_resnet50
from camlens.targets import SemanticSegmentationTarget


def label_map(classes: int, size: int) -> torch.Tensor:
    """``(1, size, size)`` labels: ``classes`` vertical bands, one per class."""
    columns = torch.arange(size) * classes // size
    return columns.expand(size, size).unsqueeze(0).clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--classes", type=int, default=13)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = deeplabv3plus_resnet50(num_classes=args.classes).eval()
    x = torch.randn(1, 3, args.size, args.size)
    labels = label_map(args.classes, args.size)
    class_ids = list(range(args.classes))
    masks = [(labels[0] == k).float().numpy() for k in class_ids]
    reference = import_pytorch_grad_cam()
    results: dict[str, np.ndarray] = {}

    def together(strategy: str) -> None:
        result = camlens.explain_segmentation(
            model,
            x,
            classes=class_ids,
            methods=["hirescam"],
            layers=[model.encoder.layer4],
            masks=labels,
            strategy=strategy,
        )
        results[strategy] = result["hirescam"][0].numpy()

    def separately() -> None:
        cam = camlens.HiResCAM(model, [model.encoder.layer4])
        results["separate"] = np.stack(
            [cam(x, [SemanticSegmentationTarget(k, masks[k])])[0] for k in class_ids]
        )

    def forward() -> None:
        with torch.no_grad():
            model(x)

    contenders = {
        "forward": forward,
        "camlens all classes (loop)": lambda: together("loop"),
        "camlens all classes (batched)": lambda: together("batched"),
        f"camlens {args.classes} calls": separately,
    }
    if reference is not None:
        theirs = reference.HiResCAM(model, [model.encoder.layer4])

        def pytorch_grad_cam() -> None:
            results["pgc"] = np.stack(
                [
                    theirs(input_tensor=x, targets=[SemanticSegmentationTarget(k, masks[k])])[0]
                    for k in class_ids
                ]
            )
            model.zero_grad(set_to_none=True)

        contenders[f"pytorch-grad-cam {args.classes} calls"] = pytorch_grad_cam
    times = time_interleaved(contenders, args.repeats)
    print(f"# {machine_line()}")
    print(
        f"# DeepLabV3+ ResNet-50, {args.size}×{args.size}, {args.classes} classes, HiResCAM "
        f"at encoder.layer4; median of {args.repeats} interleaved runs"
    )
    print("| approach | time (s) | × forward | speed-up vs pytorch-grad-cam | max abs diff |")
    print("|---|---|---|---|---|")
    slowest = times.get(f"pytorch-grad-cam {args.classes} calls")
    keys = {
        "camlens all classes (loop)": "loop",
        "camlens all classes (batched)": "batched",
        f"camlens {args.classes} calls": "separate",
        f"pytorch-grad-cam {args.classes} calls": "pgc",
    }
    for name, seconds in times.items():
        speedup = f"{slowest / seconds:.1f}×" if slowest else "–"
        diff = "–"
        if name in keys and keys[name] in results:
            diff = f"{float(np.abs(results[keys[name]] - results['loop']).max()):.1e}"
        print(f"| {name} | {seconds:.2f} | {seconds / times['forward']:.2f} | {speedup} | {diff} |")


if __name__ == "__main__":
    main()
