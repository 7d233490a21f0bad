"""How fast is camlens' familiar call against pytorch-grad-cam 1.5.x's, method by method?

For every method both libraries ship, the familiar call of each (``Method(model,
target_layers)(input_tensor, targets)``, each library with its own target classes) runs on
the same model and input; the two calls are timed interleaved (``common.time_interleaved``,
order rotating each repeat) and the table gives the medians and camlens / upstream.
Needs the benchmark environment (``bash bench/setup_gradcam_env.sh``):

    bench/.env-gradcam/bin/python bench/speed_gradcam.py [--repeats 3] [--only GradCAM,SESS]

Case: ResNet-50 (``camlens.models.resnet50``, random weights, seed 0), batch 4 at 224²,
``layer4[-1]``, class 281 (``bench/common.make_case``); SegEigenCAM on DeepLabV3+-R50
(``camlens.models.deeplabv3plus_resnet50``) at 256², batch 4, ``encoder.layer4``, a mask
target. Each timed call builds its CAM object and leaves it (``with`` where the class has it,
otherwise its hooks are released by hand), so that no library's hooks stay on the model
while the other one runs. Where a row departs from the plain call, the table says so:

* GuidedBackpropReLUModel: upstream explains the first image only, so its time is four
  one-image calls (on a deep copy of the model: it swaps the ReLUs); camlens explains the
  batch in one call.
* AblationCAM: ``ratio_channels_to_ablate=1/64`` (32 of 2,048 channels) in both; the whole
  layer takes upstream minutes per image (see "Perturbation methods" in RESULTS.md).
* ScoreCAM: upstream has no channel subset, so the target layer is ``maxpool`` (the stem's
  64 channels at 56²): 256 masked forward passes of the whole model per call in both.
* SESS: ``num_scales=3`` (default 12); FinerCAM and SESS explain each image's top class
  (``targets=None``); RefineCAM uses ``layer3[-1]`` and ``layer4[-1]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # upstream's per-chunk progress bars

from common import NO_PEER, Case, import_pytorch_grad_cam, machine_line, make_case, time_interleaved

import camlens

#: Methods whose familiar call is ``Class(model, [layer])(input_tensor=x, targets=targets)``
#: under the same class name in both libraries.
PLAIN = [
    "GradCAM",
    "HiResCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "EigenCAM",
    "EigenGradCAM",
    "FullGrad",
    "RandomCAM",
    "FEM",
    "ShapleyCAM",
    "KPCA_CAM",
]


@dataclass
class Row:
    """One line of the table: two zero-argument calls and how to time them."""

    method: str
    ours: Callable[[], object]
    theirs: Callable[[], object]
    note: str = ""
    warmup: int = 1


def _release(cam: Any) -> None:
    """Remove an upstream CAM's hooks (also those of the CAMs it wraps)."""
    hooks = getattr(cam, "activations_and_grads", None)
    if hooks is not None:
        hooks.release()
    for inner in [getattr(cam, "base_cam", None), *getattr(cam, "base_cam_per_layer", [])]:
        if inner is not None:
            _release(inner)


def _upstream(make: Callable[[], Any], **call: Any) -> Callable[[], object]:
    """A call of an upstream CAM built for the call and released after it."""

    def run() -> object:
        cam = make()
        try:
            return cam(**call)
        finally:
            _release(cam)

    return run


def _ours(make: Callable[[], Any], **call: Any) -> Callable[[], object]:
    """A call of a camlens familiar CAM inside its ``with`` block."""

    def run() -> object:
        with make() as cam:
            return cam(**call)

    return run


def _upstream_targets(reference: ModuleType, case: Case) -> list[Any]:
    """The case's targets as upstream's own target classes."""
    from pytorch_grad_cam.utils import model_targets

    if case.name == "resnet50":
        return [model_targets.ClassifierOutputTarget(t.category) for t in case.targets]
    return [
        model_targets.SemanticSegmentationTarget(t.category, t.mask.cpu().numpy())
        for t in case.targets
    ]


