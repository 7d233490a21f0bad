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

A second table (``--more`` prints only that one) covers the methods added for issue 13 that
upstream also ships: KPCA_CAM and SegEigenCAM (maps, up to sign: upstream's sign comes from
scikit-learn's eigenvector convention and the paper's |min| > |max| flip), and
GuidedBackpropReLUModel (the raw guided gradients, image by image, since upstream returns
the first image only; upstream swaps the model's ReLUs, so it runs on a copy), and FinerCAM
on the classifiers (Grad-CAM base; the default similar classes, and alpha 0.6 against ranks
1–2 of class 3), RefineCAM (Grad-CAM++ at the layer before and the target layer) and SESS.
DeepFeatureFactorization is not compared number by number: scikit-learn's NMF (coordinate
descent, its own random start) and camlens's (seeded multiplicative updates) find different
factorisations of the same matrix; the row gives each one's relative reconstruction error.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import GRADCAM_CLASSES, NO_PEER, Case, import_pytorch_grad_cam, make_case

import camlens
import camlens.methods.factorization
import camlens.steps
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


def _up_to_sign(ours: np.ndarray, negated: np.ndarray, theirs: np.ndarray) -> float:
    """Largest per-image difference, each image compared with the closer of its two signs."""
    return max(
        min(float(np.abs(a - t).max()), float(np.abs(b - t).max()))
        for a, b, t in zip(ours, negated, theirs, strict=True)
    )


def _finer(reference, label: str, case: Case) -> int:
    """FinerCAM rows (Grad-CAM base, targets picked by Finer-CAM); returns the failures."""
    failures = 0
    for kwargs in ({}, {"alpha": 0.6, "comparison_categories": [1, 2], "target_idx": 3}):
        name = f"FinerCAM {kwargs}" if kwargs else "FinerCAM"
        theirs = reference.FinerCAM(case.model, [case.layer])(case.inputs, **kwargs)
        case.model.zero_grad(set_to_none=True)
        ours = camlens.FinerCAM(case.model, [case.layer])(case.inputs, **kwargs)
        diff = float(np.abs(ours - theirs).max())
        name += "" if ours.any() else " (all-zero maps)"
        ok = diff <= TOLERANCE
        failures += not ok
        print(f"| {label} | {name} | {diff:.2e} | | {'yes' if ok else 'NO'} |", flush=True)
    return failures


