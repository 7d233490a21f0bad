"""AblationCAM on the seed's model: DeepLabV3+-R50 at ``encoder.layer4``, time per channel.

DeepLabV3+'s decoder reads ``encoder.layer1`` as well as ``layer4``, so an ablated batch of
``layer4`` outputs meets a batch-1 skip feature: the *expand* re-run cannot serve it, and
before the *vmap* re-run existed every ablation ran the whole model (``rerun="full"``).
``rerun="auto"`` now vectorises the forward pass over the ablations, so the encoder up to
``layer4`` and the skip features are computed once per chunk. Side by side in one run,
interleaved (median of ``--repeats``): ``full`` and ``auto`` on the first ``--channels``
strongest channels (``ratio``) at two channel counts, the marginal time per channel and the
whole-layer (2048 channels) extrapolation; the maps of both are compared (max abs difference
of the raw maps).

    python bench/bench_ablation.py [--sizes 512,1024] [--channels 16,48] [--repeats 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, time_interleaved

import camlens
from camlens.models import deeplabv3plus_resnet50

CHANNELS = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--channels", default="16,48")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(machine_line())
    few, many = (int(c) for c in args.channels.split(","))
    for size in [int(s) for s in args.sizes.split(",")]:
        measure(size, few, many, args.repeats)


def measure(size: int, few: int, many: int, repeats: int) -> None:
    """One size: ``full`` against ``auto`` at two channel counts; the marginal time per
    channel is the difference over the extra channels (fixed costs — the probe of the
    memory footprint, the unablated pass, the first chunk's attempt of the expanded re-run —
    cancel out), and a whole layer is extrapolated from it."""
    torch.manual_seed(0)
    model = deeplabv3plus_resnet50(num_classes=13).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        k = int(model(x).argmax(1).flatten().mode().values)
    results = {}

    def run(mode: str, channels: int):
        def call() -> None:
            results[mode, channels] = camlens.explain_segmentation(
                model, x, classes=[k], methods=["ablationcam"], layers="encoder.layer4",
                options={"ratio": channels / CHANNELS, "rerun": mode},
            ).layer_maps["ablationcam"][0]  # fmt: skip

        return call

    contenders = {(mode, n): run(mode, n) for mode in ("full", "auto") for n in (few, many)}
    times = time_interleaved(contenders, repeats, 1)  # warm-up: vmap and allocator first-use costs
    difference = max(float((results["full", n] - results["auto", n]).abs().max())
                     for n in (few, many))  # fmt: skip
    print(f"\n{size}², class {k}: {few} and {many} channels\n")
    print(f"| re-run | {few} ch, s | {many} ch, s | marginal s / channel | 2048 channels "
          "(extrapolated) |")  # fmt: skip
    print("|---|---|---|---|---|")
    marginal = {}
    for mode in ("full", "auto"):
        marginal[mode] = (times[mode, many] - times[mode, few]) / (many - few)
        whole = times[mode, few] + (CHANNELS - few) * marginal[mode]
        print(f"| {mode} | {times[mode, few]:.1f} | {times[mode, many]:.1f} | "
              f"{marginal[mode]:.3f} | {whole / 60:.1f} min |")  # fmt: skip
    print(f"\nmarginal speed-up {marginal['full'] / marginal['auto']:.2f}×; max |full − auto| "
          f"= {difference:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
