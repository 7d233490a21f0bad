"""``camlens slide`` on large synthetic slides: peak memory against slide size, tiles/s, and
where the time goes (the model's own time against reading, stitching and writing).

* **Slides**: ``camlens.demo.slide.write_synthetic_slide`` (the demo's tissue as a mosaic of
  seeded sections, 0.5 µm/px, pyramidal zlib TIFF), one per ``--sizes`` side, cached in
  ``--workdir`` (writing a 50,000² slide takes minutes; the time is printed once).
* **Run**: one fresh child process per slide running ``camlens.slide.explain_slide`` with
  the shipped demo segmenter at ``--mpp`` (1 µm/px: the field of view it was trained on),
  ``--tile`` tiles with 64 px overlap, canvas 8× coarser, both ``--methods``, all 7 classes,
  tissue detected, viewer written. Its peak resident set is ``ru_maxrss`` from ``os.wait4``
  (that child alone).
* **Timers** inside the child: the model's own time is every ``explain_segmentation`` call
  (forward, gradients, maps); reading is the reader threads' time (overlapped with the
  model, so not on the critical path); stitching and the outputs (pyramidal TIFFs, Deep
  Zoom tiles and viewer, GeoJSON) are timed as phases. Overhead = (wall time − model
  time) / model time.

    python bench/bench_slide.py [--sizes 20000,50000] [--tile 1024] [--mpp 1.0]
        [--workdir /tmp/camlens-slide-bench] [--methods hirescam,gradcam]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _child(args: argparse.Namespace) -> None:
    import torch

    import camlens.jobs.settings as settings_module
    import camlens.slide.outputs as outputs_module
    import camlens.slide.run as run_module
    from camlens.demo.classes import CLASS_NAMES
    from camlens.demo.models import MEAN, STD, load_demo_model

    torch.set_num_threads(os.cpu_count() or 1)
    timers = {"model": 0.0, "read": 0.0, "stitch": 0.0, "outputs": 0.0}

    def timed(name, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                timers[name] += time.perf_counter() - start

        return wrapper

    settings_module.explain_segmentation = timed("model", settings_module.explain_segmentation)
    run_module.read_analysis = timed("read", run_module.read_analysis)
    run_module.stitch = timed("stitch", run_module.stitch)
    run_module.write_outputs = timed("outputs", outputs_module.write_outputs)
    model = load_demo_model("segmenter")
    start = time.perf_counter()
    result = run_module.explain_slide(
        args.child, model, args.out, layers="encoder.layer4", methods=args.methods.split(","),
        class_names=list(CLASS_NAMES), mpp=args.mpp, tile=args.tile, overlap=64,
        downsample=8, batch_size=4, mean=MEAN, std=STD, progress=False, overwrite=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "tiles": result.tiles, **timers}))


def _slide(workdir: Path, side: int) -> tuple[Path, float | None]:
    from camlens.demo.slide import write_synthetic_slide

    path = workdir / f"synthetic-{side}.tiff"
    if path.exists():
        return path, None
    start = time.perf_counter()
    write_synthetic_slide(path, side, side, mpp=0.5, seed=0)
    return path, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,50000")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--mpp", type=float, default=1.0)
    parser.add_argument("--methods", default="hirescam,gradcam")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/camlens-slide-bench"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for side in [int(s) for s in args.sizes.split(",")]:
        slide, made = _slide(args.workdir, side)
        if made is not None:
            print(f"wrote {slide.name} in {made:.0f} s", flush=True)
        command = [sys.executable, __file__, "--child", str(slide), "--out",
                   str(args.workdir / f"out-{side}"), "--tile", str(args.tile), "--mpp",
                   str(args.mpp), "--methods", args.methods]  # fmt: skip
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        output = child.stdout.read() if child.stdout else ""
        if status != 0:
            raise SystemExit(f"child failed for {side}: {output}")
        numbers = json.loads(output.strip().splitlines()[-1])
        numbers.update(side=side, rss_gib=usage.ru_maxrss / 2**20)
        rows.append(numbers)
        print(json.dumps(numbers), flush=True)
    print()
    print(
        "| slide | tiles | peak RSS | wall | model | tiles/s | read (overlapped) | stitch "
        "| outputs | overhead (wall − model) / model |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        overhead = (r["wall"] - r["model"]) / r["model"]
        cells = [
            f"{r['side']:,}²",
            r["tiles"],
            f"{r['rss_gib']:.2f} GiB",
            f"{r['wall']:.0f} s",
            f"{r['model']:.0f} s",
            f"{r['tiles'] / r['wall']:.2f}",
            f"{r['read']:.0f} s",
            f"{r['stitch']:.1f} s",
            f"{r['outputs']:.1f} s",
            f"{100 * overhead:.1f} %",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
