"""The embedded demo behind ``camlens demo``: seeded synthetic data (:mod:`.synthetic`), small
models trained on it, and the scripts that explain them.

Nothing is imported here so that ``import camlens`` stays light; import the submodules.
"""
