"""ROAD's noisy linear imputation: the multigrid-preconditioned solver against the Jacobi-CG
reference, side by side in one run, and the end-to-end ``road`` metric before and after.

Per image size (224², 512²), attribution map (a smooth two-bump map, as CAMs are, and a
random one) and removal share (10 … 90 %, MoRF: the most relevant pixels removed), one
``(1, 3, H, W)`` image (smoothed noise) is imputed with ``noise_std=0`` and the default
``tolerance=1e-5`` by ``solver="cg"`` and ``solver="multigrid"``, alternating the two
(order rotated each repeat); medians of ``--repeats`` of wall time and of process CPU time
(the CPU time is the steadier figure on a shared machine). Also: iterations (CG: operator
applications; multigrid: outer iterations), the final relative residual
``‖b − A x‖ / ‖b‖`` recomputed in float64 by an independent ``conv2d`` operator (worst
channel), and max |difference| between the two results.

End to end: :func:`camlens.metrics.road` (9 percentiles, MoRF and LeRF: 18 imputations in
one batch) on ``tiny_resnet`` for one 224² image and a smooth map, with the imputation
forced to ``"cg"`` (before) or left at the default (after).

    .venv/bin/python bench/bench_road.py [--sizes 224,512] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from camlens.metrics import faithfulness, imputation, road
from camlens.metrics.imputation import IMPUTATION_WEIGHTS, noisy_linear_imputation
from camlens.models import tiny_resnet

SHARES = (10, 30, 50, 70, 90)
SOLVERS = ("cg", "multigrid")


def relevance_map(kind: str, size: int, seed: int = 0) -> torch.Tensor:
    """A ``(size, size)`` map: two Gaussian bumps (``smooth``) or uniform noise."""
    if kind == "random":
        return torch.rand(size, size, generator=torch.Generator().manual_seed(seed))
    rows = torch.linspace(-1, 1, size)[:, None]
    columns = torch.linspace(-1, 1, size)[None, :]
    first = torch.exp(-((columns - 0.2) ** 2 + (rows + 0.1) ** 2) / 0.3)
    return first + 0.5 * torch.exp(-((columns + 0.5) ** 2 + (rows - 0.4) ** 2) / 0.1)


def most_relevant_first(relevance: torch.Tensor, share: float) -> torch.Tensor:
    """``(1, H, W)``: the ``share`` % most relevant pixels (ties in raster order)."""
    order = relevance.flatten().argsort(descending=True, stable=True).argsort()
    return (order < round(share / 100 * relevance.numel())).view(1, *relevance.shape)


def relative_residual(inputs: torch.Tensor, removed: torch.Tensor, result: torch.Tensor) -> float:
    """The worst channel's ``‖b − A x‖ / ‖b‖`` of ``(D − W_UU) x_U = W_UK x_K``, in float64."""
    channels = inputs.shape[1]
    kernel = IMPUTATION_WEIGHTS.expand(channels, 1, 3, 3)
    unknown = removed[:, None].double()
    values = inputs.double()
    ones = torch.ones_like(values)
    degree = F.conv2d(ones, kernel, padding=1, groups=channels)
    rhs = unknown * F.conv2d(values * (1 - unknown), kernel, padding=1, groups=channels)
    field = result.double() * unknown
    applied = unknown * (degree * field - F.conv2d(field, kernel, padding=1, groups=channels))
    size = rhs.flatten(2).norm(dim=2).clamp_min(1e-300)
    return float(((rhs - applied).flatten(2).norm(dim=2) / size).max())


def iterations(solver: str, inputs: torch.Tensor, removed: torch.Tensor) -> int:
    """CG: operator applications (one per iteration); multigrid: its outer iterations."""
    if solver == "cg":
        original = imputation._conjugate_gradients
        calls = [0]

        def counting(apply: Callable, *args, **kwargs):
            def counted(field: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                return apply(field)

            return original(counted, *args, **kwargs)

        imputation._conjugate_gradients = counting
        try:
            noisy_linear_imputation(inputs, removed, noise_std=0.0, solver="cg")
        finally:
            imputation._conjugate_gradients = original
        return calls[0]
    original_mg = imputation.multigrid_conjugate_gradients
    found = [0]

    def recording(*args, **kwargs):
        solution, count = original_mg(*args, **kwargs)
        found[0] = count
        return solution, count

    imputation.multigrid_conjugate_gradients = recording
    try:
        noisy_linear_imputation(inputs, removed, noise_std=0.0)
    finally:
        imputation.multigrid_conjugate_gradients = original_mg
    return found[0]


def timed(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple]:
    """Median (wall, CPU) seconds per contender, alternating them, order rotated per repeat."""
    for run in contenders.values():
        run()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            contenders[name]()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: tuple(statistics.median(column) for column in zip(*values, strict=True))
        for name, values in samples.items()
    }


