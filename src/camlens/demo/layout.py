"""Where the layers and structures of a synthetic skin tile lie: its geometry, not its looks.

A skin section seen at low magnification: glass above a wavy skin surface, the epidermis
along the surface with rete ridges pegging down into the dermis, subcutaneous fat lobules
deeper down, hair follicles either cut lengthwise (from the surface down) or across, and
sometimes a torn section edge with more glass beyond it.

Everything here is geometry: random parameters (angles, levels, wavy profiles) and the
per-pixel fields they imply on a tile's :class:`~camlens.demo.canvas.Grid` (how deep each
pixel lies below the surface, ...). The painters in :mod:`camlens.demo.tissue` turn these
into labels and stain concentrations. Sizes are in reference pixels of a 128-px tile times
``scale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from camlens.demo.canvas import Grid, pick_point
from camlens.demo.stain import F32
from camlens.demo.texture import Wobble, make_wobble, smooth_noise

__all__ = [
    "Follicle",
    "Frame",
    "Skin",
    "Surface",
    "draw_skin",
    "fat_lobules",
    "frame",
    "plan_follicles",
    "torn_edge",
]


class Frame(NamedTuple):
    """Tile coordinates turned to a straight line across the tile, in pixels from the centre.

    ``across``: position along the line's normal (grows into the tissue); ``along``: position
    along the line; ``nearest``: the smallest ``across`` in the tile (at the corner the
    normal points away from).
    """

    across: np.ndarray
    along: np.ndarray
    nearest: float


def _nearest(grid: Grid, angle: float) -> float:
    """:attr:`Frame.nearest` of the frame at ``angle``, without the per-pixel fields."""
    return -(abs(np.sin(angle)) + abs(np.cos(angle))) * grid.half


def frame(grid: Grid, angle: float) -> Frame:
    """The :class:`Frame` of a line whose normal points at ``angle`` (radians, y down)."""
    ny, nx = np.sin(angle), np.cos(angle)
    across = grid.yc * F32(ny) + grid.xc * F32(nx)
    along = grid.yc * F32(nx) - grid.xc * F32(ny)
    return Frame(across, along, _nearest(grid, angle))


def _below(edge: Frame, level: float, wobble: Wobble) -> np.ndarray:
    """Signed distance (pixels) beyond a wavy line: the straight line ``across == level``
    of ``edge``, shifted by ``wobble`` of the position along it; > 0 on the tissue side."""
    return edge.across - F32(level) + wobble(edge.along)


@dataclass(frozen=True)
class Surface:
    """The skin surface: a wavy line with the tissue on one side and glass on the other.

    When ``present`` is false the surface lies outside the tile and the whole tile is skin;
    ``level`` still places it (on the glass side), so depths stay meaningful.
    """

    #: Direction of the normal into the skin (radians).
    angle: float
    present: bool
    #: Where the straight line of the surface crosses its normal, px from the tile centre.
    level: float
    #: Waviness: displacement along the normal as a function of the position along the line.
    wobble: Wobble

    @classmethod
    def draw(cls, rng: np.random.Generator, grid: Grid, scale: float) -> Surface:
        """A random surface: any direction; in 80 % of tiles 7–36 % of the tile in from the
        tile's edge, else just beyond the tile (a tile in the depth of the section)."""
        angle = rng.uniform(0, 2 * np.pi)
        nearest = _nearest(grid, angle)
        present = bool(rng.random() < 0.8)
        if present:
            level = nearest + rng.uniform(0.07, 0.36) * grid.size
        else:
            level = nearest - rng.uniform(0.05, 0.5) * grid.size
        wobble = make_wobble(rng, grid.size, 30 * scale, 3.5 * scale)
        return cls(angle, present, level, wobble)

    def point(self, grid: Grid, t: float) -> tuple[float, float]:
        """Tile coordinates ``(y, x)`` of the surface at position ``t`` along it."""
        ny, nx = np.sin(self.angle), np.cos(self.angle)
        base = self.level - float(self.wobble(t))
        return (grid.half + t * nx + base * ny, grid.half - t * ny + base * nx)


class Skin(NamedTuple):
    """The layers of a tile: the surface and, per pixel, how deep it lies."""

    surface: Surface
    #: Coordinates across and along the surface.
    frame: Frame
    #: Pixels below the skin surface (< 0: glass).
    depth: np.ndarray
    #: Thickness of the epidermis at each pixel's position along the surface.
    thickness: np.ndarray
    #: Pixels below the epidermis (> 0: dermis or deeper).
    dermal_depth: np.ndarray


