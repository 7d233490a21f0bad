"""``torchvision.ops.box_iou`` for the benchmark-only torchvision stand-in."""

from __future__ import annotations

import torch

__all__ = ["box_area", "box_iou"]


def _upcast(t: torch.Tensor) -> torch.Tensor:
    # Like torchvision: keep float32/float64 and int32/int64, promote the rest
    # so that products of coordinates cannot overflow.
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of ``[N, 4]`` boxes in ``(x1, y1, x2, y2)`` format."""
    boxes = _upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``[N, M]`` of ``[N, 4]`` and ``[M, 4]`` xyxy boxes."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    union = area1[:, None] + area2 - inter
    return inter / union