def imputation_table(sizes: list[int], repeats: int) -> None:
    """One row per (size, map, share)."""
    print(
        "| size | map | removed | CG wall / CPU (ms) | multigrid wall / CPU (ms) | speedup "
        "(CPU) | iterations CG / MG | residual CG / MG | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        generator = torch.Generator().manual_seed(size)
        inputs = F.avg_pool2d(torch.rand(1, 3, size, size, generator=generator), 5, 1, 2)
        for kind in ("smooth", "random"):
            relevance = relevance_map(kind, size)
            for share in SHARES:
                removed = most_relevant_first(relevance, share)
                results = {
                    solver: noisy_linear_imputation(inputs, removed, noise_std=0.0, solver=solver)
                    for solver in SOLVERS
                }
                times = timed(
                    {
                        solver: functools.partial(
                            noisy_linear_imputation, inputs, removed, noise_std=0.0, solver=solver
                        )
                        for solver in SOLVERS
                    },
                    repeats,
                )
                (cg_wall, cg_cpu), (mg_wall, mg_cpu) = times["cg"], times["multigrid"]
                counts = [iterations(solver, inputs, removed) for solver in SOLVERS]
                residuals = [relative_residual(inputs, removed, results[s]) for s in SOLVERS]
                difference = float((results["cg"] - results["multigrid"]).abs().max())
                print(
                    f"| {size}² | {kind} | {share} % | {cg_wall * 1e3:.0f} / {cg_cpu * 1e3:.0f} "
                    f"| {mg_wall * 1e3:.0f} / {mg_cpu * 1e3:.0f} | {cg_cpu / mg_cpu:.1f}× "
                    f"| {counts[0]} / {counts[1]} | {residuals[0]:.1e} / {residuals[1]:.1e} "
                    f"| {difference:.1e} |",
                    flush=True,
                )


def end_to_end(repeats: int) -> None:
    """``road`` on tiny_resnet, one 224² image, imputation by CG (before) and multigrid."""
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=10).eval()
    inputs = F.avg_pool2d(torch.rand(1, 3, 224, 224), 5, 1, 2)
    maps = relevance_map("smooth", 224)[None]
    default = faithfulness.noisy_linear_imputation
    reference = functools.partial(default, solver="cg")

    def run(function: Callable) -> Callable[[], object]:
        def call() -> object:
            faithfulness.noisy_linear_imputation = function
            try:
                return road(model, inputs, maps, targets=[0])
            finally:
                faithfulness.noisy_linear_imputation = default

        return call

    gaps = {name: float(run(f)().gap[0]) for name, f in (("cg", reference), ("mg", default))}
    times = timed({"cg": run(reference), "multigrid": run(default)}, repeats)
    (cg_wall, cg_cpu), (mg_wall, mg_cpu) = times["cg"], times["multigrid"]
    print("\n| road, tiny_resnet, 1 × 224² | wall (ms) | CPU (ms) | gap |")
    print("|---|---|---|---|")
    print(f"| before (cg) | {cg_wall * 1e3:.0f} | {cg_cpu * 1e3:.0f} | {gaps['cg']:.6f} |")
    print(f"| after (multigrid) | {mg_wall * 1e3:.0f} | {mg_cpu * 1e3:.0f} | {gaps['mg']:.6f} |")
    print(f"| speedup | {cg_wall / mg_wall:.1f}× | {cg_cpu / mg_cpu:.1f}× | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    imputation_table([int(size) for size in arguments.sizes.split(",")], arguments.repeats)
    end_to_end(arguments.repeats)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
