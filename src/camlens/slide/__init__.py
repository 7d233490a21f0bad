"""Whole-slide explanations: read a slide, find its tissue, explain it tile by tile, stitch
the raw maps into slide-level heatmaps, and write them as pyramidal TIFFs, GeoJSON and a
zoomable viewer (``camlens slide``). Needs the ``camlens[slide]`` extra for reading and
writing slides; importing this package does not."""

from camlens.slide.run import SlideResult, explain_slide

__all__ = ["SlideResult", "explain_slide"]
