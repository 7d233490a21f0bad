"""Numbers that say whether an explanation can be trusted."""

from camlens.metrics.localisation import dilate, pointing_game, positive_mass_in_mask

__all__ = ["dilate", "pointing_game", "positive_mass_in_mask"]
