"""``camlens explain`` as a streamed job: peak memory over growing folders, and throughput
against the old all-in-memory loop.

Every measurement is one fresh child process; its peak resident set is the ``ru_maxrss``
that ``os.wait4`` returns for that child alone (the same number as its ``VmHWM``).

* **Images**: seeded synthetic H&E tiles (``camlens.demo.synthetic.make_tile``) at
  ``--size``², RGB PNG. Painting a 1024² tile takes about a second, so a pool of
  ``--pool`` tiles is painted and every image is one of them under one of the 8 flips /
  rotations, rolled by a seeded offset: every file has different pixels. Each folder size is
  a folder of symlinks to the first N files.
* **Model** (``--model``): a factory file written into the temporary folder, after
  ``torch.manual_seed(0)`` (random weights): ``tiny`` (the default) is
  ``camlens.models.tiny_deeplabv3plus(num_classes=3)``; ``r50`` is the seed users' model,
  ``camlens.models.deeplabv3plus_resnet50(num_classes=13)`` (DeepLabV3+, ResNet-50 encoder).
* **Job**: ``camlens explain DIR --out OUT --model factory.py:model --layer encoder.layer4
  --method hirescam --batch-size 4 --quiet`` (raw maps, PNG overlays per image, manifest,
  summary.json, report.html).
* **Baseline** (what the CLI did before the job runner): decode every image first with
  ``camlens.image.load_image``, then per batch of ``--batch-size`` the ImageNet-normalised
  inputs through ``explain_segmentation(model, batch, classes="present",
  methods=["hirescam"], layers="encoder.layer4")`` and each image's arrays (class ids,
  scores, masks, prediction, raw layer maps, final maps) with ``np.savez_compressed``; no
  overlays, no report.
* **Throughput**: job and baseline over the same ``--rate-count`` images, alternated,
  ``--rounds`` rounds each; images / wall second of the whole child (start-up, imports and
  model loading included for both); medians.
* **Where the job's time goes**: one more job child over ``--profile-count`` images with
  simple timers wrapped around the reader, the engine, the ``.npz`` writer, the overlays
  and report sections, the model loading / checks before the stream, and the final
  summary / report; the engine's calls also record how many classes each batch explained
  and how many each image's prediction holds. The job's overhead is the command's time minus
  the engine's, over the engine's (the writer rows add up the time of the threads that
  write a batch's items, ``camlens.jobs.explain.WRITE_THREADS``, so they can exceed the wall
  time they took; one process, so both see the same load; but a competing
  process slows the multi-threaded engine more than the single-threaded writers, so on a
  loaded machine the ratio comes out lower than on an idle one).

    python bench/bench_jobs.py [--size 1024] [--counts 10,100,1000] [--rate-count 100]
        [--baseline-counts 10] [--rounds 2] [--profile-count 20] [--model tiny]

Only the profile (no memory / throughput children; ``--rate-count`` sets the images painted,
so keep it at most the profile's count):

    python bench/bench_jobs.py --model r50 --size 512 --counts '' --baseline-counts '' \
        --rounds 0 --rate-count 100 --profile-count 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

FACTORY = '''"""The benchmark's model: a seeded {what}."""
import torch

from camlens.models import {name}


def model():
    torch.manual_seed(0)
    return {name}(num_classes={classes})
