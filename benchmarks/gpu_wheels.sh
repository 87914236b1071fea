#!/usr/bin/env bash
# Wheels of Keras and its light dependencies, for a GPU machine that has JAX (with CUDA) and NumPy but neither
# TensorFlow nor a package index: benchmarks/gpu_check.py runs there with KERAS_BACKEND=jax (see its docstring).
#
#     bash benchmarks/gpu_wheels.sh PYTHON_VERSION [PYTHON_VERSION ...]      e.g. 3.12, or 3.11 3.12 3.13
#
# The GPU machine's Python is known only there: give every version it may have (keras 3.15.1 needs >= 3.11).
# Pure-Python wheels are shared; h5py, optree and ml-dtypes are compiled, one wheel per version, for manylinux
# x86_64 up to glibc 2.28. NumPy is not fetched: JAX brought its own. Each wheel comes with --no-deps, so
# nothing else (TensorFlow, a second NumPy) is pulled in. Output: $WHEELS_DIR, default build/gpu_wheels
# (ignored by git; the device runner carries it with carry=["build/gpu_wheels"]): 4.4 MB, plus 5.8 MB per
# Python version.
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 PYTHON_VERSION [PYTHON_VERSION ...]   (the GPU machine's python3 --version, e.g. 3.12)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
WHEELS_DIR=${WHEELS_DIR:-build/gpu_wheels}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# keras as requirements.txt pins it; its dependencies at the versions this project's tests ran with.
KERAS=$(grep -E '^keras==' requirements.txt)
PACKAGES=("$KERAS" absl-py==2.5.1 namex==0.1.0 packaging==26.4 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2
          pygments==2.21.0 typing-extensions==4.16.0 h5py==3.14.0 optree==0.20.0 ml-dtypes==0.6.0)

mkdir -p "$WHEELS_DIR"
for version in "$@"; do
    if ! [[ $version =~ ^3\.[0-9]+$ ]]; then
        echo "not a Python version like 3.12: $version" >&2
        exit 2
    fi
    for package in "${PACKAGES[@]}"; do
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$WHEELS_DIR" \
            --python-version "$version" --implementation cp --abi "cp${version/./}" \
            --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 "$package"
    done
done
ls -1 "$WHEELS_DIR"
echo "On the GPU machine: python -m pip install --no-index --find-links $WHEELS_DIR $KERAS"
echo "                    KERAS_BACKEND=jax python benchmarks/gpu_check.py"
