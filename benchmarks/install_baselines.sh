#!/usr/bin/env bash
# Installs the baselines the benchmarks compare against. cvxpylayers 0.1.9
# (TensorFlow) and 1.x (torch) share a package name, so each goes into its own
# folder under benchmarks/.baselines; benchmarks/baselines.py loads them side
# by side. qpth's metadata is broken (numpy>=1<2), hence --no-deps.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python -m pip install --no-deps --target "$here/.baselines/cvxpylayers_0_1_9" "cvxpylayers==0.1.9"
python -m pip install --no-deps --target "$here/.baselines/cvxpylayers_1" "cvxpylayers==1.2.0"
python -m pip install --no-deps qpth
# cvxpylayers 0.1.9 picks ECOS for problems without PSD cones (diffcp's default).
python -m pip install ecos
