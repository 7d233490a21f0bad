"""Do camlens' familiar calls return pytorch-grad-cam 1.5.x's maps? (max abs difference)

Runs both libraries in one process on the same model, layer, input and targets, for every
shared method, and prints the largest absolute difference of the returned [0, 1] maps.
Needs the benchmark environment (``bash bench/setup_gradcam_env.sh``):

    bench/.env-gradcam/bin/python bench/compare_gradcam.py

EigenCAM, EigenGrad-CAM and ``eigen_smooth``: an SVD's sign is arbitrary; pytorch-grad-cam
keeps whatever LAPACK returns, camlens fixes it deterministically (the component agrees with
the plain channel sum), so those rows also give the difference with camlens' component negated
where that is closer, image by image ("up to sign"). Eigen methods with ``aug_smooth`` average
six components of independent signs in pytorch-grad-cam and are not comparable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import GRADCAM_CLASSES, Case, import_pytorch_grad_cam, make_case

import camlens
from camlens.models import tiny_resnet
from camlens.postprocess import familiar_maps
from camlens.targets import ClassifierOutputTarget

TOLERANCE = 1e-3


def _cases() -> list[tuple[str, Case, dict]]:
    torch.manual_seed(0)
    tiny = tiny_resnet(num_classes=5).eval()
    tiny_case = Case(
        "tiny",
        tiny,
        tiny.layer3,
        torch.randn(3, 3, 64, 64),
        [ClassifierOutputTarget(c) for c in (0, 3, 4)],
    )
    return [
        ("tiny_resnet layer3, 3 targets", tiny_case, {}),
        ("tiny_resnet layer3, eigen_smooth", tiny_case, {"eigen_smooth": True}),
        ("tiny_resnet layer3, aug_smooth", tiny_case, {"aug_smooth": True}),
        ("resnet50 layer4[-1] 224 b2", make_case("resnet50", 2, 224), {}),
        ("deeplabv3plus encoder.layer4 256 b1", make_case("deeplabv3plus", 1, 256), {}),
    ]


def main() -> int:
    reference = import_pytorch_grad_cam()
    if reference is None:
        print(
            "pytorch-grad-cam is not importable here; run bash bench/setup_gradcam_env.sh and "
            "use bench/.env-gradcam/bin/python"
        )
        return 2
    failures = 0
    print("| case | method | max abs diff | up to sign | ok |")
    print("|---|---|---|---|---|")
    for label, case, options in _cases():
        for method, class_name in GRADCAM_CLASSES.items():
            theirs_cam = getattr(reference, class_name)(case.model, [case.layer])
            theirs = theirs_cam(input_tensor=case.inputs, targets=case.targets, **options)
            case.model.zero_grad(set_to_none=True)
            ours_cam = camlens.Explainer(case.model, [case.layer], method=method)
            explanation = ours_cam.explain(case.inputs, case.targets, **options)
            diff = float(np.abs(explanation.numpy() - theirs).max())
            flipped = ""
            best = diff
            sign_free = method.startswith("eigen") or options.get("eigen_smooth", False)
            if sign_free and options.get("aug_smooth"):
                print(f"| {label} | {method} | {diff:.2e} | n/a: a sign per augmentation | - |")
                continue
            if sign_free:
                size = explanation.input_size
                negated = familiar_maps([-m for m in explanation.layer_maps], size)
                per_image = [
                    min(float(np.abs(a - t).max()), float(np.abs(b - t).max()))
                    for a, b, t in zip(explanation.numpy(), negated.numpy(), theirs, strict=True)
                ]
                best = max(per_image)
                flipped = f"{best:.2e}"
            ok = best <= TOLERANCE
            failures += not ok
            print(
                f"| {label} | {method} | {diff:.2e} | {flipped} | {'yes' if ok else 'NO'} |",
                flush=True,
            )
    print(f"\n{failures} case(s) above {TOLERANCE:g}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
