"""The package version, in one place.

pyproject.toml reads it (setuptools' dynamic `attr`, which parses this file
without importing the package, so building needs no TensorFlow) and
`keras_optlayers.__version__` re-exports it.
"""

__version__ = "0.1.0.dev0"
