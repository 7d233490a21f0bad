"""Numbers that say whether an explanation can be trusted."""

from camlens.metrics.localisation import positive_mass_in_mask

__all__ = ["positive_mass_in_mask"]
