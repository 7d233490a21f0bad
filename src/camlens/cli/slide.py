"""``camlens slide``: explain a segmenter on whole slides, tile by tile, into slide heatmaps.

Checks everything it can before the first tile is read (numbers, device, methods and their
options, tiling, model, weights, layers, class ids), then runs
:func:`camlens.slide.explain_slide` per slide: one slide writes into ``--out``, several into
``--out/<slide name>/``. A slide that cannot be read is reported and the others go on
(exit status 1); Ctrl-C stops with 130 and ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from camlens.cli.explain import check_ray_arguments
from camlens.cli.options import (
    HelpFormatter,
    UsageError,
    add_engine_arguments,
    add_model_arguments,
    check_class_ids,
    check_numbers,
    class_ids,
    parse_device,
    parse_methods,
    parse_options,
)
from camlens.engine import plan_methods
from camlens.errors import CamlensError
from camlens.jobs.names import output_keys
from camlens.layers import resolve_layers
from camlens.loading import load_labels, load_model, load_weights

__all__ = ["add_parser", "run", "run_command"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Declare ``slide`` on the ``commands`` of the top-level parser."""
    parser = commands.add_parser(
        "slide",
        help="explain a segmenter on whole slides (stitched heatmaps, viewer)",
        description="Explain a segmentation model on whole-slide images (.svs, .ndpi, .mrxs, "
        ".tiff, ...): tissue is found on a thumbnail, tiles are explained in batches, the "
        "signed raw maps are stitched into slide heatmaps written as pyramidal TIFFs (QuPath, "
        "OpenSlide), GeoJSON tiles with measurements, and a zoomable viewer.html. "
        'Needs the slide extra: pip install "camlens[slide]".',
        formatter_class=HelpFormatter,
    )
    add_model_arguments(
        parser,
        default_method="hirescam,gradcam",
        metavar="SLIDE",
        inputs="whole-slide image files",
        size=False,
        segmentation_only=True,
    )
    group = parser.add_argument_group("slide")
    group.add_argument(
        "--mpp",
        type=float,
        help="analysis resolution in µm/px (read from the "
        "closest finer level and resized); or --level",
    )
    group.add_argument(
        "--level",
        type=int,
        help="analysis at this slide level, as stored "
        "(default: level 0 when the slide has MPP metadata)",
    )
    group.add_argument(
        "--slide-mpp",
        type=float,
        help="µm/px of level 0, for a slide without MPP metadata (or with a wrong one)",
    )
    group.add_argument("--tile", type=int, default=1024, help="tile side, analysis pixels")
    group.add_argument("--overlap", type=int, default=64, help="overlap of neighbouring tiles")
    group.add_argument(
        "--downsample",
        type=int,
        default=8,
        help="the stitched canvas is this many times coarser than the analysis",
    )
    group.add_argument(
        "--tissue",
        default="auto",
        metavar="auto|none|FILE",
        help="auto: detect tissue on a thumbnail; none: the whole slide; or a "
        "GeoJSON (QuPath) / PNG mask of the region to explain",
    )
    group.add_argument(
        "--min-tissue",
        type=float,
        default=0.05,
        help="skip tiles with less than this share of tissue",
    )
    group.add_argument("--no-viewer", action="store_true", help="no Deep Zoom tiles or viewer")
    jobs = parser.add_argument_group("running as a job")
    jobs.add_argument("--resume", action="store_true", help="continue the run in --out")
    jobs.add_argument("--overwrite", action="store_true", help="clear --out (a camlens run)")
    add_engine_arguments(parser)
    return parser


def run_command(argv: list[str]) -> int:
    """``camlens slide ARGV`` from Python (the demo runs it); errors propagate as exceptions."""
    parser = argparse.ArgumentParser(prog="camlens")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["slide", *argv]))


