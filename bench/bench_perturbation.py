"""Perturbation methods (AblationCAM, ScoreCAM) side by side with pytorch-grad-cam: time, peak
memory and agreement of the maps.

Every (case, library) runs in a fresh subprocess, so that its peak memory can be measured
as the growth of the process's peak resident set (``VmHWM``, reset after the model, the input
and a warm-up forward pass exist) over its resident set before the call. Each worker saves
its final maps; the parent compares them (max |difference| of the [0, 1] maps).

Cases (random weights, seed 0, batch 1; ``bench/common.py``):

* ``ablation-resnet50-224``: ResNet-50, 224×224, target ``layer4[-1]``, all 2048 channels
  (the predicted class, whose logit is positive: pytorch-grad-cam divides by the signed
  score).
* ``ablation-deeplab-512`` / ``-1024``: DeepLabV3+ (ResNet-50 encoder), target
  ``encoder.layer4``, the dominant predicted class over its mask, a reduced number of
  channels (``--deeplab-channels``, ``--deeplab-1024-channels``: pytorch-grad-cam ablates
  ``2·int(2048·r)`` channels for ``ratio_channels_to_ablate=r``, camlens the ``ratio·2048``
  strongest; the channel sets differ, so only time and memory are compared;
  pytorch-grad-cam runs batches of 8 there). camlens runs once more with
  ``--large-budget`` MiB: with the default 512 MiB a 1024² DeepLabV3+ gets one ablated copy
  per forward pass, so nothing of the shared prefix is amortised.
* ``scorecam-resnet50-224``: ResNet-50, 224×224, target ``--scorecam-layer``, equal batch
  size (``--scorecam-batch``) for both libraries. Both runs take equally long, so their
  times are taken from one more process that alternates the two libraries ``--rounds``
  times (medians), so that load from other processes hits both alike; memory and maps come
  from the fresh processes. Also camlens' ``top_k`` speed-up against its exact map.
* ``scorecam-deeplab-1024``: camlens only (pytorch-grad-cam would materialise
  ``2048 × 3 × 1024 × 1024`` float32 masked inputs, 24 GiB, plus 8 GiB of upsampled
  activations): peak memory with the default memory budget on ``--memory-channels``
  channels (top_k), which already exercises the chunking.
* ``speedups-demo-segmenter``: camlens only, on trained weights (the demo's DeepLabV3+-style
  tissue segmenter, 128 channels at ``encoder.layer4``, 8 validation tiles, every present
  class at once): agreement of ScoreCAM ``top_k`` and AblationCAM ``ratio`` with the exact
  maps, over (tile, class) pairs whose mask is not empty.

    bench/.env-gradcam/bin/python bench/bench_perturbation.py [--cases a,b] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import import_pytorch_grad_cam, machine_line, make_case

import camlens
from camlens.layers import resolve_layers

CASES = {
    "ablation-resnet50-224": ("ablation", "resnet50", 224),
    "ablation-deeplab-512": ("ablation", "deeplabv3plus", 512),
    "ablation-deeplab-1024": ("ablation", "deeplabv3plus", 1024),
    "scorecam-resnet50-224": ("scorecam", "resnet50", 224),
    "scorecam-deeplab-1024": ("scorecam", "deeplabv3plus", 1024),
    "speedups-demo-segmenter": ("speedups", "demo-segmenter", 128),
}
CAMLENS_ONLY = {"scorecam-deeplab-1024", "speedups-demo-segmenter"}


def _status(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _targets(case: Any, library: str, category: int | None) -> list[Any]:
    """The case's targets, as the library's own target classes."""
    if library == "camlens":
        if category is not None:
            return [camlens.targets.ClassifierOutputTarget(category)]
        return case.targets
    from pytorch_grad_cam.utils.model_targets import (
        ClassifierOutputTarget,
        SemanticSegmentationTarget,
    )

    if category is not None:
        return [ClassifierOutputTarget(category)]
    target = case.targets[0]
    return [SemanticSegmentationTarget(target.category, target.mask.numpy())]


def demo_speedups(args: argparse.Namespace) -> dict[str, Any]:
    """Agreement of the speed-up options with the exact maps on the trained demo segmenter."""
    from camlens.demo.models import load_demo_model
    from camlens.demo.synthetic import make_dataset
    from camlens.demo.train import normalise

    model = load_demo_model("segmenter")
    images, _ = make_dataset(1001, 8, 128)
    x = normalise(images)
    variants = {
        "scorecam": [("exact", {})] + [(f"top_k={k}", {"top_k": k}) for k in args.demo_top_k],
        "ablationcam": [("exact", {})] + [(f"ratio={r}", {"ratio": r}) for r in args.ratios],
    }
    info: dict[str, Any] = {"case": args.case, "library": "camlens", "variants": {}}
    for method, settings in variants.items():
        exact = None
        for name, options in settings:
            start = time.perf_counter()
            result = camlens.explain_segmentation(
                model,
                x,
                classes="present",
                methods=[method],
                layers="encoder.layer4",
                options={method: options},
            )
            seconds = time.perf_counter() - start
            maps = result.maps[method].numpy()
            present = result.masks.flatten(2).sum(-1).numpy() > 0
            if exact is None:
                exact = maps
                info[f"{method} exact seconds"] = seconds
                continue
            pairs = [_agreement(exact[i, k], maps[i, k]) for i, k in np.argwhere(present)]
            correlations = np.array([p["pearson"] for p in pairs])
            info["variants"][f"{method} {name}"] = {
                "seconds": seconds,
                "exact_seconds": info[f"{method} exact seconds"],
                "max_abs_diff": max(p["max_abs_diff"] for p in pairs),
                "pearson": float(np.nanmedian(correlations)),
                "pearson_min": float(np.nanmin(correlations)),
                "share_above_0.9": float(np.mean(np.nan_to_num(correlations, nan=-1) > 0.9)),
                "pairs": len(pairs),
            }
    return info


def _contender(args: argparse.Namespace, library: str, case: Any, layer: Any, targets: Any):
    """``(run, cam)``: a call that returns the library's final maps, and its explainer."""
    kind, _model_name, size = CASES[args.case]
    deeplab_channels = args.deeplab_channels if size == 512 else args.deeplab_1024_channels
    if library == "camlens":
        options: dict[str, Any] = {}
        if args.case.startswith("ablation-deeplab"):
            options["ratio"] = deeplab_channels / 2048
        if args.case == "scorecam-resnet50-224":
            options["batch_size"] = args.scorecam_batch
        if args.case == "scorecam-deeplab-1024":
            options["top_k"] = args.memory_channels
        if args.budget is not None:
            options["memory_budget_mb"] = args.budget
        method = "ablationcam" if kind == "ablation" else "scorecam"
        cam = camlens.Explainer(case.model, [layer], method=method, options=options)
        return (lambda: cam(case.inputs, targets)), cam
    reference = import_pytorch_grad_cam()
    assert reference is not None, "run with bench/.env-gradcam/bin/python"
    if kind == "ablation":
        ratio, batch_size = 1.0, 32  # pytorch-grad-cam's default batch size
        if args.case.startswith("ablation-deeplab"):
            # it ablates the int(2048·r) highest- and as many lowest-scored channels
            ratio = (deeplab_channels // 2 + 0.5) / 2048
            batch_size = 8  # 32 DeepLabV3+ copies at 1024² would not fit in memory
        theirs = reference.AblationCAM(
            case.model, [layer], ratio_channels_to_ablate=ratio, batch_size=batch_size
        )
    else:
        theirs = reference.ScoreCAM(case.model, [layer])
        theirs.batch_size = args.scorecam_batch
    return (lambda: theirs(input_tensor=case.inputs, targets=targets)), theirs


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run one (case, library) and return its measurements."""
    if args.case == "speedups-demo-segmenter":
        return demo_speedups(args)
    _kind, model_name, size = CASES[args.case]
    case = make_case(model_name, 1, size)
    layer = case.layer
    if args.case.startswith("scorecam-resnet50"):
        layer = resolve_layers(case.model, args.scorecam_layer)[0]
    with torch.no_grad():
        output = case.model(case.inputs)  # warm-up forward pass
    category = int(output.argmax()) if model_name == "resnet50" else None
    info: dict[str, Any] = {"case": args.case, "library": args.library}
    if args.library == "interleaved":
        # both libraries in one process, alternating, so that load drift hits both alike
        runs = {
            library: _contender(args, library, case, layer, _targets(case, library, category))[0]
            for library in ("camlens", "pgc")
        }
        info["seconds"] = {library: [] for library in runs}
        for _ in range(args.rounds):
            for library, run in runs.items():
                start = time.perf_counter()
                run()
                info["seconds"][library].append(time.perf_counter() - start)
        return info
    targets = _targets(case, args.library, category)
    run, cam = _contender(args, args.library, case, layer, targets)
    # only the fast case is repeated (median); the others run once
    repeats = (
        args.repeats if (args.library, args.case) == ("camlens", "ablation-resnet50-224") else 1
    )
    _reset_peak()
    baseline = _status("VmRSS")
    seconds = []
    maps = None
    for _ in range(repeats):
        start = time.perf_counter()
        maps = run()
        seconds.append(time.perf_counter() - start)
    info["peak_growth_mb"] = (_status("VmHWM") - baseline) / 2**20
    info["seconds"] = seconds
    assert maps is not None
    np.save(Path(args.out) / f"{args.case}-{args.library}.npy", maps)
    if args.library == "camlens" and args.budget is None:
        variants: list[tuple[str, str, Any]] = []
        if args.case == "scorecam-resnet50-224":
            variants = [(f"top_k={k}", "top_k", k) for k in args.top_k]
        if args.case == "ablation-resnet50-224":
            variants = [(f"ratio={r}", "ratio", r) for r in args.ratios]
        info["variants"] = {}
        for name, option, value in variants:
            cam.method_options[option] = value
            start = time.perf_counter()
            variant = cam(case.inputs, targets)
            info["variants"][name] = _agreement(maps, variant)
            info["variants"][name]["seconds"] = time.perf_counter() - start
    return info


def _agreement(exact: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Max |difference| and Pearson correlation of two sets of [0, 1] maps (NaN where a map
    is constant, e.g. all zero after the ReLU)."""
    difference = float(np.abs(exact - other).max())
    if exact.std() == 0 or other.std() == 0:
        correlation = 1.0 if difference < 1e-6 else float("nan")
    else:
        correlation = float(np.corrcoef(exact.ravel(), other.ravel())[0, 1])
    return {"max_abs_diff": difference, "pearson": correlation}


def _spawn(
    case: str, library: str, args: argparse.Namespace, out: str, budget: float | None = None
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        library,
        "--case",
        case,
        "--out",
        out,
        "--repeats",
        str(args.repeats),
        "--deeplab-channels",
        str(args.deeplab_channels),
        "--deeplab-1024-channels",
        str(args.deeplab_1024_channels),
        "--scorecam-layer",
        args.scorecam_layer,
        "--scorecam-batch",
        str(args.scorecam_batch),
        "--memory-channels",
        str(args.memory_channels),
        "--top-k",
        ",".join(map(str, args.top_k)),
        "--ratios",
        ",".join(map(str, args.ratios)),
        "--demo-top-k",
        ",".join(map(str, args.demo_top_k)),
        "--rounds",
        str(args.rounds),
    ]
    if budget is not None:
        command += ["--budget", str(budget)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{case}/{library} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=3, help="camlens timing repeats")
    parser.add_argument("--deeplab-channels", type=int, default=32, help="ablated at 512²")
    parser.add_argument("--deeplab-1024-channels", type=int, default=8, help="ablated at 1024²")
    parser.add_argument("--scorecam-layer", default="layer1[-1]")
    parser.add_argument("--scorecam-batch", type=int, default=16)
    parser.add_argument("--memory-channels", type=int, default=4)
    parser.add_argument("--top-k", type=lambda s: [int(v) for v in s.split(",")], default=[64, 16])
    parser.add_argument(
        "--ratios", type=lambda s: [float(v) for v in s.split(",")], default=[0.25, 0.1]
    )
    parser.add_argument(
        "--demo-top-k", type=lambda s: [int(v) for v in s.split(",")], default=[32, 16]
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved ScoreCAM timing rounds")
    parser.add_argument(
        "--large-budget",
        type=float,
        default=2048.0,
        help="AblationCAM on DeepLabV3+ again with this memory budget (MiB); 0: skip",
    )
    parser.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--worker", choices=["camlens", "pgc", "interleaved"], help=argparse.SUPPRESS
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.library = args.worker
        print(json.dumps(worker(args)))
        return
    have_reference = import_pytorch_grad_cam() is not None
    print(f"# {machine_line()}")
    print(f"# pytorch-grad-cam: {'installed' if have_reference else 'not installed'}")
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as out:
        for case in args.cases.split(","):
            libraries = ["camlens"]
            if have_reference and case not in CAMLENS_ONLY:
                libraries.append("pgc")
            results[case] = {}
            for library in libraries:
                results[case][library] = _spawn(case, library, args, out)
                print(f"# done {case} / {library}", file=sys.stderr, flush=True)
            if case.startswith("ablation-deeplab") and args.large_budget:
                results[case]["camlens-large"] = _spawn(
                    case, "camlens", args, out, budget=args.large_budget
                )
            if case == "scorecam-resnet50-224" and "pgc" in libraries and args.rounds:
                results[case]["interleaved"] = _spawn(case, "interleaved", args, out)
                print(f"# done {case} / interleaved", file=sys.stderr, flush=True)
            if "pgc" in results[case] and not case.startswith("ablation-deeplab"):
                ours = np.load(Path(out) / f"{case}-camlens.npy")
                theirs = np.load(Path(out) / f"{case}-pgc.npy")
                results[case]["diff"] = _agreement(theirs, ours)
    print()
    print(
        "| case | camlens (s) | pytorch-grad-cam (s) | speed-up | camlens peak (MiB) | "
        "pgc peak (MiB) | max abs diff of maps |"
    )
    print("|---|---|---|---|---|---|---|")
    for case, entry in results.items():
        for key, label in (("camlens", case), ("camlens-large", f"{case}, budget")):
            ours = entry.get(key)
            if ours is None or "seconds" not in ours:
                continue
            if key == "camlens-large":
                label += f" {args.large_budget:.0f} MiB"
            theirs = entry.get("pgc")
            ours_s = _median(ours["seconds"])
            if theirs is not None:
                theirs_s = _median(theirs["seconds"])
                if "interleaved" in entry:
                    label += f" (interleaved, median of {args.rounds})"
                    ours_s = _median(entry["interleaved"]["seconds"]["camlens"])
                    theirs_s = _median(entry["interleaved"]["seconds"]["pgc"])
                row = f"| {label} | {ours_s:.2f} | {theirs_s:.2f} | {theirs_s / ours_s:.1f}× |"
            else:
                row = f"| {label} | {ours_s:.2f} | — | — |"
            row += f" {ours['peak_growth_mb']:.0f} |"
            row += f" {theirs['peak_growth_mb']:.0f} |" if theirs is not None else " — |"
            diff = entry.get("diff") if key == "camlens" else None
            row += f" {diff['max_abs_diff']:.2e} |" if diff else " — |"
            print(row)
    for case, entry in results.items():
        variants = entry["camlens"].get("variants")
        if not variants:
            continue
        print()
        print(f"{case}: speed-ups against camlens' exact maps")
        print(
            "| option | time (s) | exact (s) | max abs diff | Pearson r: median, min, share > 0.9 |"
        )
        print("|---|---|---|---|---|")
        for name, value in variants.items():
            exact = value.get("exact_seconds", _median(entry["camlens"].get("seconds", [0.0])))
            correlation = f"{value['pearson']:.4f}"
            if "pearson_min" in value:
                correlation += (
                    f", {value['pearson_min']:.3f}, {value['share_above_0.9']:.0%} "
                    f"of {value['pairs']} tile-classes (constant map: fails)"
                )
            print(
                f"| {name} | {value['seconds']:.2f} | {exact:.2f} | "
                f"{value['max_abs_diff']:.3f} | {correlation} |"
            )
    print()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
