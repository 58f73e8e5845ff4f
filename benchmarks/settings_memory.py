"""Resident memory while `solver_args` change at every call.

A sparsemax `CvxpyLayer` (n = 4, the native QP solver) called eagerly 200
times, each call with a different `tol`; prints the process's resident
memory growth after 20, 100 and 200 calls. Issue 13 reported about 9 MiB per
distinct setting (1.9 GB after 200 calls), compiled functions being cached
per setting forever; they are now kept per layer up to a bound.

    python benchmarks/settings_memory.py
"""

from __future__ import annotations

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from helpers import sparsemax  # noqa: E402

from keras_optlayers import CvxpyLayer  # noqa: E402


def resident_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    family = sparsemax()
    layer = CvxpyLayer(family.problem, family.parameters, family.variables)
    inputs = tf.constant(np.random.default_rng(0).standard_normal((8, 4)))
    for i in range(8):  # warm up: as many settings as the layer keeps compiled
        layer(inputs, solver_args={"tol": 1e-9 * (1 + i)})
    before = resident_mib()
    for call in range(1, 201):
        layer(inputs, solver_args={"tol": 1e-8 * (1 + call)})
        if call in (20, 100, 200):
            print(f"after {call} calls with distinct settings: resident memory +{resident_mib() - before:.1f} MiB",
                  flush=True)


if __name__ == "__main__":
    main()
