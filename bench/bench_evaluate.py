"""Time of ``camlens evaluate``'s metrics over the demo's data, split by metric.

The shipped demo segmenter on seeded synthetic tiles (per-class localisation + deletion /
insertion of each class target) and the shipped leaky shortcut classifier on seeded patches
(deletion / insertion, ROAD, confidence change), both with Grad-CAM and HiResCAM.

    python bench/bench_evaluate.py [--tiles 8] [--patches 16] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line

from camlens.demo.models import MEAN, SHORTCUT_SIZE, STD, load_demo_model
from camlens.demo.synthetic import make_dataset, make_shortcut_dataset
from camlens.demo.train import normalise
from camlens.evaluation import Evaluation, evaluate

METHODS = ["gradcam", "hirescam"]


def run(task: str, model, inputs, layer: str, steps: int, batch: int) -> tuple[Evaluation, float]:
    total = Evaluation()
    start = time.perf_counter()
    for first in range(0, len(inputs), batch):
        chunk = inputs[first : first + batch]
        total.extend(
            evaluate(model, chunk, METHODS, layer, task=task, steps=steps, mean=MEAN, std=STD),
            image_offset=first,
        )
    return total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--patches", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, _ = make_dataset(11, args.tiles, 128)
    patches = make_shortcut_dataset(12, args.patches, SHORTCUT_SIZE, leak=True)["images"]
    cases = [
        (
            "segmenter, 128² tiles",
            "seg",
            load_demo_model("segmenter"),
            normalise(images),
            "encoder.layer4",
        ),
        (
            "shortcut classifier, 96² patches",
            "cls",
            load_demo_model("shortcut_leaky"),
            normalise(patches),
            "layer2",
        ),
    ]
    print(f"# {machine_line()}; methods {', '.join(METHODS)}; {args.steps} curve steps")
    print("| case | images | step | seconds | share | per image (ms) |")
    print("|---|---|---|---|---|---|")
    for label, task, model, inputs, layer in cases:
        result, wall = run(task, model, inputs, layer, args.steps, batch=4)
        for step, seconds in sorted(result.seconds.items(), key=lambda kv: -kv[1]):
            print(
                f"| {label} | {len(inputs)} | {step} | {seconds:.2f} | "
                f"{seconds / wall:.0%} | {1e3 * seconds / len(inputs):.0f} |"
            )
        print(
            f"| {label} | {len(inputs)} | **total** | {wall:.2f} | 100% | "
            f"{1e3 * wall / len(inputs):.0f} |"
        )


if __name__ == "__main__":
    main()
