"""Loads the benchmark baselines installed by `install_baselines.sh`.

cvxpylayers 0.1.9 (the last release with a TensorFlow layer) and cvxpylayers
1.x (torch) are both called `cvxpylayers`; each lives in its own folder and is
imported from there, one after the other.
"""

from __future__ import annotations

import importlib
import pathlib
import sys

_BASELINES = pathlib.Path(__file__).resolve().parent / ".baselines"


def _import_from(folder: str, module: str):
    path = str(_BASELINES / folder)
    if not (_BASELINES / folder / "cvxpylayers").is_dir():
        raise ImportError(
            f"baseline missing: {path}; run benchmarks/install_baselines.sh"
        )
    for name in [m for m in sys.modules if m == "cvxpylayers" or m.startswith("cvxpylayers.")]:
        del sys.modules[name]
    sys.path.insert(0, path)
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(path)
        for name in [m for m in sys.modules if m == "cvxpylayers" or m.startswith("cvxpylayers.")]:
            del sys.modules[name]


def cvxpylayers_tf_layer():
    """The `CvxpyLayer` class of cvxpylayers 0.1.9's TensorFlow interface."""
    return _import_from("cvxpylayers_0_1_9", "cvxpylayers.tensorflow").CvxpyLayer


def cvxpylayers_torch_layer():
    """The `CvxpyLayer` class of cvxpylayers 1.x's torch interface."""
    return _import_from("cvxpylayers_1", "cvxpylayers.torch").CvxpyLayer


def qpth_qpfunction():
    """qpth's `QPFunction` (installed with --no-deps)."""
    from qpth.qp import QPFunction

    return QPFunction
