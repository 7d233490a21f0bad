"""Do two checkouts of camlens give the same maps? Run this script once per checkout, then
compare the two files it wrote.

It explains fixed seeded inputs with every method (a tiny ResNet, batch 2, two targets;
``aug_smooth``; ``explain_segmentation`` with every method but CAM, loop and batched; mean
reduction with a box region) and saves every final map, raw layer map, score and mass in mask
to an ``.npz``. Used to show that a refactor changed no number:

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old/src python bench/compare_versions.py /tmp/old.npz
    python bench/compare_versions.py /tmp/new.npz
    python bench/compare_versions.py --compare /tmp/old.npz /tmp/new.npz

Works with checkouts before and after the one-engine refactor (``BaseCAM(method=)`` /
``Explainer``, ``method_options`` / ``options``).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

import camlens
from camlens.models import tiny_deeplabv3plus, tiny_resnet


def _explainer(model, layer, method):
    if hasattr(camlens, "Explainer"):
        return camlens.Explainer(model, layer, method)
    return camlens.BaseCAM(model, layer, method=method)


def record(path: str) -> None:
    """Explain the fixed cases and save every array to ``path``."""
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    arrays: dict[str, np.ndarray] = {}
    resnet = tiny_resnet(num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    common = [m for m in ("gradcam", "hirescam", "gradcam_elementwise", "gradcam++", "xgradcam",
              "layercam", "cam", "eigencam", "eigengradcam", "scorecam", "ablationcam",
              "fullgrad") if m in camlens.available_methods()]  # fmt: skip
    for method in common:
        explanation = _explainer(resnet, "layer4", method).explain(x, [1, 3])
        arrays[f"cls-{method}-maps"] = explanation.maps.numpy()
        for index, layer_map in enumerate(explanation.layer_maps):
            arrays[f"cls-{method}-l{index}"] = layer_map.numpy()
        arrays[f"cls-{method}-scores"] = explanation.scores.numpy()
    arrays["aug"] = _explainer(resnet, "layer4", "gradcam").explain(x, [2], aug_smooth=True).maps
    segmenter = tiny_deeplabv3plus(num_classes=4).eval()
    inputs = torch.randn(2, 3, 64, 64)
    methods = [m for m in common if m != "cam"]
    keyword = "options" if hasattr(camlens, "Explainer") else "method_options"
    for strategy in ("loop", "batched"):
        result = camlens.explain_segmentation(
            segmenter, inputs, classes="all", methods=methods, layers="encoder.layer4",
            strategy=strategy, **{keyword: {"scorecam": {"batch_size": 16}}},
        )  # fmt: skip
        for method in methods:
            arrays[f"seg-{strategy}-{method}"] = result.maps[method].numpy()
            for index, layer_map in enumerate(result.layer_maps[method]):
                arrays[f"seg-{strategy}-{method}-l{index}"] = layer_map.numpy()
            arrays[f"seg-{strategy}-{method}-mass"] = result.mass_in_mask[method].numpy()
        arrays[f"seg-{strategy}-scores"] = result.scores.numpy()
    result = camlens.explain_segmentation(
        segmenter, inputs, classes=[1, 2], methods=["hirescam", "ablationcam"],
        layers="encoder.layer4", reduction="mean", region=(4, 40, 4, 40),
    )  # fmt: skip
    for method in result.methods:
        arrays[f"segmean-{method}"] = result.maps[method].numpy()
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    print(f"wrote {len(arrays)} arrays to {path}")


def compare(first: str, second: str) -> None:
    """Print which arrays differ, and by how much."""
    a, b = np.load(first), np.load(second)
    if set(a) != set(b):
        print("arrays only in one file:", sorted(set(a) ^ set(b)))
    shared = sorted(set(a) & set(b))
    differing = [
        (key, float(np.nanmax(np.abs(a[key] - b[key]))))
        for key in shared
        if not np.array_equal(a[key], b[key], equal_nan=True)
    ]
    print(f"{len(shared)} arrays compared; not bit-identical: {len(differing)}")
    for key, difference in differing:
        print(f"  {key}: max abs difference {difference:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="the .npz to write, or two to --compare")
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    if args.compare:
        compare(*args.files)
    else:
        record(args.files[0])


if __name__ == "__main__":
    main()