def _epidermis_thickness(
    rng: np.random.Generator, along: np.ndarray, size: int, scale: float
) -> np.ndarray:
    """Thickness of the epidermis as a function of the position ``along`` the surface: a base
    plus rete ridges, pegs every 11–20 ref px that reach down into the dermis."""
    period = rng.uniform(11, 20) * scale
    pegs = np.sin(along * F32(2 * np.pi / period) + F32(rng.uniform(0, 2 * np.pi)))
    pegs = np.clip(0.5 + 0.5 * pegs + make_wobble(rng, size, period, 0.3)(along), 0, 1)
    return F32(rng.uniform(5, 9) * scale) + F32(rng.uniform(2, 7) * scale) * pegs**2.5


def draw_skin(rng: np.random.Generator, grid: Grid, scale: float) -> Skin:
    """A random :class:`Skin`: the surface, then the epidermis' thickness beneath it."""
    surface = Surface.draw(rng, grid, scale)
    edge = frame(grid, surface.angle)
    depth = _below(edge, surface.level, surface.wobble)
    thickness = _epidermis_thickness(rng, edge.along, grid.size, scale)
    return Skin(surface, edge, depth, thickness, depth - thickness)


def fat_lobules(rng: np.random.Generator, grid: Grid, skin: Skin, scale: float) -> np.ndarray:
    """Where the subcutaneous fat lies: beyond a wavy fat line parallel to the surface (at
    least 35 ref px below it), less the fibrous septa between the lobules. Boolean map."""
    edge = skin.frame
    level = rng.uniform(edge.nearest + 0.45 * grid.size, -edge.nearest + 0.2 * grid.size)
    level = max(level, skin.surface.level + 35 * scale)
    fat_depth = _below(edge, level, make_wobble(rng, grid.size, 25 * scale, 7 * scale))
    septa = np.abs(smooth_noise(rng, grid.size, grid.size, 32 * scale)) < 0.1
    return (fat_depth > 0) & ~septa


def torn_edge(
    rng: np.random.Generator, grid: Grid, surface: Surface, scale: float
) -> np.ndarray | None:
    """In 30 % of tiles, a torn edge of the section on another side than the surface: a
    boolean map of the glass beyond it; else ``None``."""
    if rng.random() >= 0.3:
        return None
    edge = frame(grid, surface.angle + rng.uniform(0.5, 1.5) * np.pi)
    level = edge.nearest + rng.uniform(0.04, 0.22) * grid.size
    return _below(edge, level, make_wobble(rng, grid.size, 14 * scale, 4 * scale)) < 0


class Follicle(NamedTuple):
    """Where a hair follicle is cut: lengthwise (``length`` > 0) from ``start`` on the skin
    surface along the unit vector ``direction`` into the skin, or across (``length`` 0) as a
    ring centred on ``start``. ``radius``: of the tube, pixels."""

    start: tuple[float, float]
    direction: tuple[float, float]
    length: float
    radius: float

    @property
    def lengthwise(self) -> bool:
        return self.length > 0

    def beside(self, rng: np.random.Generator, radius: float) -> tuple[float, float]:
        """Centre of a sebaceous gland of ``radius`` attached to this lengthwise follicle:
        20–45 % down its length, on a random side, just touching it."""
        (fy, fx), (dy, dx) = self.start, self.direction
        reach = self.length * rng.uniform(0.2, 0.45)
        side = self.radius + 0.7 * radius
        sign = 1 if rng.random() < 0.5 else -1
        return (fy + dy * reach + sign * dx * side, fx + dx * reach - sign * dy * side)


def plan_follicles(
    rng: np.random.Generator,
    grid: Grid,
    skin: Skin,
    free_dermis: np.ndarray,
    margin: int,
    scale: float,
) -> list[Follicle]:
    """Zero to three hair follicles. Where the tile shows the surface, 55 % run lengthwise
    from it, all at nearly the same slant (follicles of one section run nearly parallel);
    the others are cut across, centred on a random ``free_dermis`` pixel at least ``margin``
    px inside the tile (none when the picks miss)."""
    surface = skin.surface
    count = int(rng.choice(4, p=[0.15, 0.4, 0.3, 0.15]))
    slant = surface.angle + rng.uniform(-0.6, 0.6)
    follicles: list[Follicle] = []
    for _ in range(count):
        radius = rng.uniform(5, 8.5) * scale
        if surface.present and rng.random() < 0.55:
            start = surface.point(grid, rng.uniform(-0.4, 0.4) * grid.size)
            tilt = slant + rng.normal(0, 0.08)
            direction = (float(np.sin(tilt)), float(np.cos(tilt)))
            length = rng.uniform(0.3, 0.7) * grid.size
            follicles.append(Follicle(start, direction, length, radius))
        elif (at := pick_point(rng, free_dermis, margin)) is not None:
            follicles.append(Follicle(at, (0.0, 0.0), 0.0, radius))
    return follicles
