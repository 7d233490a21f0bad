"""``camlens demo``: the embedded demo, end to end, in well under a minute on 2 CPU cores.

1. Synthetic H&E skin tiles (seeded) are segmented by the shipped DeepLabV3+-style model;
   every present class of every tile is explained with each method from one forward pass,
   target = the class logits summed over the predicted class mask, layer ``encoder.layer4``.
2. The shortcut case: a classifier trained with a leaking corner marker vs a control.
3. The same tiles, saved as PNG files, through ``camlens explain`` — the command users run on
   their folders, as a job (checked up front, streamed, resumable) — into ``OUT/job/``.
4. Everything goes into ``OUT/report.html`` with its PNGs in ``OUT/images``.

:func:`run_demo` runs the steps in that order; each step below adds its part of the report.
The order of the steps is also the order of the report's sections and image files.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn
from tqdm import tqdm

from camlens.atomic import save_png, write_json
from camlens.cli.explain import run_command
from camlens.demo.models import (
    SEGMENTER_SIZE,
    SHORTCUT_SIZE,
    demo_weights,
    load_demo_model,
    recorded_metrics,
)
from camlens.demo.shortcut import LAYER as SHORTCUT_LAYER
from camlens.demo.shortcut import ShortcutFindings, audit_models, shortcut_findings
from camlens.demo.synthetic import CLASS_COLOURS, CLASS_NAMES, make_dataset
from camlens.demo.train import normalise
from camlens.demo.whole_slide import add_slide_section
from camlens.image import show_cam_on_image
from camlens.methods import get_method
from camlens.report import Report, Section
from camlens.report.content import add_segmentation_image
from camlens.segmentation import SegmentationExplanation, explain_segmentation

__all__ = ["run_demo"]

SEGMENTER_LAYER = "encoder.layer4"
#: A model whose map peaks on the marker (a box of ~1 % of the image) on more than this share
#: of lesion patches is flagged as using the shortcut.
CHEATING_RATE = 0.5
#: Patches in the dataset audit of the shortcut models.
AUDIT_PATCHES = 48
#: Lesion patches shown as figures in the shortcut check.
SHORTCUT_EXAMPLES = 3


def _title(method: str) -> str:
    return get_method(method).label


@dataclass(frozen=True)
class _DemoModels:
    """The shipped models and the figures recorded when they were trained."""

    segmenter: nn.Module
    #: The shortcut classifiers by name: "leaky" (trained with the marker leaking), "control".
    classifiers: dict[str, nn.Module]
    recorded: dict[str, Any]


def run_demo(
    out: Path | str,
    *,
    tiles: int = 3,
    methods: list[str] | None = None,
    seed: int = 7,
    shortcut_patches: int = 24,
    progress: bool = True,
) -> Path:
    """Run the demo and write ``out/report.html``; returns its path."""
    methods = methods or ["gradcam", "hirescam"]
    if tiles < 1:
        raise ValueError("`tiles` must be at least 1")
    steps = tqdm(total=6, desc="camlens demo", unit="step", disable=not progress)
    models = _load_models()
    steps.update(1)
    report = Report(
        "camlens demo",
        subtitle="Where does the model look? Synthetic H&E skin tiles and a shortcut check",
        out_dir=out,
    )
    _add_about(report, models, methods, tiles, seed)
    images, labels = make_dataset(seed, tiles, SEGMENTER_SIZE)
    result = _explain_tiles(models.segmenter, images, methods)
    steps.update(1)
    _add_tiles(report, images, labels, result)
    steps.update(1)
    _add_job(report, Path(out), images, methods)
    steps.update(1)
    add_slide_section(report, Path(out), methods, SEGMENTER_LAYER)
    steps.update(1)
    _add_shortcut_check(report, models, methods, seed, shortcut_patches)
    steps.update(1)
    page = report.write()
    steps.close()
    return page


# ------------------------------------------------------------------------------------------
# Segmentation of the skin tiles
# ------------------------------------------------------------------------------------------


def _add_job(report: Report, out: Path, images: np.ndarray, methods: list[str]) -> None:
    """Save the tiles as PNG files and explain them with ``camlens explain`` into
    ``out/job`` (its own report, summary, raw maps and manifest); a section shows the
    command and where the outputs are."""
    tiles = out / "tiles"
    tiles.mkdir(parents=True, exist_ok=True)
    for number, image in enumerate(images, start=1):
        pixels = (np.asarray(image) * 255).round().astype(np.uint8)
        save_png(tiles / f"tile_{number}.png", Image.fromarray(pixels))
    labels = out / "labels.json"
    write_json(labels, list(CLASS_NAMES))
    argv = [
        str(tiles), "--model", "camlens.demo.models:segmenter", "--weights",
        str(demo_weights("segmenter")), "--layer", SEGMENTER_LAYER, "--method",
        ",".join(methods), "--labels", str(labels), "--out", str(out / "job"), "--overwrite",
        "--quiet",
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        status = run_command(argv)
    section = report.section("The same tiles as a job: camlens explain")
    section.paragraph(
        "What you run on your own folder: the tiles above, saved as PNG files, explained by "
        "`camlens explain` — every option checked before the first image is decoded, images "
        "read ahead in background threads, one bad image skipped with its reason, every file "
        "written atomically, one manifest line per finished image (so --resume continues an "
        "interrupted run and --shard i/N splits a folder between processes). Its own report "
        f"is job/report.html (exit status {status})."
    )
    section.preformatted("camlens explain " + " ".join(argv))


def _load_models() -> _DemoModels:
    """The shipped segmenter and shortcut classifiers, and their recorded metrics."""
    segmenter = load_demo_model("segmenter")
    classifiers = {name: load_demo_model(f"shortcut_{name}") for name in ("leaky", "control")}
    return _DemoModels(segmenter, classifiers, recorded_metrics())


def _add_about(
    report: Report, models: _DemoModels, methods: list[str], tiles: int, seed: int
) -> None:
    """The "About this demo" section: what is explained, how, and how good the segmenter is."""
    about = report.section("About this demo")
    about.paragraph(
        "A small DeepLabV3+-style segmenter, trained on synthetic H&E-stained skin tiles "
        "shipped with camlens, segments seven tissue classes. For every class present in a "
        "tile, each method explains the class logits summed over the predicted class mask, "
        f"at {SEGMENTER_LAYER}. Under each overlay: the share of positive CAM mass inside the "
        "class mask (1 = all evidence inside the class). The signed raw maps below them are "
        "the honest, unnormalised view: red is evidence for the class, blue against it."
    )
    seg_metrics = models.recorded["segmenter"]
    parameters = sum(p.numel() for p in models.segmenter.parameters())
    about.key_values(
        {
            "segmenter": "DeepLabV3+ (ResNet-style encoder, ASPP decoder), "
            f"{parameters:,} parameters",
            "validation mIoU (recorded at training)": (
                f"{seg_metrics['miou']:.3f} on {seg_metrics['validation']['count']} tiles"
            ),
            "methods": ", ".join(_title(m) for m in methods),
            "tiles": f"{tiles} tiles of {SEGMENTER_SIZE} × {SEGMENTER_SIZE} px, seed {seed}",
        }
    )
    about.table(
        ["class", "validation IoU"],
        [[name, seg_metrics["per_class_iou"].get(name, float("nan"))] for name in CLASS_NAMES],
        caption="Recorded per-class IoU",
    )


def _explain_tiles(
    segmenter: nn.Module, images: np.ndarray, methods: list[str]
) -> SegmentationExplanation:
    """Every class present in every tile, explained with each method at the segmenter's
    last encoder stage."""
    return explain_segmentation(
        segmenter,
        normalise(images),
        classes="present",
        methods=methods,
        layers=SEGMENTER_LAYER,
        class_names=list(CLASS_NAMES),
    )


def _add_tiles(
    report: Report, images: np.ndarray, labels: np.ndarray, result: SegmentationExplanation
) -> None:
    """One section per tile: the tile, prediction, ground truth and the maps of each class."""
    for index in range(len(images)):
        add_segmentation_image(
            report,
            f"Tile {index + 1}",
            images[index],
            result,
            index,
            truth=labels[index],
            name=f"tile{index + 1}",
            palette=CLASS_COLOURS,
        )


# ------------------------------------------------------------------------------------------
# The shortcut check
# ------------------------------------------------------------------------------------------


def _add_shortcut_check(
    report: Report, models: _DemoModels, methods: list[str], seed: int, patches: int
) -> None:
    """The section "Is the model cheating?": the leaky and the control classifier on
    ``patches`` lesion patches carrying the marker (pointing game, verdicts), their recorded
    accuracies, a dataset audit and a few example maps."""
    findings = shortcut_findings(
        models.classifiers, methods, normalise, seed=seed + 1, count=patches, size=SHORTCUT_SIZE
    )
    section = report.section("Is the model cheating? The shortcut check")
    section.paragraph(
        "Two lesion classifiers with the same architecture: 'leaky' was trained on patches "
        "where a green marker in the top-left corner appears exactly on lesion patches; "
        "'control' on the same patches without the marker. On lesion patches carrying the "
        f"marker, each method explains the 'lesion' logit at {SHORTCUT_LAYER}. Pointing game: "
        "on how many patches does the map's peak fall on the marker, or on the lesion (within "
        f"{findings.tolerance} px, one grid cell)? A model that learned the shortcut peaks "
        f"on the marker's box, which covers {findings.marker_area:.1%} of the image."
    )
    names = list(models.classifiers)
    _add_recorded_accuracies(section, names, models.recorded)
    _add_pointing_game(section, findings, names, methods)
    _add_verdicts(section, findings, names, methods)
    _add_dataset_audit(section, models.classifiers, methods, seed)
    _add_shortcut_examples(section, findings, names, methods)


def _add_recorded_accuracies(section: Section, names: list[str], recorded: dict[str, Any]) -> None:
    """Table of each classifier's accuracies recorded at training, with and without the
    marker, and how often the marker alone makes it say "lesion"."""
    rows = []
    for name in names:
        recorded_shortcut = recorded[f"shortcut_{name}"]
        rows.append(
            [
                name,
                recorded_shortcut["accuracy_with_leak"],
                recorded_shortcut["accuracy_without_marker"],
                recorded_shortcut["marker_flips_negatives"],
            ]
        )
    section.table(
        ["model", "accuracy (marker leaks)", "accuracy (no marker)", "marker alone → 'lesion'"],
        rows,
        caption=f"Recorded at training, on {recorded['shortcut_leaky']['test']['count']} test "
        "patches: accuracy with the leaking marker, without it, and how often stamping the "
        "marker on a lesion-free patch makes the model say 'lesion'",
    )


def _add_pointing_game(
    section: Section, findings: ShortcutFindings, names: list[str], methods: list[str]
) -> None:
    """Table, per model and method: how often the map peaks on the marker / the lesion, and
    the mean share of its positive mass inside each."""
    rows = [
        [
            f"{name} · {_title(method)}",
            findings.peak_rate(name, method, "marker"),
            findings.peak_rate(name, method, "lesion"),
            findings.mean_on_marker(name, method),
            findings.mean_on_lesion(name, method),
        ]
        for name in names
        for method in methods
    ]
    section.table(
        ["model · method", "peak on marker", "peak on lesion", "mass on marker", "mass on lesion"],
        rows,
        caption=f"Over {len(findings.images)} lesion patches with the marker: share of patches "
        "whose map peaks on the marker / lesion, and mean share of positive map mass inside "
        "them",
    )


def _add_verdicts(
    section: Section, findings: ShortcutFindings, names: list[str], methods: list[str]
) -> None:
    """One callout per model: it learned the shortcut when, with any method, its map peaks
    on the marker on more than :data:`CHEATING_RATE` of the patches."""
    for name in names:
        on_marker = max(findings.peak_rate(name, m, "marker") for m in methods)
        on_lesion = max(findings.peak_rate(name, m, "lesion") for m in methods)
        if on_marker > CHEATING_RATE:
            section.callout(
                f"'{name}' looks at the marker: on {on_marker:.0%} of lesion patches its map "
                f"peaks on the marker (a box covering {findings.marker_area:.1%} of the image, "
                f"give or take {findings.tolerance} px), on the lesion on {on_lesion:.0%}. It "
                "learned the shortcut.",
                kind="warning",
                title=f"{name}: shortcut",
            )
        else:
            section.callout(
                f"'{name}' looks at the lesion: its map peaks on the lesion on {on_lesion:.0%} "
                f"of patches, on the marker on {on_marker:.0%}.",
                kind="ok",
                title=f"{name}: lesion",
            )


def _add_dataset_audit(
    section: Section, classifiers: dict[str, nn.Module], methods: list[str], seed: int
) -> None:
    """Subsection with :func:`camlens.metrics.audit_dataset` of each classifier and method
    over :data:`AUDIT_PATCHES` training-like patches: a table of every class, and a callout
    on the lesion class."""
    audits = audit_models(
        classifiers, methods, normalise, seed=seed + 2, count=AUDIT_PATCHES, size=SHORTCUT_SIZE
    )
    audit = section.subsection("Dataset audit: where does each class's attention sit?")
    audit.paragraph(
        f"Over {AUDIT_PATCHES} patches as the models were trained (the marker on every lesion "
        "patch), the audit averages each predicted class's maps in image coordinates and flags "
        "a class whose attention is concentrated, sits in the same place in most images, and "
        "lies off the class (here: off the lesion masks). See camlens.metrics.audit_dataset."
    )
    audit.table(
        [
            "model · method",
            "class",
            "images",
            "concentration",
            "consistency",
            "overlap with lesion",
            "flagged",
        ],
        [
            [
                f"{name} · {_title(method)}",
                entry.name,
                entry.count,
                entry.concentration,
                entry.consistency,
                entry.overlap if entry.overlap is not None else float("nan"),
                "yes" if entry.flagged else "no",
            ]
            for (name, method), result in audits.items()
            for entry in result.classes.values()
        ],
        caption="concentration: mean-map mass in its top 10 % of pixels; consistency: share "
        "of images peaking within 12 px of the mean map's peak; overlap: share of that region "
        "on the lesion",
    )
    for (name, method), result in audits.items():
        lesion = result.classes.get(1)
        if lesion is not None:
            audit.callout(
                lesion.reason,
                kind="warning" if lesion.flagged else "ok",
                title=f"audit: {name} · {_title(method)}",
            )


def _peak_place(findings: ShortcutFindings, name: str, method: str, example: int) -> str:
    """Where the map of ``example`` peaks: "marker", "lesion" or "neither"."""
    if findings.peak_on_marker[name][method][example]:
        return "marker"
    if findings.peak_on_lesion[name][method][example]:
        return "lesion"
    return "neither"


def _add_shortcut_examples(
    section: Section, findings: ShortcutFindings, names: list[str], methods: list[str]
) -> None:
    """A figure row for each of the first :data:`SHORTCUT_EXAMPLES` patches: the patch and
    every model's and method's map on it, noting where the map peaks."""
    for example in range(min(SHORTCUT_EXAMPLES, len(findings.images))):
        row = section.figure_row(caption=f"Lesion patch {example + 1} (marker top-left)")
        image = findings.images[example]
        row.figure(image, caption="patch", name=f"shortcut{example + 1}")
        for name in names:
            for method in methods:
                explanation = findings.explanations[name][method]
                row.figure(
                    show_cam_on_image(image, explanation.numpy()[example], use_rgb=True),
                    caption=f"{name}: {_title(method)}",
                    note=f"peak on {_peak_place(findings, name, method, example)}",
                    name=f"shortcut{example + 1}-{name}-{method}",
                )
