"""ScoreCAM at the floor: camlens before and after its exact speed-ups, against
pytorch-grad-cam 1.5.7, at equal batch size, timed interleaved in one process.

Case: ResNet-50 (``camlens.models.resnet50``, random weights, seed 0; ``bench/common.py``),
one 224×224 image (``--size``), class 281, target layers ``--layers`` (default
``layer3[-1]`` with 1,024 channels and ``layer4[-1]`` with 2,048); the layer ``demo`` is the
trained demo shortcut classifier's ``layer4[-1]`` (128 channels, many dead) on 8 patches.
Contenders (``--contenders``):

* ``before``: camlens' ScoreCAM loop as it was before these speed-ups (one masked forward
  pass per channel, contiguous inputs), kept here as :func:`masked_score_maps_before` and
  swapped in for the timed call only;
* ``after``: camlens' ScoreCAM as shipped (channels with equal maps share a re-run,
  ``channels_last`` masked inputs on the CPU);
* ``contiguous``: ``after`` with ``memory_format="contiguous"`` (only the shared re-runs);
* ``bf16``: ``after`` with ``precision="bfloat16"`` (not exact: its agreement is printed);
* ``pgc``: pytorch-grad-cam's ``ScoreCAM`` with ``batch_size`` set to the same value.

Each round runs every contender once, the order rotating from round to round, so that load
from other processes hits all alike; the table gives the median over ``--rounds`` rounds
(per layer: ``--rounds 3,1``). The final [0, 1] maps of every contender are compared with
pytorch-grad-cam's and with camlens' ``before`` (max |difference|, Pearson r). The script
also counts each layer's channels whose activation map is all zero (dead after the ReLU).

    bench/.env-gradcam/bin/python bench/bench_scorecam.py [--layers layer3[-1],layer4[-1]]
        [--rounds 3,1] [--contenders before,after,pgc,bf16] [--batch-size 16] [--threads 1]

With ``--paired N`` it times only the masked forward pass, chunk by chunk, in its old and
new form (see :func:`paired`): on a machine whose load changes by the minute, the per-chunk
ratios are far steadier than whole runs minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import import_pytorch_grad_cam, machine_line, make_case

import camlens
import camlens.methods.score as score_module
from camlens.layers import resolve_layers
from camlens.methods.perturbation import (
    WORKING_MEMORY_FACTOR,
    chunk_size,
    probe_footprint,
    reruns,
    weighted_maps,
)
from camlens.methods.registry import RunContext
from camlens.methods.score import Perturb, channel_masks, selected_channels


def masked_score_maps_before(
    context: RunContext,
    *,
    description: str,
    copies: int = 1,
    perturb: Perturb | None = None,
    **_later_options: Any,
) -> list[torch.Tensor]:
    """camlens' ScoreCAM loop before the speed-ups (every selected channel re-run, masked
    inputs in the input's own layout): the baseline that ``after`` is measured against."""
    options = context.options
    top_k = options["top_k"]
    inputs = context.inputs
    batch, size = inputs.shape[0], tuple(inputs.shape[2:])
    selections = [selected_channels(activations, top_k) for activations in context.activations]
    item = 0
    if options["batch_size"] is None:
        footprint = probe_footprint(context.model, inputs[:1])
        perturbed = (inputs[0].numel() + inputs[0, 0].numel()) * inputs.element_size()
        item = WORKING_MEMORY_FACTOR * footprint.whole + perturbed
    chunk = chunk_size(options, item)
    total = batch * copies * sum(int(s.shape[1]) for s in selections)
    maps = []
    with reruns(context, description=description, total=total) as run:
        for activations, selected in zip(context.activations, selections, strict=True):
            weights = torch.zeros(
                batch,
                context.num_targets,
                activations.shape[1],
                dtype=activations.dtype,
                device=activations.device,
            )
            for image in range(batch):
                scores = []
                pairs = torch.arange(selected.shape[1] * copies, device=selected.device)
                for pair in pairs.split(chunk):
                    channels = selected[image][pair // copies]
                    with torch.inference_mode():
                        masks = channel_masks(activations[image, channels], size)
                        if perturb is not None:
                            masks = perturb(masks, pair % copies)
                        masked = inputs[image : image + 1] * masks.unsqueeze(1).to(inputs.dtype)
                    scores.append(run.scores(masked, image, len(channels)))
                    run.advance(len(channels))
                values = torch.cat(scores).to(weights.dtype)
                if copies > 1:
                    values = values.reshape(-1, copies, values.shape[1]).mean(dim=1)
                softmax = torch.softmax(values, dim=0)
                weights[image][:, selected[image]] = softmax.T
            maps.append(weighted_maps(weights, activations, context.eigen_smooth))
    return maps


def contenders(
    names: list[str], case: Any, layer: torch.nn.Module, category: int, batch_size: int
) -> dict[str, Callable[[], np.ndarray]]:
    """name → a call that returns the contender's final maps ``(B, H, W)`` as numpy."""
    target = [camlens.targets.ClassifierOutputTarget(category)] * len(case.inputs)

    def camlens_run(**options: Any) -> Callable[[], np.ndarray]:
        cam = camlens.Explainer(
            case.model, [layer], method="scorecam", options={"batch_size": batch_size, **options}
        )
        return lambda: cam(case.inputs, target)

    def before() -> np.ndarray:
        with mock.patch.object(score_module, "masked_score_maps", masked_score_maps_before):
            return after()

    after = camlens_run()
    runs: dict[str, Callable[[], np.ndarray]] = {
        "before": before,
        "after": after,
        "contiguous": camlens_run(memory_format="contiguous"),
        "bf16": camlens_run(precision="bfloat16"),
    }
    if "pgc" in names:
        reference = import_pytorch_grad_cam()
        assert reference is not None, "run with bench/.env-gradcam/bin/python"
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        theirs = reference.ScoreCAM(case.model, [layer])
        theirs.batch_size = batch_size
        theirs_target = [ClassifierOutputTarget(category)] * len(case.inputs)
        runs["pgc"] = lambda: theirs(input_tensor=case.inputs, targets=theirs_target)
    return {name: runs[name] for name in names}


def _agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    difference = float(np.abs(reference - other).max())
    correlation = float(np.corrcoef(reference.ravel(), other.ravel())[0, 1])
    return {"max_abs_diff": difference, "pearson": correlation}


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def dead_channels(case: Any, layer: torch.nn.Module) -> tuple[int, int]:
    """(all-zero channels summed over the images, channels × images) of ``layer``'s
    output on the case's inputs."""
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.setdefault("out", out))
    with torch.no_grad():
        case.model(case.inputs)
    handle.remove()
    flat = store["out"].flatten(2)
    return int((flat == 0).all(dim=2).sum()), int(flat.shape[0] * flat.shape[1])


