"""The demo's whole-slide step: a small synthetic slide explained by ``camlens slide``.

The slide is the demo's tissue at slide scale (:mod:`camlens.demo.slide`), written as a
pyramidal TIFF with its resolution (0.5 µm/px); the shipped segmenter, trained on 128-px
tiles that show the field of a 256-px slide block, is run at 1 µm/px. The section shows the
command, the slide next to one stitched heatmap, the per-class areas and the share of each
class's positive map mass inside the area predicted as that class, and links the viewer.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from camlens.cli.slide import run_command
from camlens.demo.classes import CLASS_NAMES
from camlens.demo.models import MEAN, STD, demo_weights
from camlens.demo.slide import write_synthetic_slide
from camlens.report import Report
from camlens.slide.arrays import Colourised, NpyRows

__all__ = ["add_slide_section"]

#: The demo slide: level-0 size and resolution, and where it is explained.
SLIDE_SIZE = (1536, 1024)
SLIDE_MPP = 0.5
ANALYSIS_MPP = 1.0
SHOWN_CLASS = "dermis_ecm"


def add_slide_section(report: Report, out: Path, methods: list[str], layer: str) -> int:
    """Write the slide, run ``camlens slide`` into ``out/slide``, add the section; returns
    the command's exit status."""
    folder = out / "slide"
    folder.mkdir(parents=True, exist_ok=True)
    slide = folder / "synthetic-slide.tiff"
    write_synthetic_slide(slide, *SLIDE_SIZE, mpp=SLIDE_MPP, seed=11)
    labels = folder / "labels.json"
    labels.write_text(json.dumps(list(CLASS_NAMES)), encoding="utf-8")
    argv = [
        str(slide), "--model", "camlens.demo.models:segmenter", "--weights",
        str(demo_weights("segmenter")), "--layer", layer, "--method", ",".join(methods),
        "--labels", str(labels), "--mpp", str(ANALYSIS_MPP), "--tile", "256", "--overlap",
        "32", "--downsample", "2", "--mean", *map(str, MEAN), "--std", *map(str, STD),
        "--out", str(folder / "run"), "--overwrite", "--quiet",
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        status = run_command(argv)
    summary = json.loads((folder / "run" / "summary.json").read_text(encoding="utf-8"))
    section = report.section("A whole slide: camlens slide")
    section.paragraph(
        "The same tissue at slide scale: a synthetic H&E slide (pyramidal TIFF, "
        f"{SLIDE_SIZE[0]}×{SLIDE_SIZE[1]} px at {SLIDE_MPP} µm/px) explained tile by tile at "
        f"{ANALYSIS_MPP} µm/px. Tissue is found on a thumbnail, tiles overlap and blend "
        "without seams, and the stitched maps keep their signed logit units: one colour "
        "scale per slide, class and method, never per tile. Outputs: pyramidal TIFF "
        "heatmaps (QuPath, OpenSlide), tiles.geojson with per-class measurements, and a "
        f"zoomable viewer (exit status {status})."
    )
    section.link("Open the slide viewer", "slide/run/viewer.html")
    section.preformatted("camlens slide " + " ".join(argv))
    shown = next(m for m in summary["maps"] if m["class_name"] == SHOWN_CLASS)
    row = section.figure_row(f"{SHOWN_CLASS}, {shown['method']}, stitched", width=360)
    canvas = Colourised(NpyRows(folder / "run" / shown["file"]), shown["limit"])
    height, width = canvas.shape[:2]
    row.figure(canvas[0:height, 0:width], caption="stitched heatmap",
               note=f"±{shown['limit']:.3g} logit units")  # fmt: skip
    prediction = np.load(folder / "run" / "maps" / "prediction.npy")
    row.figure(_class_colours(prediction), caption="stitched prediction")
    rows = []
    for entry in summary["classes"]:
        shares = [m["positive_mass_in_class"] for m in summary["maps"]
                  if m["class_id"] == entry["class_id"]]  # fmt: skip
        rows.append([entry["class_name"], entry["area_mm2"], *shares])
    headers = ["class", "area (mm²)", *[f"{m} mass in class" for m in summary["methods"]]]
    section.table(headers, rows, caption="Per class: predicted area; share of positive map "
                  "mass inside the area predicted as the class")  # fmt: skip
    return status


def _class_colours(prediction: np.ndarray) -> np.ndarray:
    from camlens.demo.classes import label_to_rgb

    known = prediction < 255
    rgb = label_to_rgb(np.where(known, prediction, 0))
    rgb[~known] = 255
    return rgb