def _rows(reference: ModuleType, resnet: Case, segmenter: Case) -> list[Row]:
    """Every row of the table (see the module docstring)."""
    model, layer, x = resnet.model, resnet.layer, resnet.inputs
    theirs_targets = _upstream_targets(reference, resnet)
    rows = []
    for name in PLAIN:
        ours_class, theirs_class = getattr(camlens, name), getattr(reference, name)
        rows.append(
            Row(
                name,
                _ours(
                    lambda c=ours_class: c(model, [layer]), input_tensor=x, targets=resnet.targets
                ),
                _upstream(
                    lambda c=theirs_class: c(model, [layer]), input_tensor=x, targets=theirs_targets
                ),
            )
        )
    seg_model, seg_layer, seg_x = segmenter.model, segmenter.layer, segmenter.inputs
    rows.append(
        Row(
            "SegEigenCAM",
            _ours(
                lambda: camlens.SegEigenCAM(seg_model, [seg_layer]),
                input_tensor=seg_x,
                targets=segmenter.targets,
            ),
            _upstream(
                lambda: reference.SegEigenCAM(seg_model, [seg_layer]),
                input_tensor=seg_x,
                targets=_upstream_targets(reference, segmenter),
            ),
            "DeepLabV3+-R50 256², batch 4, `encoder.layer4`, mask target",
        )
    )
    rows.append(
        Row(
            "FinerCAM",
            _ours(lambda: camlens.FinerCAM(model, [layer]), input_tensor=x),
            _upstream(lambda: reference.FinerCAM(model, [layer]), input_tensor=x),
            "Grad-CAM base, default similar classes, top class",
        )
    )
    earlier = model.layer3[-1]
    rows.append(
        Row(
            "RefineCAM",
            _ours(
                lambda: camlens.RefineCAM(model, [earlier, layer]),
                input_tensor=x,
                targets=resnet.targets,
            ),
            _upstream(
                lambda: reference.RefineCAM(model, [earlier, layer]),
                input_tensor=x,
                targets=theirs_targets,
            ),
            "Grad-CAM++ base, `layer3[-1]` + `layer4[-1]`",
        )
    )
    rows.append(_guided(reference, resnet))
    rows.append(
        Row(
            "DeepFeatureFactorization",
            _ours(lambda: camlens.DeepFeatureFactorization(model, layer), input_tensor=x),
            _upstream(lambda: reference.DeepFeatureFactorization(model, layer), input_tensor=x),
            "16 concepts (default); camlens: multiplicative updates, upstream: scikit-learn NMF",
        )
    )
    rows.append(
        Row(
            "SESS",
            _ours(lambda: camlens.SESS(model, [layer], num_scales=3), input_tensor=x),
            _upstream(lambda: reference.SESS(model, [layer], num_scales=3), input_tensor=x),
            "Grad-CAM base, `num_scales=3`, top class",
            warmup=0,
        )
    )
    rows.append(_score(reference, resnet, theirs_targets))
    rows.append(
        Row(
            "AblationCAM",
            _ours(
                lambda: camlens.AblationCAM(model, [layer], ratio_channels_to_ablate=1 / 64),
                input_tensor=x,
                targets=resnet.targets,
            ),
            _upstream(
                lambda: reference.AblationCAM(model, [layer], ratio_channels_to_ablate=1 / 64),
                input_tensor=x,
                targets=theirs_targets,
            ),
            "`ratio_channels_to_ablate=1/64`: 32 of 2,048 channels per image",
            warmup=0,
        )
    )
    return rows


def _guided(reference: ModuleType, case: Case) -> Row:
    """Guided backpropagation: camlens' batch call against upstream's per-image calls."""
    model, x = case.model, case.inputs
    categories = [t.category for t in case.targets]
    copied = copy.deepcopy(model)  # upstream swaps the ReLUs of the model it is given

    def ours() -> object:
        return camlens.GuidedBackpropReLUModel(model)(x, target_category=categories)

    def theirs() -> object:
        upstream = reference.GuidedBackpropReLUModel(copied, device="cpu")
        return [
            upstream(x[i : i + 1].clone(), target_category=categories[i]) for i in range(x.shape[0])
        ]

    return Row(
        "GuidedBackpropReLUModel",
        ours,
        theirs,
        "camlens: one batch call; upstream: 4 one-image calls (it explains the first image only)",
    )


def _score(reference: ModuleType, case: Case, theirs_targets: list[Any]) -> Row:
    """ScoreCAM at ``maxpool`` (64 channels), each library's default chunking."""
    model, x = case.model, case.inputs
    stem = model.maxpool
    return Row(
        "ScoreCAM",
        _ours(lambda: camlens.ScoreCAM(model, [stem]), input_tensor=x, targets=case.targets),
        _upstream(
            lambda: reference.ScoreCAM(model, [stem]), input_tensor=x, targets=theirs_targets
        ),
        "target layer `maxpool` (64 channels at 56²): 4 × 64 masked forward passes",
        warmup=0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per library")
    parser.add_argument("--only", default="", help="comma-separated method names")
    args = parser.parse_args()
    reference = import_pytorch_grad_cam()
    if reference is None:
        print(NO_PEER)
        return 2
    print(machine_line(), f"| load average {os.getloadavg()[0]:.2f}")
    rows = _rows(reference, make_case("resnet50", 4, 224), make_case("deeplabv3plus", 4, 256))
    wanted = {name for name in args.only.split(",") if name}
    print("\n| method | camlens (s) | pytorch-grad-cam (s) | ratio camlens / upstream | note |")
    print("|---|---|---|---|---|")
    for row in rows:
        if wanted and row.method not in wanted:
            continue
        try:
            times = time_interleaved(
                {"camlens": row.ours, "upstream": row.theirs}, args.repeats, warmup=row.warmup
            )
        except Exception as error:  # reported in the table; the other rows still run
            print(f"| {row.method} | | | | fails: {type(error).__name__}: {error} |", flush=True)
            continue
        ratio = times["camlens"] / times["upstream"]
        print(
            f"| {row.method} | {times['camlens']:.3f} | {times['upstream']:.3f} | {ratio:.2f} "
            f"| {row.note} |",
            flush=True,
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
