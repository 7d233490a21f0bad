"""The main benchmarks on a CUDA device: synchronised timings and peak device memory.

Rows, each a median of ``--repeats`` after a warm-up, timed between
``torch.cuda.synchronize()`` calls, with ``torch.cuda.max_memory_allocated`` reset before and
read after each contender:

* **gradient**: ResNet-50, batch 16, 224², ``layer4[-1]``: a ``torch.no_grad()`` forward,
  then camlens's Grad-CAM, HiResCAM, Grad-CAM++, XGrad-CAM, LayerCAM (the familiar call).
* **all classes**: DeepLabV3+-R50, 13 classes, 512² and 1024², ``encoder.layer4``: a forward,
  the lean reference of ``bench_floor.py`` (every class) and ``explain_segmentation`` with
  every class, HiResCAM.
* **ScoreCAM**: ResNet-50, 224², ``layer4[-1]`` (2048 channels), batch size 64 re-runs.
* **slide**: ``camlens.slide.explain_slide`` on a 20,000² synthetic slide (demo segmenter,
  1 µm/px, 1024 tiles): tiles/s and the model's share of the wall time.
* **host reads**: the number of operations that wait for the device inside one
  ``explain_segmentation`` call (``tests/test_device.py``'s counter, on CUDA): expected 0
  besides the two verifications of the NaN/inf checks.

Writes a Markdown table to stdout and to ``--out`` (default ``bench/gpu-results.md``).

    python bench/bench_gpu.py [--device cuda] [--repeats 5] [--skip slide,scorecam]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_floor import lean

import camlens
from camlens.models import deeplabv3plus_resnet50, resnet50
from camlens.targets import ClassifierOutputTarget

Row = tuple[str, str, float, float]  # case, contender, median seconds, peak GiB


def timed(run: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float]:
    """Median seconds (synchronised) and peak device memory (GiB) of ``run``."""
    run()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    samples = []
    for _ in range(repeats):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        torch.cuda.synchronize(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), torch.cuda.max_memory_allocated(device) / 2**30


def gradient_rows(device: torch.device, repeats: int) -> list[Row]:
    torch.manual_seed(0)
    model = resnet50().to(device).eval()
    x = torch.randn(16, 3, 224, 224, device=device)
    targets = [ClassifierOutputTarget(1)] * 16

    def forward() -> None:
        with torch.no_grad():
            model(x)

    rows = [("ResNet-50 b16", "forward", *timed(forward, device, repeats))]
    for name in ("GradCAM", "HiResCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM"):
        cam = getattr(camlens, name)(model=model, target_layers=[model.layer4[-1]])
        rows.append(("ResNet-50 b16", name, *timed(lambda cam=cam: cam(x, targets), device,
                                                   repeats)))  # fmt: skip
    return rows


def segmentation_rows(device: torch.device, repeats: int, size: int) -> list[Row]:
    torch.manual_seed(0)
    model = deeplabv3plus_resnet50(num_classes=13).to(device).eval()
    x = torch.randn(1, 3, size, size, device=device)
    with torch.no_grad():
        present = sorted(set(model(x).argmax(1).unique().tolist()))

    def forward() -> None:
        with torch.no_grad():
            model(x)

    case = f"DeepLabV3+-R50 {size}², {len(present)} classes"
    return [
        (case, "forward", *timed(forward, device, repeats)),
        (case, "lean all (HiResCAM)", *timed(lambda: lean(model, x, present, "hirescam"),
                                              device, repeats)),
        (case, "explain_segmentation all", *timed(
            lambda: camlens.explain_segmentation(model, x, classes=present,
                                                 methods=["hirescam"], layers="encoder.layer4"),
            device, repeats)),
    ]  # fmt: skip


def scorecam_rows(device: torch.device, repeats: int) -> list[Row]:
    torch.manual_seed(0)
    model = resnet50().to(device).eval()
    x = torch.randn(1, 3, 224, 224, device=device)
    cam = camlens.ScoreCAM(model=model, target_layers=[model.layer4[-1]], batch_size=64)
    run = lambda: cam(x, [ClassifierOutputTarget(1)])  # noqa: E731
    return [("ResNet-50 layer4 (2048 ch)", "ScoreCAM", *timed(run, device, max(1, repeats // 3)))]


def slide_rows(device: torch.device) -> list[Row]:
    from camlens.demo.classes import CLASS_NAMES
    from camlens.demo.models import MEAN, STD, load_demo_model
    from camlens.demo.slide import write_synthetic_slide
    from camlens.slide import explain_slide

    with tempfile.TemporaryDirectory() as folder:
        slide = Path(folder) / "slide.tiff"
        write_synthetic_slide(slide, 20000, 20000, mpp=0.5, seed=0)
        model = load_demo_model("segmenter").to(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        result = explain_slide(slide, model, Path(folder) / "out", layers="encoder.layer4",
                               class_names=list(CLASS_NAMES), mpp=1.0, mean=MEAN, std=STD,
                               progress=False)  # fmt: skip
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    return [(f"slide 20,000², {result.tiles} tiles", "explain_slide (wall)", wall, peak)]


def host_reads(device: torch.device) -> int:
    """Operations that wait for the device inside one explain_segmentation call."""
    from test_device import HostReads

    torch.manual_seed(0)
    model = deeplabv3plus_resnet50(num_classes=13).to(device).eval()
    x = torch.randn(1, 3, 256, 256, device=device)
    with HostReads() as reads:
        camlens.explain_segmentation(model, x, classes="all", methods=["hirescam", "gradcam"],
                                     layers="encoder.layer4")  # fmt: skip
    return sum(reads.calls.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip", default="")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("gpu-results.md"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA device (none is available here)")
    skip = set(filter(None, args.skip.split(",")))
    rows: list[Row] = gradient_rows(device, args.repeats)
    for size in (512, 1024):
        rows += segmentation_rows(device, args.repeats, size)
    if "scorecam" not in skip:
        rows += scorecam_rows(device, args.repeats)
    if "slide" not in skip:
        rows += slide_rows(device)
    name = torch.cuda.get_device_name(device)
    lines = [f"{name}, torch {torch.__version__}; medians of {args.repeats}, synchronised", "",
             "| case | contender | median s | peak GiB |", "|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {case} | {who} | {seconds:.4f} | {peak:.2f} |" for case, who, seconds, peak in rows
    ]
    lines += ["", f"host reads inside explain_segmentation (expected 0): {host_reads(device)}"]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
