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


def _drop_cvxpylayers_modules() -> None:
    for name in [m for m in sys.modules if m == "cvxpylayers" or m.startswith("cvxpylayers.")]:
        del sys.modules[name]


def _import_from(folder: str, module: str, keep: bool):
    """Imports `module` from one baseline folder.

    keep=False imports and forgets the package (0.1.9 imports everything up
    front); keep=True leaves it importable, for 1.x's lazy imports.
    """
    path = str(_BASELINES / folder)
    if not (_BASELINES / folder / "cvxpylayers").is_dir():
        raise ImportError(f"baseline missing: {path}; run benchmarks/install_baselines.sh")
    _drop_cvxpylayers_modules()
    sys.path.insert(0, path)
    try:
        return importlib.import_module(module)
    finally:
        if not keep:
            sys.path.remove(path)
            _drop_cvxpylayers_modules()


def cvxpylayers_tf_layer():
    """The `CvxpyLayer` class of cvxpylayers 0.1.9's TensorFlow interface.

    Call it before `cvxpylayers_torch_layer`, which keeps 1.x importable.
    """
    return _import_from("cvxpylayers_0_1_9", "cvxpylayers.tensorflow", keep=False).CvxpyLayer


def cvxpylayers_torch_layer():
    """The `CvxpyLayer` class of cvxpylayers 1.x's torch interface."""
    return _import_from("cvxpylayers_1", "cvxpylayers.torch", keep=True).CvxpyLayer


def qpth_qpfunction():
    """qpth's `QPFunction` (installed with --no-deps)."""
    from qpth.qp import QPFunction

    return QPFunction
