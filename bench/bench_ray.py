"""``camlens explain --engine ray`` against the local run: images/s for 1 and 2 Ray workers,
and the fixed cost of starting (and stopping) the local Ray cluster.

Every run is one fresh child process (``python -m camlens.cli explain ...``), timed from
start to exit, so start-up, imports and model loading are included for both engines.

* **Images**: ``--count`` seeded random RGB PNGs of ``--size``² in a temporary folder.
* **Model**: ``camlens.models.tiny_deeplabv3plus(num_classes=3)`` after
  ``torch.manual_seed(0)``, ``--layer encoder.layer4 --method hirescam --batch-size 4``.
* **Engines**: ``local`` (torch's default threads); ``ray`` with ``--workers 1`` and
  ``--workers 2`` (each worker its share of the CPUs as torch threads), a local cluster
  started by the run itself.
* **Fixed cost**: ``--resume`` on a finished output folder, which starts and stops
  everything but explains nothing: the Ray run's time minus the local run's is what Ray adds
  to every run. ``steady images/s`` removes that from the Ray runs' time.

    python bench/bench_ray.py [--count 48] [--size 128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FACTORY = '''"""The benchmark's model: a seeded tiny DeepLabV3+ with three classes."""
import torch

from camlens.models import tiny_deeplabv3plus


def model():
    torch.manual_seed(0)
    return tiny_deeplabv3plus(num_classes=3)
'''

ENGINES = {
    "local": [],
    "ray, 1 worker": ["--engine", "ray", "--workers", "1"],
    "ray, 2 workers": ["--engine", "ray", "--workers", "2"],
}


def _run(folder: Path, out: str, engine: list[str], *extra: str) -> float:
    """Seconds one child process takes."""
    command = [sys.executable, "-m", "camlens.cli", "explain", "imgs", "--model",
               "factory.py:model", "--layer", "encoder.layer4", "--method", "hirescam",
               "--batch-size", "4", "--quiet", "--out", out, *engine, *extra]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    folder = Path(tempfile.mkdtemp(prefix="camlens-bench-ray-"))
    try:
        (folder / "factory.py").write_text(FACTORY)
        (folder / "imgs").mkdir()
        for number in range(args.count):
            pixels = np.random.default_rng(number).random((args.size, args.size, 3)) * 255
            Image.fromarray(pixels.astype(np.uint8)).save(folder / "imgs" / f"{number:04d}.png")
        times: dict[str, list[float]] = {name: [] for name in ENGINES}
        fixed: dict[str, list[float]] = {name: [] for name in ENGINES}
        for round_number in range(args.rounds):
            for name, engine in ENGINES.items():  # alternated, so drift hits all alike
                out = f"out-{round_number}-{len(times[name])}-{name[:3]}"
                times[name].append(_run(folder, out, engine))
                fixed[name].append(_run(folder, out, engine, "--resume"))
                shutil.rmtree(folder / out)
        print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, torch "
              f"{torch.__version__}, Python {platform.python_version()}; {args.count} images "
              f"of {args.size}², {args.rounds} round(s), medians (rounds in brackets)")  # fmt: skip
        local_fixed = statistics.median(fixed["local"])
        print("| engine | wall (s) | images/s | start-up + stop (s) | Ray's fixed cost (s) | "
              "steady images/s |\n|---|---|---|---|---|---|")  # fmt: skip
        for name in ENGINES:
            wall = statistics.median(times[name])
            start = statistics.median(fixed[name])
            extra = start - local_fixed
            steady = args.count / (wall - extra) if name != "local" else args.count / wall
            rounds = " / ".join(f"{value:.1f}" for value in times[name])
            print(f"| {name} | {wall:.1f} ({rounds}) | {args.count / wall:.2f} | {start:.1f} | "
                  f"{extra:.1f} | {steady:.2f} |")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
