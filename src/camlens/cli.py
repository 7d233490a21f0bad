"""The ``camlens`` command: ``demo``, ``explain``, ``evaluate`` and ``methods``.

``camlens explain`` runs the library on users' own models and images and writes, into
``--out``: ``report.html`` (with its PNG overlays in ``images/``), the raw maps as one
``raw/<image>.npz`` per image, and ``summary.json``. Images that cannot be read are skipped
and listed at the end; the exit status is then 1 (2 for usage and set-up errors).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from camlens.base import BaseCAM
from camlens.errors import CamlensError
from camlens.evaluation import (
    CLASSIFICATION_METRICS,
    SEGMENTATION_METRICS,
    Evaluation,
    evaluate,
    sanity_checks,
)
from camlens.explanation import Explanation
from camlens.files import collect_images, natural_key
from camlens.image import load_image, preprocess_image
from camlens.layers import resolve_layers
from camlens.loading import load_labels, load_model, load_weights
from camlens.methods import available_methods, get_method
from camlens.outputs import as_score_tensor, is_dense
from camlens.report import Report
from camlens.report.content import (
    add_classification_image,
    add_metrics_section,
    add_segmentation_image,
)
from camlens.segmentation import explain_segmentation
from camlens.targets import ClassifierOutputTarget

__all__ = ["main"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UsageError(CamlensError, ValueError):
    """A command-line argument cannot be used as given."""


# -- argument parsing -------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camlens",
        description="Class activation maps for image classifiers and segmenters: where does "
        "the model look, and can the explanation be trusted?",
        epilog="Run 'camlens COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="explain the embedded H&E segmentation model and the shortcut classifiers",
        description="Run the embedded demo: synthetic H&E skin tiles segmented by a small "
        "DeepLabV3+-style model shipped with camlens, Grad-CAM vs HiResCAM per class, and a "
        "classifier that learned a corner marker instead of the lesion. No download.",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("camlens-demo"),
        help="output folder (default: %(default)s)",
    )
    demo.add_argument(
        "--tiles", type=int, default=3, help="number of sample tiles (default: %(default)s)"
    )
    demo.add_argument(
        "--method",
        default="gradcam,hirescam",
        help="comma-separated methods (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the sample tiles")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    explain = commands.add_parser(
        "explain",
        help="explain your own model on your images",
        description="Explain a model on image files, folders or globs (natural order). "
        "Writes PNG overlays, raw maps (.npz), summary.json and report.html into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _model_arguments(explain, default_method="hirescam,gradcam")

    evaluate = commands.add_parser(
        "evaluate",
        help="score explanations: faithfulness and localisation metrics",
        description="Explain a model on images with several methods and score each map: "
        "deletion/insertion AUC, ROAD gap, average drop and increase in confidence "
        "(classifiers); inside/near/far share of evidence, pointing game and deletion/"
        "insertion AUC per class (segmenters). Prints a table; writes metrics.json, "
        "metrics.csv and report.html into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _model_arguments(evaluate, default_method="gradcam,hirescam")
    evaluate.add_argument(
        "--steps", type=int, default=20, help="points of the deletion and insertion curves"
    )
    evaluate.add_argument(
        "--sanity",
        action="store_true",
        help="also run the cascading parameter-randomisation sanity check (on the first batch)",
    )
    evaluate.add_argument(
        "--near",
        type=int,
        default=8,
        help="seg: width in px of the 'near' ring around a class mask",
    )

    commands.add_parser(
        "methods",
        help="list the available methods",
        description="List the CAM methods camlens provides.",
    )
    return parser


def _model_arguments(parser: argparse.ArgumentParser, default_method: str) -> None:
    """The arguments ``explain`` and ``evaluate`` share: model, images, preprocessing, output."""
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument(
        "--model",
        required=True,
        help="factory returning the model: pkg.module:function or path/to/file.py:function",
    )
    parser.add_argument("--weights", type=Path, help="state dict to load (weights_only)")
    parser.add_argument(
        "--layer",
        required=True,
        action="append",
        help="target layer: dotted name such as encoder.layer4 or "
        "layer4[-1], or 'auto'; repeat for several layers",
    )
    parser.add_argument(
        "--method",
        default=default_method,
        help=f"comma-separated methods, from: {', '.join(available_methods())}",
    )
    parser.add_argument(
        "--task",
        choices=["auto", "seg", "cls"],
        default="auto",
        help="segmentation or classification; 'auto' looks at the output",
    )
    parser.add_argument(
        "--class",
        dest="classes",
        default=None,
        help="seg: present | all | ids/names (comma-separated); "
        "cls: top | ids/names (default: present for seg, top for cls)",
    )
    parser.add_argument(
        "--labels", type=Path, help="JSON list of class names (or mapping id -> name)"
    )
    parser.add_argument(
        "--mean",
        type=float,
        nargs=3,
        default=IMAGENET_MEAN,
        metavar=("R", "G", "B"),
        help="normalisation mean",
    )
    parser.add_argument(
        "--std",
        type=float,
        nargs=3,
        default=IMAGENET_STD,
        metavar=("R", "G", "B"),
        help="normalisation std",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="resize images to H × W before the model (default: native)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=4, help="images per forward pass (same-size images only)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# -- helpers ------------------------------------------------------------------------------------
def _methods(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--method lists no method")
    return [get_method(name).name for name in names]


def _class_ids(text: str, labels: list[str] | None) -> list[int]:
    ids = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lstrip("-").isdigit():
            ids.append(int(part))
        elif labels is not None and part in labels:
            ids.append(labels.index(part))
        else:
            known = f"; known names: {', '.join(labels)}" if labels else " (give --labels)"
            raise UsageError(f"--class {part!r} is neither a class id nor a known name{known}")
    return ids


def _load(path: Path, size: Sequence[int] | None) -> np.ndarray:
    image = load_image(path)
    if size is not None and tuple(image.shape[:2]) != tuple(size):
        resized = Image.fromarray((image * 255).round().astype(np.uint8)).resize(
            (size[1], size[0]), Image.BILINEAR
        )
        image = np.asarray(resized, dtype=np.float32) / 255
    return image


def _batches(items: list[tuple[Path, np.ndarray]], batch_size: int):
    """Consecutive runs of same-size images, at most ``batch_size`` long."""
    run: list[tuple[Path, np.ndarray]] = []
    for item in items:
        if run and (len(run) == batch_size or run[0][1].shape != item[1].shape):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _unique_stems(paths: list[Path]) -> dict[Path, str]:
    stems: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        stem, count = path.stem, 2
        while stem in used:
            stem, count = f"{path.stem}-{count}", count + 1
        used.add(stem)
        stems[path] = stem
    return stems


# -- commands -----------------------------------------------------------------------------------
@dataclass
class _Job:
    """What ``explain`` and ``evaluate`` set up from their shared arguments."""

    methods: list[str]
    model: torch.nn.Module
    device: torch.device
    labels: list[str] | None
    layers: Any
    files: list[Path]
    loaded: list[tuple[Path, np.ndarray]]
    failed: list[tuple[str, str]]
    progress: tqdm


def _open(args: argparse.Namespace) -> _Job:
    """Check the arguments, load the model, weights and labels, read the images."""
    methods = _methods(args.method)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    files, missing = collect_images(args.images)
    failed: list[tuple[str, str]] = list(missing)
    if not files:
        raise UsageError("no image to use: " + "; ".join(f"{a}: {r}" for a, r in missing))
    device = torch.device(args.device)
    model = load_model(args.model)
    if args.weights is not None:
        load_weights(model, args.weights)
    model = model.to(device).eval()
    labels = load_labels(args.labels) if args.labels is not None else None
    layers = args.layer if len(args.layer) > 1 else args.layer[0]
    if "auto" not in args.layer:
        resolve_layers(model, layers)  # fail early, with close names, before any work
    progress = tqdm(total=len(files), desc=args.command, unit="image", disable=args.quiet)
    loaded: list[tuple[Path, np.ndarray]] = []
    for path in files:
        try:
            loaded.append((path, _load(path, args.size)))
        except CamlensError as error:
            failed.append((str(path), str(error)))
            progress.update(1)
    return _Job(methods, model, device, labels, layers, files, loaded, failed, progress)


def _inputs(
    batch: list[tuple[Path, np.ndarray]], args: argparse.Namespace, device: torch.device
) -> torch.Tensor:
    stacked = torch.cat([preprocess_image(image, args.mean, args.std) for _, image in batch])
    return stacked.to(device)


def _task(requested: str, model: torch.nn.Module, inputs: torch.Tensor) -> str:
    if requested != "auto":
        return requested
    with torch.no_grad():
        return "seg" if is_dense(as_score_tensor(model(inputs[:1]))) else "cls"


def _segmentation_classes(args: argparse.Namespace, labels: list[str] | None) -> Any:
    classes = args.classes or "present"
    return classes if classes in ("present", "all") else _class_ids(classes, labels)


def _classification_targets(
    args: argparse.Namespace, labels: list[str] | None
) -> list[ClassifierOutputTarget] | None:
    spec = args.classes or "top"
    return None if spec == "top" else [ClassifierOutputTarget(c) for c in _class_ids(spec, labels)]


def _finish(report: Report, failed: list[tuple[str, str]], explained: int) -> int:
    if failed:
        section = report.section("Skipped inputs")
        section.table(["input", "reason"], [list(item) for item in failed])
    page = report.write()
    print(f"wrote {page} ({explained} explained, {len(failed)} skipped)")
    for name, reason in failed:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    return 1 if failed else 0


def _explain(args: argparse.Namespace) -> int:
    job = _open(args)
    methods, model, labels, layers, failed = (
        job.methods,
        job.model,
        job.labels,
        job.layers,
        job.failed,
    )
    files, progress, device = job.files, job.progress, job.device
    out: Path = args.out
    (out / "raw").mkdir(parents=True, exist_ok=True)
    report = Report("camlens explain", subtitle=f"{args.model} · {', '.join(methods)}", out_dir=out)
    stems = _unique_stems(files)
    summary: dict[str, Any] = {
        "model": args.model,
        "weights": str(args.weights) if args.weights else None,
        "layers": args.layer,
        "methods": methods,
        "images": [],
        "failed": [],
    }
    task = args.task
    for batch in _batches(job.loaded, args.batch_size):
        inputs = _inputs(batch, args, device)
        task = _task(task, model, inputs)
        facts = {"model": args.model}
        if task == "seg":
            classes = _segmentation_classes(args, labels)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # absent classes: empty masks
                result = explain_segmentation(
                    model,
                    inputs,
                    classes=classes,
                    methods=methods,
                    layers=layers,
                    class_names=labels,
                )
            records = result.records()
            for index, (path, image) in enumerate(batch):
                stem = stems[path]
                arrays = {
                    "classes": np.asarray(result.classes),
                    "scores": result.scores[index].cpu().numpy(),
                    "masks": (result.masks[index] > 0).cpu().numpy(),
                    "predicted": result.predicted[index].cpu().numpy(),
                }
                for method in methods:
                    for number, maps in enumerate(result.layer_maps[method]):
                        arrays[f"{method}_layer{number}"] = maps[index].cpu().numpy()
                    arrays[f"{method}_maps"] = result[method][index].cpu().numpy()
                np.savez_compressed(out / "raw" / f"{stem}.npz", **arrays)
                add_segmentation_image(
                    report, path.name, image, result, index, facts=facts, name=stem
                )
                summary["images"].append(
                    {
                        "file": str(path),
                        "size": list(image.shape[:2]),
                        "raw": f"raw/{stem}.npz",
                        "records": [
                            {k: v for k, v in r.items() if k != "image"}
                            for r in records
                            if r["image"] == index
                        ],
                    }
                )
                progress.update(1)
        else:
            targets = _classification_targets(args, labels)
            for target in targets or [None]:
                explanations: dict[str, Explanation] = {
                    method: BaseCAM(model, layers, method=method).explain(
                        inputs, None if target is None else [target]
                    )
                    for method in methods
                }
                for index, (path, image) in enumerate(batch):
                    stem = stems[path]
                    first = explanations[methods[0]]
                    category = first.targets[index].category
                    suffix = "" if targets is None else f"-class{category}"
                    arrays = {
                        "class": np.asarray(category),
                        "score": first.scores[index].cpu().numpy(),
                    }
                    for method, explanation in explanations.items():
                        for number, maps in enumerate(explanation.layer_maps):
                            arrays[f"{method}_layer{number}"] = maps[index].cpu().numpy()
                        arrays[f"{method}_maps"] = explanation.maps[index].cpu().numpy()
                    np.savez_compressed(out / "raw" / f"{stem}{suffix}.npz", **arrays)
                    add_classification_image(
                        report,
                        f"{path.name}{suffix}",
                        image,
                        explanations,
                        index,
                        class_names=labels,
                        facts=facts,
                        name=f"{stem}{suffix}",
                    )
                    summary["images"].append(
                        {
                            "file": str(path),
                            "size": list(image.shape[:2]),
                            "raw": f"raw/{stem}{suffix}.npz",
                            "class_id": category,
                            "class_name": labels[category]
                            if labels and category < len(labels)
                            else None,
                            "score": float(first.scores[index]),
                        }
                    )
            progress.update(len(batch))
    progress.close()
    summary["failed"] = [{"input": name, "error": reason} for name, reason in failed]
    summary["images"].sort(key=lambda item: natural_key(item["file"]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return _finish(report, failed, len(summary["images"]))


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table of ``rows`` (floats with 3 decimals), for the terminal."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "–" if value != value else f"{value:.3f}"
        return str(value)

    body = [[cell(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in body)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in body]
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    job = _open(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    total = Evaluation()
    explained: list[Path] = []
    task = args.task
    for batch in _batches(job.loaded, args.batch_size):
        inputs = _inputs(batch, args, job.device)
        task = _task(task, job.model, inputs)
        result = evaluate(
            job.model,
            inputs,
            job.methods,
            job.layers,
            task=task,
            targets=_classification_targets(args, job.labels) if task == "cls" else None,
            classes=_segmentation_classes(args, job.labels) if task == "seg" else "present",
            steps=args.steps,
            near=args.near,
            mean=args.mean,
            std=args.std,
            class_names=job.labels,
        )
        total.extend(result, image_offset=len(explained))
        explained.extend(path for path, _ in batch)
        job.progress.update(len(batch))
    job.progress.close()
    rows = [{"file": str(explained[row["image"]]), **row} for row in total.rows]
    means = total.means()
    metrics = list(SEGMENTATION_METRICS if task == "seg" else CLASSIFICATION_METRICS)
    columns = ["method"] + (["class_name"] if task == "seg" else []) + ["images", *metrics]
    print(_print_table(means, columns))
    seconds = {step: round(value, 3) for step, value in total.seconds.items()}
    print("seconds per step: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    (out / "metrics.json").write_text(
        json.dumps(
            {
                "model": args.model,
                "layers": args.layer,
                "task": task,
                "methods": job.methods,
                "means": means,
                "rows": rows,
                "seconds": seconds,
                "failed": [{"input": n, "error": r} for n, r in job.failed],
            },
            indent=2,
            default=float,
        ),
        encoding="utf-8",
    )
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as handle:
        fields = ["file", "image", "method", "class_id", "class_name", *metrics]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    report = Report(
        "camlens evaluate", subtitle=f"{args.model} · {', '.join(job.methods)}", out_dir=out
    )
    if args.sanity and job.loaded:
        first = _inputs(job.loaded[: args.batch_size], args, job.device)
        checks = sanity_checks(job.model, first, job.methods, job.layers)
        rows_sanity = []
        for method, check in checks.items():
            print(f"sanity check, {method}: {check.reason}")
            step = check.checked_step
            rows_sanity.append(
                [
                    method,
                    f"{step + 1} of {len(check.layers)}",
                    float(check.spearman[step].nanmean()),
                    float(check.ssim[step].nanmean()),
                    "yes" if check.flagged else "no",
                    check.reason,
                ]
            )
        section = report.section("Sanity check: cascading parameter randomisation")
        section.paragraph(
            "Adebayo et al. (2018): layers are re-initialised from the output end; a method "
            "whose maps still resemble the original ones once half of the layers are random "
            "does not depend on what the model learned, and is flagged."
        )
        section.table(
            ["method", "random layers", "Spearman", "SSIM", "flagged", "reason"], rows_sanity
        )
        sanity_json = {
            row[0]: {
                "random_layers": row[1],
                "spearman": row[2],
                "ssim": row[3],
                "flagged": row[4] == "yes",
                "reason": row[5],
            }
            for row in rows_sanity
        }
        data = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        data["sanity"] = sanity_json
        (out / "metrics.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    add_metrics_section(report, means, columns, task=task, seconds=seconds, images=len(explained))
    return _finish(report, job.failed, len(explained))


def _list_methods() -> int:
    for name in available_methods():
        method = get_method(name)
        gradients = "gradients" if method.needs_gradients else "no gradients"
        print(f"{name:20s} {method.title:20s} {gradients:13s} {method.reference}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``camlens`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "explain":
            return _explain(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "demo":
            from camlens.demo.run import run_demo

            page = run_demo(
                args.out,
                tiles=args.tiles,
                methods=_methods(args.method),
                seed=args.seed,
                progress=not args.quiet,
            )
            print(f"wrote {page}")
            return 0
        return _list_methods()
    except (CamlensError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"camlens {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
