#!/usr/bin/env bash
# Set up everything compress needs on a Debian/Ubuntu machine: the Fashion-MNIST package, a virtual
# environment in .venv with PyTorch, and the package with its test/export/OpenVINO/timm extras. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

need_apt=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
python3 -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"setup: compress needs Python >= 3.10, this is {sys.version.split()[0]}")
PY

[ -x .venv/bin/python ] || python3 -m venv .venv
PY=.venv/bin/python
$PY -m pip install -q --upgrade pip >/dev/null
# PyTorch first, pinned: the CUDA build also runs on CPUs (and pip here takes it from local disk).
if ! $PY -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1') and torchvision.__version__.startswith('0.29.1')" 2>/dev/null; then
  echo "setup: installing torch 2.14.1 + torchvision 0.29.1 (large download on a fresh machine)"
  $PY -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
# The distribution was called `compress` before it took a name of its own on PyPI: drop a stale install.
if $PY -m pip show -q compress >/dev/null 2>&1; then $PY -m pip uninstall -q -y compress; fi
# The edge runtime is its own distribution (deploy/pyproject.toml); the library and CLI the other.
$PY -m pip install -q -e ./deploy -e '.[dev,openvino,timm]'
echo "setup: ready ($($PY -c 'import torch; print("torch", torch.__version__)'))"
