"""TODO-3 transitional: remove once the CLI imports camlens.familiar."""

from camlens.familiar import BaseCAM

__all__ = ["BaseCAM"]
