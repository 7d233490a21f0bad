"""``pytorch_grad_cam.sess`` → camlens: the sliding-window helpers of SESS; the SESS
meta-method itself (Saliency Enhancing with Scaling and Sliding, Tyagi et al. 2022) is not
provided by camlens and raises, naming the alternatives."""

from __future__ import annotations

from typing import Any

from camlens.errors import CamlensError

__all__ = ["SESS", "sliding_window", "window_starts"]


def window_starts(length: int, step_size: int, window_size: int) -> list[int]:
    """Start offsets of windows of ``window_size`` every ``step_size`` along ``length``;
    the last window is shifted back inside so that every window has the full size."""
    starts = []
    for start in range(0, length, step_size):
        if start + window_size >= length:
            starts.append(max(length - window_size, 0))
            break
        starts.append(start)
    return starts


def sliding_window(
    height: int, width: int, step_size: int, window_size: int
) -> list[tuple[int, int]]:
    """The ``(x, y)`` top-left corners of the windows covering a ``height × width`` image,
    row by row."""
    return [
        (x, y)
        for y in window_starts(height, step_size, window_size)
        for x in window_starts(width, step_size, window_size)
    ]


class SESS:
    """Not provided by camlens (raises on construction)."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        raise CamlensError(
            "SESS (Saliency Enhancing with Scaling and Sliding) is not provided by camlens; for "
            "smoother maps use aug_smooth=True or camlens.Explainer(model, layers, "
            "'smoothgradcam++'), and for large images explain tiles (camlens slide)."
        )
