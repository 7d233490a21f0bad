"""Benchmark-only stand-in for ``torchvision``.

Used ONLY by camlens's benchmarks and parity checks (``bench/``); camlens itself
never imports torchvision, and nothing outside ``bench/`` may import this
package.

Why it exists
-------------
The reference library pytorch-grad-cam (PyPI ``grad-cam`` 1.5.x) declares a
dependency on torchvision, but the PyPI torchvision build cannot be imported on
the project's CPU-only torch. ``bench/setup_gradcam_env.sh`` installs grad-cam
with ``--no-deps`` into ``bench/.env-gradcam`` and writes a ``.pth`` file that
puts ``bench/shims`` on that env's ``sys.path``, so this package is what
``import torchvision`` finds there.

What it provides
----------------
Exactly the torchvision names that pytorch-grad-cam 1.5.7 imports outside its
tests, re-implemented with torchvision's numeric semantics:

* ``torchvision.transforms.Compose``, ``Normalize``, ``ToTensor``
  (``pytorch_grad_cam/utils/image.py``: ``preprocess_image``);
* ``torchvision.transforms.functional.resize`` (+ the ``InterpolationMode``
  enum it takes) (``pytorch_grad_cam/sess.py``);
* ``torchvision.ops.box_iou`` (``pytorch_grad_cam/utils/model_targets.py``:
  ``FasterRCNNBoxScoreTarget``).

Anything else (models, datasets, io, ...) is deliberately absent: an
``AttributeError``/``ImportError`` means the benchmark needs a real torchvision.
"""

from . import ops, transforms

__version__ = "0.0+camlens.bench.shim"

__all__ = ["__version__", "ops", "transforms"]
