"""``pytorch_grad_cam.score_cam`` → ``camlens.ScoreCAM`` (the same class)."""

from camlens.familiar import ScoreCAM

__all__ = ["ScoreCAM"]
