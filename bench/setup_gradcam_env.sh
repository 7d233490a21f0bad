#!/usr/bin/env bash
# Create (or refresh) bench/.env-gradcam: a separate virtualenv in which the
# reference library pytorch-grad-cam (PyPI: grad-cam 1.5.x) and camlens run side
# by side in one process, for parity checks and speed comparisons.
#
#   bash bench/setup_gradcam_env.sh          # from any directory, any clone
#   bench/.env-gradcam/bin/python bench/...  # then just use the env's python
#
# grad-cam declares torchvision as a dependency, but the PyPI torchvision build
# does not import on this project's CPU-only torch. grad-cam is therefore
# installed with --no-deps, its real run-time dependencies are installed by hand
# (without torchvision), and a tiny benchmark-only torchvision stand-in
# (bench/shims/torchvision) is put on the env's sys.path via a .pth file.
#
# Idempotent: re-running reuses the env and only installs what is missing.
# Set GRADCAM_ENV_RECREATE=1 to delete and rebuild the env from scratch.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
ENV_DIR="$BENCH_DIR/.env-gradcam"
SHIMS_DIR="$BENCH_DIR/shims"
CONSTRAINTS="$REPO_ROOT/constraints.txt"
PYTHON="${PYTHON:-python3}"

GRADCAM_SPEC="grad-cam==1.5.*"
# What pytorch_grad_cam imports at import/run time (besides torch/torchvision):
#   numpy, Pillow (PIL), opencv-python-headless (cv2), ttach, tqdm,
#   matplotlib (utils/image.py), scipy (utils/image.py, metrics/road.py),
#   scikit-learn (svd_on_activations.py, feature_factorization).
GRADCAM_DEPS=(
    numpy
    Pillow
    opencv-python-headless
    ttach
    tqdm
    matplotlib
    scipy
    scikit-learn
)

if [[ "${GRADCAM_ENV_RECREATE:-0}" == "1" && -d "$ENV_DIR" ]]; then
    echo ">> removing $ENV_DIR (GRADCAM_ENV_RECREATE=1)"
    rm -rf "$ENV_DIR"
fi

if [[ ! -x "$ENV_DIR/bin/python" ]]; then
    echo ">> creating virtualenv $ENV_DIR"
    "$PYTHON" -m venv "$ENV_DIR"
fi

VPY="$ENV_DIR/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)

# 1. torch: always through the constraints file (CPU build, pinned version).
"${PIP[@]}" install -q -c "$CONSTRAINTS" "torch==2.13.0"

# 2. the dependencies grad-cam really uses, except torchvision. The constraints
#    file keeps pip from ever swapping the CPU torch for a CUDA one.
"${PIP[@]}" install -q -c "$CONSTRAINTS" "${GRADCAM_DEPS[@]}"

# 3. grad-cam itself without its declared deps (they include torchvision).
#    Installed after its deps so pip's resolver has no "torchvision missing"
#    conflict to report.
"${PIP[@]}" install -q --no-deps "$GRADCAM_SPEC"

# 4. camlens itself, editable, from this clone (its deps are already present
#    or tiny; --no-deps so nothing can touch torch).
"${PIP[@]}" install -q --no-deps -e "$REPO_ROOT"

# 5. make the torchvision stand-in importable from the env's python.
SITE_PACKAGES="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PTH_FILE="$SITE_PACKAGES/camlens_bench_shims.pth"
printf '%s\n' "$SHIMS_DIR" > "$PTH_FILE"

# Refuse to go on silently if a real torchvision slipped in (it would shadow or
# conflict with the shim and fail to import).
if "$VPY" -m pip show -q torchvision >/dev/null 2>&1; then
    echo "!! a real torchvision is installed in $ENV_DIR; removing it" >&2
    "${PIP[@]}" uninstall -y -q torchvision
fi

# 6. smoke check.
"$VPY" - <<'EOF'
import importlib.metadata as md
import torch, torchvision, pytorch_grad_cam, camlens
assert torchvision.__file__ and "shims" in torchvision.__file__, torchvision.__file__
print("torch      ", torch.__version__)
print("grad-cam   ", md.version("grad-cam"), pytorch_grad_cam.__file__)
print("camlens    ", md.version("camlens"), camlens.__file__)
print("torchvision", torchvision.__version__, "(bench shim)", torchvision.__file__)
EOF

cat <<EOF

bench/.env-gradcam is ready.
  Python:  $VPY
  The torchvision stand-in ($SHIMS_DIR/torchvision) is on that python's
  sys.path through $PTH_FILE, so e.g.
      $VPY -c "import pytorch_grad_cam, camlens"
  just works. Without the .pth file, the equivalent is
      PYTHONPATH=$SHIMS_DIR $VPY ...
EOF
