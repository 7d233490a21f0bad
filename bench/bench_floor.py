"""The seed's case against its floor: DeepLabV3+-R50 explained at ``encoder.layer4``.

What the definition needs, written out by hand (the *lean reference*): the encoder up to
``layer3`` without a graph, ``layer4`` and the decoder with one, the predicted mask, then per
class one ``autograd.grad`` of the mask-sum target (the class's logits summed over the
pixels predicted as it) down to ``layer4``'s output, the map (Grad-CAM: channel-mean
gradients × activations; HiResCAM: gradients × activations, summed over channels), ReLU,
upsampling to the input and min–max — the familiar call's picture. Side by side in one run,
interleaved (``bench/common.time_interleaved``), median of ``--repeats``:

* ``forward``: one ``torch.no_grad()`` forward pass (the unit of the table);
* ``lean``: the reference above, one class; ``lean all``: every class, one forward and one
  gradient per class over the retained graph;
* camlens's familiar call (``GradCAM``/``HiResCAM`` with a ``SemanticSegmentationTarget``
  built from the predicted mask, as users of the peer write it) and
  ``explain_segmentation`` for one class and for every class;
* pytorch-grad-cam 1.5.7's familiar call where it is importable
  (``bench/.env-gradcam/bin/python``).

Peak RSS is measured per contender in a fresh child process (``--memory``).

    python bench/bench_floor.py [--sizes 512,1024] [--repeats 5] [--classes 13] [--memory]
        [--methods gradcam,hirescam] [--threads N --cpu-time]

``--threads 1 --cpu-time`` times the process's CPU time (``time.process_time``) with one
torch thread: on a shared machine, time spent descheduled is then not counted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    add_clock_options,
    import_pytorch_grad_cam,
    machine_line,
    time_interleaved,
    use_clock_options,
)

import camlens
from camlens.models import deeplabv3plus_resnet50
from camlens.targets import SemanticSegmentationTarget

METHODS = ("gradcam", "hirescam")


def lean(model, x: torch.Tensor, classes: list[int], method: str) -> list[torch.Tensor]:
    """The reference (module docstring): final maps ``(B, H, W)`` per class."""
    encoder = model.encoder
    with torch.no_grad():
        stem = encoder.relu(encoder.bn1(encoder.conv1(x)))
        first = encoder.layer1(encoder.maxpool(stem))
        second = encoder.layer2(first)
        third = encoder.layer3(second)
        activation = encoder.layer4(third)
    activation.requires_grad_(True)
    logits = model.segmentation_head(model.decoder([x, stem, first, second, third, activation]))
    predicted = logits.detach().argmax(1)
    maps = []
    for index, k in enumerate(classes):
        score = (logits[:, k] * (predicted == k)).sum()
        (gradient,) = torch.autograd.grad(score, activation, retain_graph=index < len(classes) - 1)
        with torch.no_grad():
            weights = gradient.mean((2, 3), keepdim=True) if method == "gradcam" else gradient
            cam = (weights * activation).sum(1, keepdim=True).clamp_min(0)
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            low = cam.flatten(1).amin(1).view(-1, 1, 1)
            high = cam.flatten(1).amax(1).view(-1, 1, 1)
            maps.append((cam - low) / (high - low + 1e-7))
    return maps


def predicted_mask(model, x: torch.Tensor, k: int) -> np.ndarray:
    """Where the model predicts class ``k`` (computed once, outside the timings)."""
    with torch.no_grad():
        return (model(x).argmax(1)[0] == k).float().numpy()


def familiar(module, model, x: torch.Tensor, k: int, method: str, mask: np.ndarray) -> np.ndarray:
    """The familiar call as a user of either library writes it for class ``k``."""
    cls = {"gradcam": module.GradCAM, "hirescam": module.HiResCAM}[method]
    cam = cls(model=model, target_layers=[model.encoder.layer4])
    return cam(input_tensor=x, targets=[SemanticSegmentationTarget(k, mask)])


def contenders(model, x, classes, method, peer):
    k = classes[0]
    mask = predicted_mask(model, x, k)

    def forward():
        with torch.no_grad():
            model(x)

    runs = {
        "forward": forward,
        "lean": lambda: lean(model, x, [k], method),
        "camlens familiar": lambda: familiar(camlens, model, x, k, method, mask),
        "explain_segmentation": lambda: camlens.explain_segmentation(
            model, x, classes=[k], methods=[method], layers="encoder.layer4"
        ),
        "lean all": lambda: lean(model, x, classes, method),
        "explain_segmentation all": lambda: camlens.explain_segmentation(
            model, x, classes=classes, methods=[method], layers="encoder.layer4"
        ),
    }
    if peer is not None:
        runs["pytorch-grad-cam familiar"] = lambda: familiar(peer, model, x, k, method, mask)
    return runs


def _setup(size: int, classes: int):
    torch.manual_seed(0)
    model = deeplabv3plus_resnet50(num_classes=classes).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        present = sorted(set(model(x).argmax(1).unique().tolist()))
    return model, x, present


def _memory(size: int, classes: int, method: str, name: str) -> float:
    """Peak RSS (GiB) of a fresh child running one contender twice: its own ``VmHWM``
    (``ru_maxrss`` would include this parent's resident set at the fork)."""
    command = [sys.executable, __file__, "--child", name, "--sizes", str(size), "--classes",
               str(classes), "--method", method]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"memory child {name} failed: {done.stderr[-500:]}")
    return int(done.stdout.split()[-1]) / 2**20


def _high_water_kib() -> int:
    """This process's peak resident set (``VmHWM``, KiB), fresh since its ``exec``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--classes", type=int, default=13)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="hirescam", help=argparse.SUPPRESS)
    parser.add_argument("--methods", default=",".join(METHODS))
    add_clock_options(parser)
    args = parser.parse_args()
    clock = use_clock_options(args)
    peer = import_pytorch_grad_cam()
    if args.child:
        model, x, present = _setup(int(args.sizes), args.classes)
        run = contenders(model, x, present, args.method, peer)[args.child]
        run()
        run()
        print(_high_water_kib())
        return
    print(machine_line(), "|", clock)
    for size in [int(s) for s in args.sizes.split(",")]:
        model, x, present = _setup(size, args.classes)
        for method in args.methods.split(","):
            maps = lean(model, x, present[:1], method)[0][0].numpy()
            mask = predicted_mask(model, x, present[0])
            ours = familiar(camlens, model, x, present[0], method, mask)[0]
            print(f"{size}² {method}: max |camlens − lean| = {np.abs(ours - maps).max():.2e}")
            times = time_interleaved(contenders(model, x, present, method, peer), args.repeats)
            unit = times["forward"]
            print(f"\n{size}², {method}, {len(present)} classes predicted\n")
            print(
                "| contender | median s | × forward | × lean |"
                + (" peak RSS |" if args.memory else "")
            )
            print("|---|---|---|---|" + ("---|" if args.memory else ""))
            for name, seconds in times.items():
                floor = times["lean all"] if name.endswith("all") else times["lean"]
                row = f"| {name} | {seconds:.3f} | {seconds / unit:.2f} | {seconds / floor:.3f} |"
                if args.memory:
                    row += f" {_memory(size, args.classes, method, name):.2f} GiB |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