def demo_case() -> tuple[Any, int]:
    """The demo's trained shortcut classifier (ResNet-style, 128 channels at ``layer4``) on
    8 of its 96×96 patches, and the class explained (1, the lesion)."""
    from common import Case

    from camlens.demo.models import load_demo_model
    from camlens.demo.patches import make_shortcut_dataset
    from camlens.demo.train import normalise

    model = load_demo_model("shortcut_leaky").eval()
    inputs = normalise(make_shortcut_dataset(7, 8, 96, leak=True)["images"])
    return Case("demo-shortcut", model, model.layer4[-1], inputs, []), 1


def measure(args: argparse.Namespace, layer_name: str, rounds: int) -> dict[str, Any]:
    """Time every contender ``rounds`` times (order rotating) on one target layer
    (``demo``: the demo classifier's ``layer4[-1]``)."""
    if layer_name == "demo":
        case, category = demo_case()
        layer = case.layer
    else:
        case, category = make_case("resnet50", 1, args.size), 281
        layer = resolve_layers(case.model, layer_name)[0]
    dead, channels = dead_channels(case, layer)
    print(f"# {layer_name}: {dead} of {channels} channel maps all zero", flush=True)
    runs = contenders(args.contenders, case, layer, category, args.batch_size)
    with torch.no_grad():
        case.model(case.inputs)  # warm-up forward pass
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    maps: dict[str, np.ndarray] = {}
    names = list(runs)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            result = runs[name]()
            seconds[name].append(time.perf_counter() - start)
            maps.setdefault(name, np.asarray(result, dtype=np.float32))
            print(f"# {layer_name} round {index + 1} {name}: {seconds[name][-1]:.1f} s", flush=True)
        print(f"# {_load()}", flush=True)
    agreement = {
        f"{name} vs {reference}": _agreement(maps[reference], maps[name])
        for reference in ("pgc", "before")
        if reference in maps
        for name in maps
        if name != reference
    }
    return {
        "layer": layer_name,
        "channels": channels,
        "dead": dead,
        "rounds": rounds,
        "seconds": seconds,
        "agreement": agreement,
    }