def _wrappers(reference, label: str, case: Case) -> int:
    """RefineCAM (Grad-CAM++ base, two layers) and SESS (Grad-CAM base, three scales) rows."""
    model = case.model
    earlier = model.layer2 if case.name == "tiny" else model.layer3[-1]
    strided = {"num_scales": 2, "pre_filter_ratio": 0.5, "pool": "max",
               "step_size": case.inputs.shape[-1] // 2}  # fmt: skip
    # (name, the explainer built from a library: pytorch_grad_cam or camlens)
    rows = [
        ("RefineCAM (2 layers)", lambda lib: lib.RefineCAM(model, [earlier, case.layer])),
        ("SESS (3 scales)", lambda lib: lib.SESS(model, [case.layer], num_scales=3)),
        (
            "SESS (2 scales, stride ½, pre-filter 0.5, max)",
            lambda lib: lib.SESS(model, [case.layer], **strided),
        ),
    ]
    failures = 0
    for name, build in rows:
        # SESS explains each image's top class: ResNet-50's random class 281 gives all-zero
        # Grad-CAM maps, which would compare nothing
        targets = None if name.startswith("SESS") else case.targets
        theirs = build(reference)(case.inputs, targets)
        model.zero_grad(set_to_none=True)
        mine = build(camlens)(case.inputs, targets)
        diff = float(np.abs(mine - theirs).max())
        name += "" if mine.any() else " (all-zero maps)"
        ok = diff <= TOLERANCE
        failures += not ok
        print(f"| {label} | {name} | {diff:.2e} | | {'yes' if ok else 'NO'} |", flush=True)
    return failures


def _more(reference, cases: list[tuple[str, Case, dict]]) -> int:
    """The table of the issue-13 methods; returns the number of rows above the tolerance."""
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import dff

    failures = 0
    print("\n| case | method | max abs diff | up to sign | ok |")
    print("|---|---|---|---|---|")
    for label, case, options in cases:
        if options:
            continue
        for method, class_name, kwargs in [
            ("kpcacam", "KPCA_CAM", {}),
            ("kpcacam", "KPCA_CAM", {"kernel": "rbf"}),
            ("segeigencam", "SegEigenCAM", {}),
        ]:
            name = f"{method} {kwargs}" if kwargs else method
            try:
                theirs = getattr(reference, class_name)(case.model, [case.layer], **kwargs)(
                    input_tensor=case.inputs, targets=case.targets
                )
            except Exception as error:  # reported in the table
                failed = f"upstream fails: {type(error).__name__}: {error}"
                print(f"| {label} | {name} | {failed} | | - |")
                continue
            ours = camlens.Explainer(case.model, [case.layer], method, options=kwargs)
            explanation = ours.explain(case.inputs, case.targets)
            negated = familiar_maps([-m for m in explanation.layer_maps], explanation.input_size)
            diff = float(np.abs(explanation.numpy() - theirs).max())
            best = _up_to_sign(explanation.numpy(), negated.numpy(), theirs)
            ok = best <= TOLERANCE
            failures += not ok
            print(f"| {label} | {name} | {diff:.2e} | {best:.2e} | {'yes' if ok else 'NO'} |")
        if isinstance(case.targets[0], ClassifierOutputTarget):
            failures += _finer(reference, label, case)
            failures += _wrappers(reference, label, case)
        guided = camlens.guided_backprop(case.model, case.inputs, case.targets)
        worst, scale = 0.0, 0.0
        for image in range(case.inputs.shape[0]):
            if not isinstance(case.targets[image], ClassifierOutputTarget):
                break  # a segmentation target: upstream takes a class index only
            category = case.targets[image].category
            upstream = reference.GuidedBackpropReLUModel(copy.deepcopy(case.model), device="cpu")
            theirs = upstream(case.inputs[image : image + 1].clone(), target_category=category)
            ours = guided[image].permute(1, 2, 0).cpu().numpy()
            worst = max(worst, float(np.abs(ours - theirs).max()))
            scale = max(scale, float(np.abs(theirs).max()))
        else:
            ok = worst <= TOLERANCE * max(scale, 1.0)
            failures += not ok
            print(
                f"| {label} | guided backprop (max abs gradient {scale:.2e}) | {worst:.2e} | "
                f"| {'yes' if ok else 'NO'} |"
            )
        with torch.no_grad():
            _, (activation,) = camlens.steps.forward_capture(
                case.model, [case.layer], case.inputs, ["layer"], track_gradients=False
            )
        activations = activation.double()
        matrix = activations.transpose(0, 1).reshape(activations.shape[1], -1)
        shifted = matrix - matrix.min(dim=1, keepdim=True).values
        found = camlens.methods.factorization.factorize_activations(activations, 5)
        offset = matrix.min(dim=1, keepdim=True).values
        rebuilt = (found.concepts - offset) @ found.maps.transpose(0, 1).reshape(5, -1)
        ours_error = float((shifted - rebuilt).norm() / shifted.norm())
        concepts, explanations = dff(activation.cpu().numpy().copy(), n_components=5)
        theirs_rebuilt = (concepts - offset.cpu().numpy()) @ explanations.transpose(
            (1, 0, 2, 3)
        ).reshape(5, -1)
        theirs_error = float(np.linalg.norm(shifted.cpu().numpy() - theirs_rebuilt))
        theirs_error /= float(shifted.norm())
        print(
            f"| {label} | DFF, 5 concepts: relative reconstruction error | camlens "
            f"{ours_error:.3f}, pytorch-grad-cam {theirs_error:.3f} | | n/a |",
            flush=True,
        )
    return failures


def main() -> int:
    reference = import_pytorch_grad_cam()
    if reference is None:
        print(NO_PEER)
        return 2
    failures = 0
    cases = _cases()
    if "--more" in sys.argv:
        failures = _more(reference, cases)
        print(f"\n{failures} case(s) above {TOLERANCE:g}")
        return 1 if failures else 0
    print("| case | method | max abs diff | up to sign | ok |")
    print("|---|---|---|---|---|")
    for label, case, options in cases:
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
    failures += _more(reference, cases)
    print(f"\n{failures} case(s) above {TOLERANCE:g}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
