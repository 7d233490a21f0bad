"""``pytorch_grad_cam.sess`` → camlens: SESS (scale ensemble with sliding windows,
:class:`camlens.sess.SESS`) and upstream's window helper, over camlens's window starts."""

from __future__ import annotations

from camlens.sess import SESS, window_starts

__all__ = ["SESS", "sliding_window", "window_starts"]


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