def paired(args: argparse.Namespace, layer_name: str) -> dict[str, list[float]]:
    """Chunk-by-chunk paired timing of one masked forward pass (batch ``--batch-size``, the
    layer's first ``--paired`` chunks of real masks): the contiguous input under
    ``torch.no_grad`` (pytorch-grad-cam's and camlens' old pass), the ``channels_last``
    input under ``torch.inference_mode`` (camlens' new pass), and the same under bfloat16
    autocast. The variants of one chunk run back to back, order rotating, so that load
    changes between chunks cancel out of the per-chunk ratios."""
    case = make_case("resnet50", 1, args.size)
    layer = resolve_layers(case.model, layer_name)[0]
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.setdefault("out", out))
    with torch.no_grad():
        case.model(case.inputs)
    handle.remove()
    activations, size = store["out"][0], tuple(case.inputs.shape[2:])

    def forward(layout: torch.memory_format, bf16: bool, masks: torch.Tensor) -> None:
        mode = torch.no_grad() if layout == torch.contiguous_format else torch.inference_mode()
        with mode, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            case.model(score_module.masked_inputs(case.inputs[:1], masks, layout))

    variants = {
        "contiguous, no_grad (pgc, before)": (torch.contiguous_format, False),
        "channels_last (after)": (torch.channels_last, False),
        "channels_last, bf16": (torch.channels_last, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for index in range(args.paired):
        batch = slice(index * args.batch_size, (index + 1) * args.batch_size)
        with torch.no_grad():
            masks = channel_masks(activations[batch], size)
        for name in names[index % 3 :] + names[: index % 3]:
            start = time.perf_counter()
            forward(*variants[name], masks)
            times[name].append(time.perf_counter() - start)
    return times


def print_paired(layer_name: str, times: dict[str, list[float]]) -> None:
    """The paired per-chunk table: median seconds and per-chunk ratios to the first."""
    base = next(iter(times.values()))
    print(f"| `{layer_name}` chunk of 16 | median (s) | per-chunk ratio: median (range) |")
    print("|---|---|---|")
    for name, values in times.items():
        ratios = [b / a for a, b in zip(base, values, strict=True)]
        print(
            f"| {name} | {statistics.median(values):.2f} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.3f}–{max(ratios):.3f}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="layer3[-1],layer4[-1]")
    parser.add_argument("--rounds", default="3,1", help="rounds per layer, comma-separated")
    parser.add_argument("--contenders", default="before,after,pgc,bf16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="ResNet-50 input size")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--paired", type=int, default=0, help="only the paired per-chunk timing, of N chunks"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.paired:
        print(f"# {machine_line()}")
        print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
        print(f"# start: {_load()}", flush=True)
        for layer_name in args.layers.split(","):
            print_paired(layer_name, paired(args, layer_name))
        print(f"# end: {_load()}")
        return
    args.contenders = args.contenders.split(",")
    layers = args.layers.split(",")
    rounds = [int(r) for r in args.rounds.split(",")]
    rounds += [rounds[-1]] * (len(layers) - len(rounds))
    print(f"# {machine_line()}")
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"# start: {_load()}", flush=True)
    results = [measure(args, layer, count) for layer, count in zip(layers, rounds, strict=False)]
    print(f"# end: {_load()}")
    print()
    print("| layer (maps, all zero) | contender | median (s) | runs (s) | × pgc | × before |")
    print("|---|---|---|---|---|---|")
    for result in results:
        medians = {name: statistics.median(v) for name, v in result["seconds"].items()}
        for name, median in medians.items():
            runs = ", ".join(f"{s:.1f}" for s in result["seconds"][name])
            pgc = f"{median / medians['pgc']:.2f}" if "pgc" in medians else "–"
            before = f"{median / medians['before']:.2f}" if "before" in medians else "–"
            label = f"`{result['layer']}` ({result['channels']}, {result['dead']})"
            print(f"| {label} | {name} | {median:.1f} | {runs} | {pgc} | {before} |")
    print()
    print("| layer | maps | max abs diff | Pearson r |")
    print("|---|---|---|---|")
    for result in results:
        for pair, value in result["agreement"].items():
            print(
                f"| `{result['layer']}` | {pair} | {value['max_abs_diff']:.2e} | "
                f"{value['pearson']:.6f} |"
            )
    print()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
