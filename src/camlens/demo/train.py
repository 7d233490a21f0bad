"""Train the demo's models on synthetic data and record their validation figures.

    python -m camlens.demo.train [--out src/camlens/demo/weights] [--seg-steps 3000]

Seeded end to end (data, initialisation, batch order) and sized for a laptop CPU: about
10 minutes on 2 cores. Writes ``segmenter.pt``, ``shortcut_leaky.pt``,
``shortcut_control.pt`` (float32 state dicts) and ``metrics.json`` (validation mIoU, shortcut
accuracies and the command that produced them); ``tests/test_demo_models.py`` checks that the
shipped weights still reach the recorded figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from camlens.demo.models import (
    MEAN,
    SEGMENTER_SIZE,
    SHORTCUT_SIZE,
    STD,
    WEIGHT_FILES,
    segmenter,
    shortcut_classifier,
)
from camlens.demo.synthetic import CLASS_NAMES, add_marker, make_dataset, make_shortcut_dataset

__all__ = ["evaluate_segmenter", "evaluate_shortcut", "main", "normalise"]

SEGMENTER_VALIDATION = {"seed": 1001, "count": 48, "size": SEGMENTER_SIZE}
SHORTCUT_TEST = {"seed": 2002, "count": 400, "size": SHORTCUT_SIZE}


def normalise(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(N, H, W, 3)`` RGB in [0, 1] → ``(N, 3, H, W)`` normalised with ImageNet statistics."""
    tensor = torch.as_tensor(np.asarray(images), dtype=torch.float32).permute(0, 3, 1, 2)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (tensor - mean) / std


@torch.no_grad()
def _predict(model: nn.Module, images: np.ndarray, batch: int = 16) -> torch.Tensor:
    model.eval()
    outputs = [model(normalise(images[i : i + batch])) for i in range(0, len(images), batch)]
    return torch.cat(outputs).argmax(1)


def evaluate_segmenter(model: nn.Module, seed: int, count: int, size: int) -> dict[str, Any]:
    """mIoU (mean over classes present in labels or predictions) on a seeded tile set."""
    images, labels = make_dataset(seed, count, size)
    predicted = _predict(model, images).numpy()
    per_class = {}
    for class_id, name in enumerate(CLASS_NAMES):
        truth, guess = labels == class_id, predicted == class_id
        union = int((truth | guess).sum())
        if union:
            per_class[name] = float((truth & guess).sum() / union)
    accuracy = float((predicted == labels).mean())
    return {
        "miou": float(np.mean(list(per_class.values()))),
        "pixel_accuracy": accuracy,
        "per_class_iou": per_class,
    }


def evaluate_shortcut(model: nn.Module, seed: int, count: int, size: int) -> dict[str, float]:
    """Accuracies with and without the marker, and how often the marker alone flips a
    lesion-free patch to "lesion"."""
    leaked = make_shortcut_dataset(seed, count, size, leak=True)
    clean = make_shortcut_dataset(seed, count, size, leak=False)
    labels = torch.as_tensor(clean["labels"])
    negatives = clean["images"][clean["labels"] == 0]
    return {
        "accuracy_with_leak": float((_predict(model, leaked["images"]) == labels).float().mean()),
        "accuracy_without_marker": float(
            (_predict(model, clean["images"]) == labels).float().mean()
        ),
        "marker_flips_negatives": float(_predict(model, add_marker(negatives)).float().mean()),
    }


def _augment(images: torch.Tensor, labels: torch.Tensor | None, generator: torch.Generator):
    """Random flips and 90° rotations, the same for images and label maps."""
    turns = int(torch.randint(4, (1,), generator=generator))
    flip = bool(torch.randint(2, (1,), generator=generator))
    images = torch.rot90(images, turns, dims=(2, 3))
    images = images.flip(3) if flip else images
    if labels is not None:
        labels = torch.rot90(labels, turns, dims=(1, 2))
        labels = labels.flip(2) if flip else labels
    return images, labels


def _train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    batch: int,
    seed: int,
    desc: str,
    dense: bool,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    model.train()
    progress = tqdm(range(steps), desc=desc, unit="step", file=sys.stderr)
    for _ in progress:
        index = torch.randint(len(inputs), (batch,), generator=generator)
        x, y = inputs[index], targets[index]
        if dense:
            x, y = _augment(x, y, generator)
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the camlens demo models.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "weights")
    parser.add_argument("--seg-tiles", type=int, default=3000)
    parser.add_argument("--seg-steps", type=int, default=3000)
    parser.add_argument("--shortcut-count", type=int, default=2000)
    parser.add_argument("--shortcut-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    metrics: dict[str, Any] = {
        "command": "python -m camlens.demo.train " + " ".join(argv or sys.argv[1:]),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }

    torch.manual_seed(args.seed)
    images, labels = make_dataset(args.seed + 1, args.seg_tiles, SEGMENTER_SIZE)
    model = segmenter()
    clock = time.perf_counter()
    _train(
        model,
        normalise(images),
        torch.as_tensor(labels),
        args.seg_steps,
        16,
        args.seed,
        "segmenter",
        dense=True,
    )
    torch.save(model.state_dict(), args.out / WEIGHT_FILES["segmenter"])
    metrics["segmenter"] = {
        "validation": SEGMENTER_VALIDATION,
        **evaluate_segmenter(model, **SEGMENTER_VALIDATION),
        "train_tiles": args.seg_tiles,
        "steps": args.seg_steps,
        "train_seconds": round(time.perf_counter() - clock, 1),
    }
    print(f"segmenter: validation mIoU {metrics['segmenter']['miou']:.3f}", file=sys.stderr)

    for name, leak in (("shortcut_leaky", True), ("shortcut_control", False)):
        torch.manual_seed(args.seed)
        data = make_shortcut_dataset(args.seed + 2, args.shortcut_count, SHORTCUT_SIZE, leak=leak)
        classifier = shortcut_classifier()
        clock = time.perf_counter()
        _train(
            classifier,
            normalise(data["images"]),
            torch.as_tensor(data["labels"]),
            args.shortcut_steps,
            32,
            args.seed,
            name,
            dense=False,
        )
        torch.save(classifier.state_dict(), args.out / WEIGHT_FILES[name])
        metrics[name] = {
            "test": SHORTCUT_TEST,
            "trained_with_leak": leak,
            **evaluate_shortcut(classifier, **SHORTCUT_TEST),
            "steps": args.shortcut_steps,
            "train_seconds": round(time.perf_counter() - clock, 1),
        }
        print(f"{name}: {metrics[name]}", file=sys.stderr)
    metrics["total_seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    main()
