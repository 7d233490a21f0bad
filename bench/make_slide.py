"""Time and peak memory of writing a large synthetic whole slide as a pyramidal TIFF.

Writes :class:`camlens.demo.slide.SyntheticSlide` with
:func:`camlens.demo.slide.write_synthetic_slide` (zlib level 1, 256-px tiles) and prints the
wall time, the CPU time, the peak resident memory of this process (``ru_maxrss``) and the
file's size; with ``--check``, opens the file with OpenSlide and compares a level-0 region
with the slide it came from. The slide is also the input of the whole-slide benchmarks.

    python bench/make_slide.py OUT.tiff [--size 50000] [--height H] [--mpp 0.5] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

import numpy as np

from camlens.demo.slide import write_synthetic_slide


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def check(path: str, slide: object, mpp: float) -> str:
    """OpenSlide's view of the file: levels, MPP, and a level-0 region compared exactly."""
    import openslide

    with openslide.OpenSlide(path) as opened:
        width, height = opened.dimensions
        size = min(512, width), min(512, height)
        x, y = (width - size[0]) // 2, (height - size[1]) // 2
        region = np.asarray(opened.read_region((x, y), 0, size))[..., :3]
        same = np.array_equal(region, slide[y : y + size[1], x : x + size[0]])  # type: ignore[index]
        return (
            f"OpenSlide: {opened.properties['openslide.vendor']}, {opened.level_count} levels "
            f"{opened.level_dimensions}, mpp-x {opened.properties.get('openslide.mpp-x')}, "
            f"centre region pixel-exact: {same}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the TIFF file to write")
    parser.add_argument("--size", type=int, default=50_000, help="width in pixels")
    parser.add_argument("--height", type=int, default=None, help="height (default: --size)")
    parser.add_argument("--mpp", type=float, default=0.5, help="micrometres per pixel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="read the file back with OpenSlide")
    args = parser.parse_args()
    height = args.height or args.size
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    wall, cpu = time.perf_counter(), time.process_time()
    slide = write_synthetic_slide(args.out, args.size, height, mpp=args.mpp, seed=args.seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    megapixels = args.size * height / 1e6
    print(
        f"{args.size} x {height} px ({megapixels:,.0f} Mpx), seed {args.seed}: {wall:.1f} s wall "
        f"({megapixels / wall:.1f} Mpx/s), {cpu:.1f} s CPU, peak RSS {peak_rss_mib():.0f} MiB, "
        f"file {os.path.getsize(args.out) / 2**20:,.0f} MiB"
    )
    if args.check:
        print(check(args.out, slide, args.mpp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
