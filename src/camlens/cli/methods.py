"""``camlens methods``: list the available methods, their options and their papers."""

from __future__ import annotations

import argparse
from typing import Any

from camlens.methods import available_methods, get_method

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Declare ``methods`` on the ``commands`` of the top-level parser."""
    return commands.add_parser(
        "methods",
        help="list the available methods and their options",
        description="List the CAM methods camlens provides, with the options each takes "
        "(pass them as --option NAME=VALUE to explain and evaluate).",
    )


def run(args: argparse.Namespace) -> int:
    """Per method: name, label, class, what it needs, reference, then its options."""
    for name in available_methods():
        method = get_method(name)
        if method.needs_attention:
            needs = "attention" + (" + gradients" if method.needs_gradients else "")
        elif method.runner is not None and not method.needs_gradients and method.reruns_model:
            needs = "re-runs the model"
        elif method.needs_gradients:
            needs = "gradients"
        else:
            needs = "activations"
        columns = f"{name:20s} {method.label:22s} {method.class_name:19s} {needs:18s}"
        print(f"{columns} {method.reference}")
        for option in method.options:
            print(f"    --option {option.describe()}")
            print(f"        {option.help}")
    print()
    print("From Python only (they combine other methods or are not layer maps):")
    for name, what, reference in PYTHON_ONLY:
        print(f"{name:50s} {what:46s} {reference}")
    return 0


#: What the library offers beyond the registry, with the call and the paper.
PYTHON_ONLY = (
    ("camlens.guided_backprop / GuidedBackpropReLUModel", "input-space gradients, guided ReLUs",
     "Springenberg et al., ICLR Workshops 2015"),
    ("camlens.guided_gradcam", "guided backprop × any method's map",
     "Selvaraju et al., ICCV 2017"),
    ("camlens.DeepFeatureFactorization", "NMF of activations into concepts",
     "Collins et al., ECCV 2018"),
    ("camlens.FinerCAM / camlens.finer_targets", "a class against its most similar classes",
     "Zhang et al., CVPR 2025"),
    ("camlens.wrappers.refine_cam / RefineCAM", "product of per-layer maps of any method",
     "Domeniconi et al., arXiv:2605.14641, 2026"),
    ("camlens.sess.sess / SESS", "scale ensemble of sliding windows, any method",
     "Tursun et al., ECCV 2022"),
    ("camlens.wrappers.noise_tunnel", "mean / mean of squares / variance over noise",
     "Smilkov et al., 2017 (SmoothGrad)"),
)  # fmt: skip
