"""RandomCAM: random channel weights, a baseline that explains nothing.

A map that is a random combination of the layer's channels, ``Σ_c w_c A_c`` with
``w_c ~ U(-1, 1)``: what a faithfulness metric or a sanity check should score as "no better
than chance" (the baseline in the spirit of Adebayo et al., "Sanity Checks for Saliency
Maps", NeurIPS 2018; pytorch-grad-cam ships it as ``RandomCAM``). It ignores the target, so
every target of an image gets the same map.

Option ``seed``: with a seed, every image gets the same weights, drawn from a generator
seeded with it (reproducible, and a batch equals its images explained one by one); ``None``
draws fresh weights per image from torch's global generator (``torch.manual_seed`` makes
that reproducible too).
"""

from __future__ import annotations

import torch

from camlens.methods.registry import LayerData, Method, Option, register

__all__ = ["randomcam"]


def randomcam(data: LayerData, seed: int | None = 0) -> torch.Tensor:
    """Contribution ``w_c · A_c`` with ``w_c ~ U(-1, 1)`` (see the module docstring)."""
    batch, channels = data.activations.shape[:2]
    dtype = data.activations.dtype
    if seed is None:
        weights = torch.rand(batch, channels, dtype=dtype)
    else:
        generator = torch.Generator().manual_seed(seed)
        weights = torch.rand(channels, dtype=dtype, generator=generator).expand(batch, channels)
    return data.per_channel((2 * weights - 1).to(data.activations.device))


register(
    Method(
        name="randomcam",
        label="RandomCAM",
        class_name="RandomCAM",
        reference="baseline: random channel weights (cf. Adebayo et al., NeurIPS 2018)",
        contributions=randomcam,
        needs_gradients=False,
        options=(
            Option(
                name="seed",
                kind=int,
                default=0,
                nullable=True,
                help="weights drawn from this seed, the same for every image; None: fresh "
                "weights per image from torch's global generator",
            ),
        ),
    )
)