'''
MODELS = {
    "tiny": FACTORY.format(
        what="tiny DeepLabV3+ with three classes", name="tiny_deeplabv3plus", classes=3
    ),
    "r50": FACTORY.format(
        what="DeepLabV3+ with a ResNet-50 encoder and 13 classes (random weights)",
        name="deeplabv3plus_resnet50",
        classes=13,
    ),
}

LAYER = "encoder.layer4"
METHOD = "hirescam"


# -- images ----------------------------------------------------------------------------------
def make_images(folder: Path, count: int, size: int, pool: int, seed: int = 0) -> None:
    """``count`` distinct PNGs ``00000.png`` … in ``folder`` (see the module docstring)."""
    from PIL import Image

    from camlens.demo.synthetic import make_tile

    rng = np.random.default_rng(seed)
    tiles = []
    for _ in range(min(pool, count)):
        image, _ = make_tile(rng, size)
        tiles.append((image * 255).round().astype(np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        tile = tiles[index % len(tiles)]
        turn = (index // len(tiles)) % 8
        tile = np.rot90(tile, turn % 4)
        if turn >= 4:
            tile = tile[:, ::-1]
        shift = rng.integers(0, size, 2)
        tile = np.roll(tile, (int(shift[0]), int(shift[1])), axis=(0, 1))
        Image.fromarray(np.ascontiguousarray(tile)).save(
            folder / f"{index:05d}.png", compress_level=1
        )


def subset(source: Path, target: Path, count: int) -> Path:
    """A folder of symlinks to the first ``count`` images of ``source``."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.png"))[:count]:
        (target / path.name).symlink_to(path)
    return target


# -- children --------------------------------------------------------------------------------
def run_child(command: list[str], log: Path) -> dict[str, float]:
    """Run ``command``; its wall time and its own peak RSS (MiB) from ``os.wait4``."""
    with open(log, "w") as handle:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}; see {log}")
    return {"wall": wall, "rss": usage.ru_maxrss / 1024}


def job_command(images: Path, out: Path, factory: Path, batch_size: int) -> list[str]:
    return [
        *camlens_command(),
        "explain",
        str(images),
        "--out",
        str(out),
        "--model",
        f"{factory}:model",
        "--layer",
        LAYER,
        "--method",
        METHOD,
        "--batch-size",
        str(batch_size),
        "--quiet",
    ]


def camlens_command() -> list[str]:
    return [sys.executable, "-m", "camlens.cli"]


def baseline(images: Path, out: Path, factory: str, batch_size: int) -> None:
    """The old CLI's loop (module docstring): every image decoded before the first batch."""
    import torch

    from camlens import explain_segmentation
    from camlens.files import collect_images
    from camlens.image import load_image, preprocess_image
    from camlens.loading import load_model

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    model = load_model(factory).eval()
    paths, _ = collect_images([str(images)])
    loaded = [(path, load_image(path)) for path in paths]
    (out / "raw").mkdir(parents=True, exist_ok=True)
    for start in range(0, len(loaded), batch_size):
        batch = loaded[start : start + batch_size]
        inputs = torch.cat([preprocess_image(image, mean, std) for _, image in batch])
        result = explain_segmentation(
            model, inputs, classes="present", methods=[METHOD], layers=LAYER
        )
        for index, (path, _) in enumerate(batch):
            arrays = {
                "classes": np.asarray(result.classes),
                "scores": result.scores[index].cpu().numpy(),
                "masks": (result.masks[index] > 0).cpu().numpy(),
                "predicted": result.predicted[index].cpu().numpy(),
            }
            for number, maps in enumerate(result.layer_maps[METHOD]):
                arrays[f"{METHOD}_layer{number}"] = maps[index].cpu().numpy()
            arrays[f"{METHOD}_maps"] = result[METHOD][index].cpu().numpy()
            np.savez_compressed(out / "raw" / f"{Path(path).stem}.npz", **arrays)


def timed_job(argv: list[str], report: Path) -> None:
    """``camlens explain`` in this process with timers around its stages (seconds summed
    over calls; the reader runs in threads, so its time overlaps the rest)."""
    import torch

    import camlens.cli.explain as cli_explain
    import camlens.jobs.explain as job_explain
    import camlens.jobs.settings as job_settings
    from camlens.cli import main

    totals: dict[str, float] = {}
    batches: list[dict[str, object]] = []
    bookkeeping = [0.0]
    lock = threading.Lock()

    def wrap(module, name: str, label: str) -> None:
        inner = getattr(module, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                result = inner(*args, **kwargs)
            finally:
                with lock:
                    totals[label] = totals.get(label, 0.0) + time.perf_counter() - start
            if name == "explain_segmentation":  # bookkeeping: timed, left out of the command
                seconds, start = time.perf_counter() - start, time.perf_counter()
                present = [int((torch.bincount(p.flatten()) > 0).sum()) for p in result.predicted]
                batches.append({"seconds": seconds, "classes": len(result.classes),
                                "present": present})  # fmt: skip
                with lock:
                    bookkeeping[0] += time.perf_counter() - start
            return result

        setattr(module, name, timed)

    wrap(cli_explain, "read_image", "decode (reader threads)")
    wrap(job_settings, "explain_segmentation", "engine (explain_segmentation)")
    wrap(job_explain, "save_npz", "raw .npz (compressed)")
    wrap(job_explain, "add_segmentation_image", "overlays + report section (PNGs)")
    wrap(cli_explain, "run_plan", "run_plan (the whole stream)")
    wrap(cli_explain, "build_outputs", "summary.json + report.html")
    wrap(cli_explain, "prepare", "prepare (checks, model load, headers)")
    # run_job binds run_plan as a keyword default: point the default at the timed one
    cli_explain.run_job.__kwdefaults__["execute"] = cli_explain.run_plan
    start = time.perf_counter()
    status = main(argv)
    totals["command (after imports)"] = time.perf_counter() - start - bookkeeping[0]
    if "run_plan (the whole stream)" in totals:
        totals["run_plan (the whole stream)"] -= bookkeeping[0]
    report.write_text(
        json.dumps({"timers": totals, "batches": batches, "bookkeeping": bookkeeping[0]})
    )
    if status != 0:
        raise SystemExit(status)


# -- the benchmark ---------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--counts", default="10,100,1000", help="folder sizes for the job")
    parser.add_argument("--baseline-counts", default="10", help="extra baseline memory runs")
    parser.add_argument("--rate-count", type=int, default=100, help="images for throughput")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile-count", type=int, default=20, help="0 to skip")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--pool", type=int, default=12, help="distinct painted tiles")
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny", help="see above")
    parser.add_argument("--workdir", type=Path, default=None, help="default: system temp")
    parser.add_argument("--child", choices=["baseline", "timed-job"], help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--factory", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, rest = parser.parse_args(argv[:split]), argv[split + 1 :]
    if args.child == "baseline":
        baseline(args.images, args.out, args.factory, args.batch_size)
        return
    if args.child == "timed-job":
        timed_job(rest, args.report)
        return

    counts = [int(c) for c in args.counts.split(",") if c]
    baseline_counts = [int(c) for c in args.baseline_counts.split(",") if c]
    needed = max([*counts, *baseline_counts, args.rate_count, args.profile_count])
    work = Path(tempfile.mkdtemp(prefix="bench_jobs_", dir=args.workdir))
    free = shutil.disk_usage(work).free / 2**30
    print(f"# work folder {work}, {free:.0f} GiB free", flush=True)
    try:
        results = run_all(args, work, counts, baseline_counts, needed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_tables(args, results)


def run_all(args, work: Path, counts, baseline_counts, needed: int) -> dict:
    factory = work / "factory.py"
    factory.write_text(MODELS[args.model])
    everything = work / "all"
    start = time.perf_counter()
    make_images(everything, needed, args.size, args.pool)
    print(f"# {needed} images of {args.size}² in {time.perf_counter() - start:.0f} s", flush=True)
    folders = {n: subset(everything, work / f"n{n}", n) for n in {*counts, args.rate_count}}
    folders.update({n: subset(everything, work / f"b{n}", n) for n in baseline_counts})
    folders[args.profile_count] = folders.get(args.profile_count) or subset(
        everything, work / f"p{args.profile_count}", args.profile_count
    )
    job: dict[int, list[dict]] = {}
    old: dict[int, list[dict]] = {}

    def run_job(n: int) -> None:
        out = work / "out"
        command = job_command(folders[n], out, factory, args.batch_size)
        measured = run_child(command, work / "job.log")
        job.setdefault(n, []).append(measured)
        print(f"job      {n:5d} images: {measured['wall']:7.1f} s, {measured['rss']:7.0f} MiB",
              flush=True)  # fmt: skip
        shutil.rmtree(out)

    def run_baseline(n: int) -> None:
        out = work / "out"
        command = [sys.executable, __file__, "--child", "baseline", "--images", str(folders[n]),
                   "--out", str(out), "--factory", f"{factory}:model",
                   "--batch-size", str(args.batch_size)]  # fmt: skip
        measured = run_child(command, work / "baseline.log")
        old.setdefault(n, []).append(measured)
        print(f"baseline {n:5d} images: {measured['wall']:7.1f} s, {measured['rss']:7.0f} MiB",
              flush=True)  # fmt: skip
        shutil.rmtree(out)

    # throughput (and memory) at rate_count: job and baseline alternated
    for round_ in range(args.rounds):
        order = [run_job, run_baseline] if round_ % 2 == 0 else [run_baseline, run_job]
        for run in order:
            run(args.rate_count)
    for n in baseline_counts:
        if n != args.rate_count:
            run_baseline(n)
    for n in sorted(counts):
        if n != args.rate_count:
            run_job(n)
    profile = {}
    if args.profile_count:
        out, report = work / "out", work / "timers.json"
        explain = job_command(folders[args.profile_count], out, factory, args.batch_size)
        command = [sys.executable, __file__, "--child", "timed-job", "--report", str(report),
                   "--", *explain[len(camlens_command()) :]]  # fmt: skip
        run_child(command, work / "timed.log")
        profile = json.loads(report.read_text())
        shutil.rmtree(out)
    return {"job": job, "baseline": old, "profile": profile}


def print_tables(args, results: dict) -> None:
    import torch

    job, old = results["job"], results["baseline"]
    print()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, Python {platform.python_version()}")  # fmt: skip
    print(f"Model: {args.model}; images: {args.size}×{args.size} RGB PNG; batch size "
          f"{args.batch_size}; {args.rounds} round(s) at {args.rate_count} images; "
          "medians")  # fmt: skip
    if job or old:
        print()
        print("| images | job peak RSS (MiB) | baseline peak RSS (MiB) | job images/s | "
              "baseline images/s |")  # fmt: skip
        print("|---|---|---|---|---|")
    for n in sorted({*job, *old}):

        def cell(runs: dict, key: str, n: int = n) -> str:
            if n not in runs:
                return "–"
            values = [r[key] if key == "rss" else n / r["wall"] for r in runs[n]]
            text = f"{statistics.median(values):.0f}" if key == "rss" else (
                f"{statistics.median(values):.2f}")  # fmt: skip
            if len(values) > 1:
                text += " (" + " / ".join(f"{v:.0f}" if key == "rss" else f"{v:.2f}"
                                          for v in values) + ")"  # fmt: skip
            return text

        print(f"| {n} | {cell(job, 'rss')} | {cell(old, 'rss')} | {cell(job, 'rate')} | "
              f"{cell(old, 'rate')} |")  # fmt: skip
    if results["profile"]:
        profile, batches = results["profile"]["timers"], results["profile"]["batches"]
        bookkeeping = results["profile"]["bookkeeping"]
        total = profile.get("command (after imports)", 0.0)
        print()
        print(f"Where the job's time goes ({args.profile_count} images, one run; the reader "
              "threads overlap the rest):")  # fmt: skip
        print()
        print("| stage | seconds | share of the command |")
        print("|---|---|---|")
        for name, seconds in sorted(profile.items(), key=lambda kv: -kv[1]):
            print(f"| {name} | {seconds:.1f} | {100 * seconds / total:.0f}% |")
        engine = profile.get("engine (explain_segmentation)", 0.0)
        n = args.profile_count
        if engine:
            print()
            print(f"Overhead (command − engine): {total - engine:.1f} s = "
                  f"{100 * (total - engine) / engine:.1f}% of the engine's {engine:.1f} s; "
                  f"{(total - engine) / n:.3f} s per image; engine {engine / n:.2f} s per "
                  f"image; job {n / total:.3f} images/s vs engine {n / engine:.3f}")  # fmt: skip
        if batches:
            explained = [b["classes"] for b in batches]
            present = [p for b in batches for p in b["present"]]
            seconds = [b["seconds"] for b in batches]
            print(f"Engine calls: {len(batches)}; classes explained per batch: min "
                  f"{min(explained)}, median {statistics.median(explained)}, max "
                  f"{max(explained)}; classes in each image's prediction: min {min(present)}, "
                  f"median {statistics.median(present)}, max {max(present)}; seconds per "
                  f"call: min {min(seconds):.2f}, median {statistics.median(seconds):.2f}, "
                  f"max {max(seconds):.2f}; counting them took {bookkeeping:.2f} s, left "
                  "out of the command and the stream")  # fmt: skip
    print()
    print("Command: python bench/bench_jobs.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
