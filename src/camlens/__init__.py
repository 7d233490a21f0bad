"""camlens."""