def run(args: argparse.Namespace) -> int:
    """Run every slide; 0 all done, 1 a slide or tile skipped, 130 interrupted."""
    ray = args.engine == "ray"
    if ray:
        check_ray_arguments(args)
    check_numbers(args)
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run and --overwrite clears it: pass one")
    if args.mpp is not None and args.level is not None:
        raise UsageError("--mpp and --level both choose the resolution: pass one")
    for name in ("mpp", "slide_mpp"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not 0 <= args.min_tissue <= 1:
        raise UsageError(f"--min-tissue is a share between 0 and 1, got {args.min_tissue}")
    from camlens.slide.tiling import check_geometry

    try:
        check_geometry(args.tile, args.overlap, args.downsample)
    except ValueError as error:
        raise UsageError(str(error)) from None
    device = parse_device(args.device)
    methods = parse_methods(args.method)
    options = parse_options(args.options, methods)
    plan_methods(methods, options)
    tissue = args.tissue
    if tissue not in ("auto", "none") and not Path(tissue).is_file():
        raise UsageError(f"--tissue {tissue}: not auto, none, or an existing GeoJSON/PNG file")
    slides = [Path(p) for p in args.images]
    missing = [str(p) for p in slides if not p.is_file()]
    if missing:
        raise UsageError(f"no such slide file: {', '.join(missing)}")
    from camlens.slide.extras import require

    require("openslide")
    require("tifffile")
    model = load_model(args.model)
    if args.weights is not None:
        load_weights(model, args.weights)
    model = model.to(device).eval()
    labels = load_labels(args.labels) if args.labels is not None else None
    layers = args.layer if len(args.layer) > 1 else args.layer[0]
    if "auto" not in args.layer:
        resolve_layers(model, layers)
    classes = _classes(args.classes, labels)
    if not ray:
        return _run_slides(args, slides, model, layers, methods, options, classes, labels)
    from camlens.distributed import Cluster, ClusterOptions

    cluster_options = ClusterOptions(
        args.address, args.workers, args.gpus_per_worker, args.threads_per_worker
    )
    with Cluster(cluster_options) as cluster:  # one cluster for every slide
        return _run_slides(
            args, slides, model, layers, methods, options, classes, labels, cluster=cluster
        )


def _classes(text: str | None, labels: list[str] | None) -> Any:
    if text in (None, "all"):
        return "all"
    if text == "present":
        raise UsageError("--class present differs from tile to tile; a slide takes all or ids")
    ids = class_ids(text, labels)
    if not ids or len(set(ids)) != len(ids):
        raise UsageError(f"--class {text}: list each class once")
    if labels is not None:
        check_class_ids(ids, len(labels))
    return ids


def _run_slides(
    args: argparse.Namespace,
    slides: list[Path],
    model: torch.nn.Module,
    layers: str | list[str],
    methods: list[str],
    options: dict[str, dict[str, Any]],
    classes: Any,
    labels: list[str] | None,
    cluster: Any = None,
) -> int:
    """Each slide in turn (``--out`` or ``--out/<slide name>``); the exit status."""
    from camlens.slide.run import explain_slide

    keys = output_keys([str(p) for p in slides])
    status = 0
    for slide, key in zip(slides, keys, strict=True):
        out = args.out if len(slides) == 1 else args.out / key
        try:
            result = explain_slide(
                slide,
                model,
                out,
                layers=layers,
                methods=methods,
                classes=classes,
                class_names=labels,
                options=options,
                mpp=args.mpp,
                level=args.level,
                slide_mpp=args.slide_mpp,
                tile=args.tile,
                overlap=args.overlap,
                downsample=args.downsample,
                batch_size=args.batch_size,
                mean=args.mean,
                std=args.std,
                tissue=args.tissue,
                min_tissue=args.min_tissue,
                resume=args.resume,
                overwrite=args.overwrite,
                progress=not args.quiet,
                viewer=not args.no_viewer,
                model_name=args.model,
                weights=str(args.weights) if args.weights else None,
                cluster=cluster,
            )
        except KeyboardInterrupt:
            print(
                f"camlens slide: interrupted during {slide.name}; rerun with --resume to finish",
                file=sys.stderr,
            )
            return 130
        except CamlensError as error:
            if len(slides) == 1:
                raise
            print(f"camlens slide: skipped {slide}: {error}", file=sys.stderr)
            status = 1
            continue
        if result.outputs is None:
            print(f"camlens slide: {slide.name}: no tile was explained", file=sys.stderr)
            status = 1
            continue
        for failure in result.outputs.failed:
            print(
                f"camlens slide: {slide.name}: skipped tile {failure['tile']}: {failure['error']}",
                file=sys.stderr,
            )
            status = 1
        shown = result.outputs.viewer or (out / "summary.json")
        print(f"wrote {shown} ({result.tiles} tiles)")
    return status
