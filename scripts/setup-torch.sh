#!/usr/bin/env bash
# Installs PyTorch (the libtorch that tch links against) into a Python virtual environment,
# unless that environment already holds it. Usage: scripts/setup-torch.sh VENV_DIR TORCH_VERSION
#
# tch 0.24 expects PyTorch 2.11.0. The wheel from PyPI is the CUDA build (~4.6 GB with its
# NVIDIA libraries): the same libtorch runs on CPU-only machines and on GPU nodes. NumPy comes
# along only so that `import torch` (run by torch-sys's build script) starts without a warning.
set -euo pipefail

venv=${1:?usage: setup-torch.sh VENV_DIR TORCH_VERSION}
version=${2:?usage: setup-torch.sh VENV_DIR TORCH_VERSION}
numpy_version=2.4.6
marker="$venv/.ready-torch-$version-numpy-$numpy_version"
python=${PYTHON:-python3}

[[ -f $marker ]] && exit 0

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_install() {
    command -v apt-get >/dev/null || return 1
    echo "setup: installing Debian packages: $*" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

if ! command -v "$python" >/dev/null; then
    echo "error: $python not found: install Python 3 (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi

# torch-sys compiles a C++ wrapper around libtorch.
if ! command -v g++ >/dev/null && ! command -v c++ >/dev/null; then
    apt_install g++ || { echo "error: a C++ compiler is needed (Debian: apt-get install g++)" >&2; exit 1; }
fi

if [[ ! -x $venv/bin/python ]]; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        # Debian ships the venv module (ensurepip) in its own package.
        rm -rf "$venv"
        pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python$pyver-venv" || apt_install python3-venv || {
            echo "error: '$python -m venv' failed: install the venv module (Debian: apt-get install python3-venv)" >&2
            exit 1
        }
        "$python" -m venv "$venv"
    fi
fi

echo "setup: installing torch==$version into $venv (one time, ~4.6 GB)" >&2
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet "torch==$version" "numpy==$numpy_version"
"$venv/bin/python" - "$version" <<'PY'
import sys, torch
want = sys.argv[1]
assert torch.__version__.split("+")[0] == want, f"torch {torch.__version__} installed, {want} wanted"
print(f"setup: torch {torch.__version__} ready", file=sys.stderr)
PY
touch "$marker"
