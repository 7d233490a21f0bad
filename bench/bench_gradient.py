"""Speed of the gradient CAM family, as ratios to a plain ``torch.no_grad()`` forward pass.

For each case (ResNet-50 layout at 224×224, batch 1 and 8; DeepLabV3+ with a ResNet-50
encoder at 512×512), every method's median time through the familiar call
``Method(model, target_layers)(input_tensor, targets)`` is divided by the median time of a
plain forward pass of the same model and input, measured in the same run. Where
pytorch-grad-cam is importable (run with ``bench/.env-gradcam/bin/python``, see
``bench/setup_gradcam_env.sh``) its time is measured side by side, interleaved.

    python bench/bench_gradient.py [--repeats 5] [--methods gradcam,hirescam] [--cases ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    GRADCAM_CLASSES,
    import_pytorch_grad_cam,
    machine_line,
    make_case,
    time_interleaved,
)

import camlens

CASES = {
    "resnet50-224-b1": ("resnet50", 1, 224),
    "resnet50-224-b8": ("resnet50", 8, 224),
    "deeplabv3plus-512-b1": ("deeplabv3plus", 1, 512),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default=",".join(GRADCAM_CLASSES))
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    reference = import_pytorch_grad_cam()
    print(f"# {machine_line()}")
    print(f"# pytorch-grad-cam: {'installed' if reference else 'not installed'}")
    print(f"# median of {args.repeats} interleaved runs; ratio = time / plain no_grad forward")
    header = "| case | method | forward (ms) | camlens (ms) | camlens ratio |"
    if reference is not None:
        header += " pytorch-grad-cam (ms) | pgc ratio | camlens / pgc |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for case_name in args.cases.split(","):
        model_name, batch, size = CASES[case_name]
        case = make_case(model_name, batch, size)

        def forward(case=case) -> None:
            with torch.no_grad():
                case.model(case.inputs)

        for method in methods:
            ours = camlens.Explainer(case.model, [case.layer], method=method)
            contenders = {
                "forward": forward,
                "camlens": lambda ours=ours, case=case: ours(case.inputs, case.targets),
            }
            if reference is not None:
                theirs = getattr(reference, GRADCAM_CLASSES[method])(case.model, [case.layer])
                contenders["pgc"] = lambda theirs=theirs, case=case: theirs(
                    input_tensor=case.inputs, targets=case.targets
                )
            times = time_interleaved(contenders, args.repeats)
            row = (
                f"| {case_name} | {method} | {times['forward'] * 1e3:.1f} | "
                f"{times['camlens'] * 1e3:.1f} | {times['camlens'] / times['forward']:.2f}× |"
            )
            if reference is not None:
                row += (
                    f" {times['pgc'] * 1e3:.1f} | {times['pgc'] / times['forward']:.2f}× | "
                    f"{times['camlens'] / times['pgc']:.2f} |"
                )
            print(row, flush=True)
            case.model.zero_grad(set_to_none=True)  # pytorch-grad-cam fills .grad


if __name__ == "__main__":
    main()
