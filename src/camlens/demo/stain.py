"""Beer–Lambert rendering of stain concentrations into an RGB image, for the demo's data.

A synthetic tile is first painted as per-pixel *stain concentrations* (hematoxylin, eosin,
melanin, haemoglobin; see :data:`STAINS`) and only then turned into colour by the
Beer–Lambert law, ``rgb = glass * exp(-Σ c_k · OD_k)``. Mixing, darkening and the variation
between slides (hue and intensity of each stain) then behave as on real slides instead of as
alpha-blended flat colours.

Rendering is split in two steps so that a caller can stain many tiles alike: :meth:`Staining.draw`
draws one slide's stain variation, :meth:`Staining.apply` renders concentrations with it
(adding the per-pixel granularity, optical blur and sensor noise). :func:`render` does both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "F32",
    "GLASS",
    "STAINS",
    "STAIN_OD",
    "STAIN_RGB",
    "Staining",
    "blur",
    "render",
    "white_noise",
]

#: The data type of every image and field of the demo data (half the memory of float64).
F32 = np.float32

#: The stains, in the order of the concentration channels.
STAINS: tuple[str, ...] = ("hematoxylin", "eosin", "melanin", "haemoglobin")
#: Light through bare glass (the brightest a tile gets).
GLASS = np.array([0.96, 0.95, 0.97], dtype=F32)
#: Colour of one unit of each stain (rows in :data:`STAINS` order) on glass.
STAIN_RGB = np.array(
    [
        [0.45, 0.30, 0.60],
        [0.93, 0.60, 0.75],
        [0.52, 0.38, 0.28],
        [0.84, 0.30, 0.34],
    ],
    dtype=F32,
)
#: Optical density per unit concentration, one row per stain (Beer–Lambert).
STAIN_OD = -np.log(STAIN_RGB / GLASS)


def white_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Per-pixel white noise with zero mean and unit variance (uniform: several times cheaper
    to draw than Gaussian, and nobody can tell in an image)."""
    return (rng.random(shape, dtype=F32) - F32(0.5)) * F32(12**0.5)


def blur(img: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable 3×3 binomial blur of a channel-first ``(c, h, w)`` image (edge-replicated),
    ``passes`` times: the mild softness of a slide scanner's optics."""
    for _ in range(passes):
        p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
        v = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
        img = (v[..., :-2] + 2 * v[..., 1:-1] + v[..., 2:]) * F32(1 / 16)
    return img


@dataclass(frozen=True)
class Staining:
    """How one slide took up the stains: optical densities and the glass's tint.

    The same tissue stains differently on every slide; :meth:`draw` jitters each stain's
    intensity and hue (its optical-density vector) and the tint of the glass.
    """

    #: ``(4, 3)`` optical density per unit concentration, one row per stain.
    density: np.ndarray
    #: ``(3,)`` light through bare glass.
    glass: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Staining:
        """A random stain variation around :data:`STAIN_OD` and :data:`GLASS`."""
        density = STAIN_OD * rng.uniform(0.72, 1.28, (4, 1)).astype(F32)
        density = density * np.exp(rng.normal(0.0, 0.07, (4, 3))).astype(F32)
        glass = GLASS + rng.uniform(-0.02, 0.01, 3).astype(F32)
        return cls(density, glass)

    def apply(
        self,
        rng: np.random.Generator,
        conc: np.ndarray,
        blur_passes: int,
        noise: float = 0.012,
    ) -> np.ndarray:
        """Stain concentrations ``(4, h, w)`` → RGB float32 ``(h, w, 3)`` in [0, 1].

        Adds what differs from pixel to pixel: stain granularity (before the absorption),
        the optical blur and the sensor noise (after it).
        """
        _, h, w = conc.shape
        conc = conc * (1 + 0.08 * white_noise(rng, (h, w)))
        optical_density = np.einsum("kc,khw->chw", self.density, conc)  # no BLAS: threads cost
        rgb = blur(self.glass[:, None, None] * np.exp(-optical_density), blur_passes)
        rgb += F32(noise) * white_noise(rng, rgb.shape)
        return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0).transpose(1, 2, 0))


def render(
    rng: np.random.Generator, conc: np.ndarray, blur_passes: int, noise: float = 0.012
) -> np.ndarray:
    """Stain concentrations ``(4, h, w)`` → RGB float32 ``(h, w, 3)`` in [0, 1], with a
    fresh stain variation (:meth:`Staining.draw`) for this one image."""
    return Staining.draw(rng).apply(rng, conc, blur_passes, noise)
