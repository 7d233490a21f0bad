"""AblationCAM on the seed's model: DeepLabV3+-R50 at ``encoder.layer4``, time per channel.

DeepLabV3+'s decoder reads ``encoder.layer1`` as well as ``layer4``, so an ablated batch of
``layer4`` outputs meets a batch-1 skip feature: the *expand* re-run cannot serve it, and
before the *vmap* re-run existed every ablation ran the whole model (``rerun="full"``).
``rerun="auto"`` vectorises the forward pass over the ablations, so the encoder up to
``layer4`` and the skip features are computed once per chunk (*vmap*), and runs the linear
modules that read ``layer4`` (the ASPP branches' convolutions and batch norms) once,
subtracting each ablated channel's contribution (*linear*, ``camlens.methods.linear_suffix``).
Side by side in one run, interleaved (median of ``--repeats``): ``full``, ``vmap`` (``auto``
with the linear shortcut switched off by patching its discovery) and ``auto`` on the first
``--channels`` strongest channels (``ratio``) at two channel counts, the marginal time per
channel and the whole-layer (2048 channels) extrapolation; the raw maps are compared with
``full``'s (max abs difference, and relative to the largest value), and with ``--float64``
each mode's map at the smaller count against whole-model re-runs in float64: a score drop is
a small difference of two large sums, so float32 rounding shows in it; the float64 run says
how large that rounding is for each way of computing the drops.

    python bench/bench_ablation.py [--sizes 512,1024] [--channels 16,48] [--repeats 1]
        [--modes full,vmap,auto] [--warmup 1] [--threads N --cpu-time] [--float64]

On a shared machine, ``--threads 1 --cpu-time`` measures the process's CPU time
(``time.process_time``) instead of wall time: with one torch thread, time spent descheduled
is not counted, so other load hardly moves the figures.

With ``--estimate N`` it instead checks the estimate that AblationCAM prints after its first
chunk (the ``SlowRunWarning``, forced by setting the threshold to 0): one ``auto`` run over
the ``N`` strongest channels in the familiar API (``AblationCAM(...)(x, targets)`` with a
``SemanticSegmentationTarget`` over the predicted mask), the printed estimate beside the
measured wall time of the whole call.

    python bench/bench_ablation.py --sizes 512 --estimate 256
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import re
import time
import warnings
from contextlib import nullcontext
from unittest import mock

from common import add_clock_options, machine_line, time_interleaved, use_clock_options

import camlens
from camlens.compat import AblationCAM
from camlens.errors import SlowRunWarning
from camlens.methods import ablation, perturbation
from camlens.methods.linear_suffix import NoShortcut
from camlens.models import deeplabv3plus_resnet50
from camlens.targets import SemanticSegmentationTarget

CHANNELS = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--channels", default="16,48")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", default="full,vmap,auto")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--estimate", type=int, default=0, help="channels; see above")
    add_clock_options(parser)
    parser.add_argument("--float64", action="store_true", help="also compare with float64")
    args = parser.parse_args()
    clock = use_clock_options(args)
    print(machine_line(), "|", clock)
    few, many = (int(c) for c in args.channels.split(","))
    modes = args.modes.split(",")
    for size in [int(s) for s in args.sizes.split(",")]:
        if args.estimate:
            check_estimate(size, args.estimate)
        else:
            measure(size, few, many, args.repeats, modes, args.warmup, args.float64)


def check_estimate(size: int, channels: int) -> None:
    """The printed estimate of one familiar-API run against its measured wall time."""
    torch.manual_seed(0)
    model = deeplabv3plus_resnet50(num_classes=13).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        predicted = model(x).argmax(1)[0]
    k = int(predicted.flatten().mode().values)
    target = SemanticSegmentationTarget(k, (predicted == k).float())
    cam = AblationCAM(model, [model.encoder.layer4], ratio_channels_to_ablate=channels / CHANNELS)
    with (
        mock.patch.object(perturbation, "SLOW_RUN_SECONDS", 0.0),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        started = time.perf_counter()
        cam(x, [target])
        elapsed = time.perf_counter() - started
    messages = [str(w.message) for w in caught if issubclass(w.category, SlowRunWarning)]
    if not messages:
        print(f"\n{size}²: no estimate printed (the run fitted in one chunk); {elapsed:.1f} s")
        return
    printed = messages[0]
    per_copy = float(re.search(r"\(([\d.e-]+) s each", printed).group(1))
    runs = int(re.search(r"for (\d+) re-runs", printed).group(1))
    said = re.search(r"about ([^ ]+ [a-z]+) for", printed).group(1)
    print(f"\n{size}², class {k}, {runs} channels (familiar AblationCAM, progress bar on)\n")
    print(f"printed: {printed}\n")
    print("| printed estimate | measured wall time | measured / printed |")
    print("|---|---|---|")
    value, unit = said.split()
    seconds = float(value) * {"s": 1, "min": 60, "h": 3600}[unit]
    print(f"| {said} (rate {per_copy:.3g} s × {runs}) | {elapsed:.1f} s | "
          f"{elapsed / seconds:.2f} |")  # fmt: skip


def _no_shortcut(*_args, **_kwargs):
    raise NoShortcut("switched off by the benchmark")


def measure(
    size: int, few: int, many: int, repeats: int, modes: list[str], warmup: int, exact: bool
) -> None:
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
            patch = (mock.patch.object(ablation.LinearSuffix, "find", _no_shortcut)
                     if mode == "vmap" else nullcontext())  # fmt: skip
            with patch:
                results[mode, channels] = camlens.explain_segmentation(
                    model, x, classes=[k], methods=["ablationcam"], layers="encoder.layer4",
                    options={"ratio": channels / CHANNELS,
                             "rerun": "full" if mode == "full" else "auto"},
                ).layer_maps["ablationcam"][0]  # fmt: skip

        return call

    contenders = {(mode, n): run(mode, n) for mode in modes for n in (few, many)}
    for _ in range(warmup):  # vmap's and the allocator's first-use costs; the few-channel
        for mode in modes:  # runs suffice for that
            contenders[mode, few]()
    times = time_interleaved(contenders, repeats, 0)
    print(f"\n{size}², class {k}: {few} and {many} channels\n")
    print(f"| re-run | {few} ch, s | {many} ch, s | marginal s / channel | 2048 channels "
          "(extrapolated) |")  # fmt: skip
    print("|---|---|---|---|---|")
    marginal = {}
    for mode in modes:
        marginal[mode] = (times[mode, many] - times[mode, few]) / (many - few)
        whole = times[mode, few] + (CHANNELS - few) * marginal[mode]
        print(f"| {mode} | {times[mode, few]:.1f} | {times[mode, many]:.1f} | "
              f"{marginal[mode]:.3f} | {whole / 60:.1f} min |")  # fmt: skip
    print()
    for mode in modes:
        if mode == modes[0]:
            continue
        reference = results[modes[0], many]
        difference = max(float((results[modes[0], n] - results[mode, n]).abs().max())
                         for n in (few, many))  # fmt: skip
        print(f"{mode}: marginal speed-up over {modes[0]} "
              f"{marginal[modes[0]] / marginal[mode]:.2f}×; max |{modes[0]} − {mode}| = "
              f"{difference:.2e} ({difference / float(reference.abs().max()):.1e} of the "
              "largest value)")  # fmt: skip
    if exact:
        _against_float64(model, x, k, few, {mode: results[mode, few] for mode in modes})


def _against_float64(model, x, k: int, channels: int, maps: dict[str, torch.Tensor]) -> None:
    """Every mode's float32 raw map against whole-model re-runs in float64 (same channels)."""
    exact = camlens.explain_segmentation(
        copy.deepcopy(model).double(), x.double(), classes=[k], methods=["ablationcam"],
        layers="encoder.layer4", options={"ratio": channels / CHANNELS, "rerun": "full"},
    ).layer_maps["ablationcam"][0]  # fmt: skip
    scale = float(exact.abs().max())
    print(f"\nagainst float64 whole-model re-runs ({channels} channels):")
    for mode, value in maps.items():
        error = float((value.double() - exact).abs().max())
        print(f"  {mode}: max abs error {error:.2e} ({error / scale:.1e} of the largest value)")


if __name__ == "__main__":
    main()
