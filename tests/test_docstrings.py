"""Every docstring example in the package runs as a doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import keras_optlayers

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(keras_optlayers.__path__, "keras_optlayers.")
    if not info.name.endswith("_tensorflow_check")
)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module_name, globs=vars(module).copy()):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} docstring examples failed in {module_name}"


def test_the_public_layers_have_examples():
    """Keras-style docstrings: every public layer shows an example."""
    for name in ("CvxpyLayer", "ConvexLayer", "PolytopeProjection", "EllipsoidProjection", "OptNetQP",
                 "Sparsemax", "CSparsemax", "CSoftmax", "LML"):
        assert ">>>" in getattr(keras_optlayers, name).__doc__, name
