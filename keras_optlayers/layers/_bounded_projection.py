"""The shared base of the capped-simplex layers (CSparsemax, CSoftmax)."""

from __future__ import annotations

from typing import Callable

import keras

from keras_optlayers.core import checks
from keras_optlayers.core.problems import ProblemSpec


class BoundedProjection(keras.layers.Layer):
    """A projection with per-coordinate upper bounds, fixed or fed at call time.

    Subclasses set `_op`, the functional op `(x, upper, axis) -> y`, and
    `_problem`, its CVXPY builder `(n, upper=...) -> ProblemSpec`.
    """

    _op: Callable
    _problem: Callable[..., ProblemSpec]

    def __init__(self, upper: float | None = None, axis: int = -1, **kwargs):
        # The input dtype is kept: float64 callers get float64 results.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        checks.check_axis_argument(axis)
        self.upper = checks.check_upper_argument(upper)
        self.axis = axis

    def build(self, inputs_shape, upper_shape=None):
        axis = checks.canonical_axis(self.axis, len(inputs_shape), name="inputs")
        if self.upper is not None:
            checks.check_float_upper(self.upper, inputs_shape[axis])

    def call(self, inputs, upper=None):
        checks.check_call_upper(type(self).__name__, self.upper, upper)
        return type(self)._op(inputs, self.upper if upper is None else upper, axis=self.axis)

    def compute_output_shape(self, inputs_shape, upper_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "upper": self.upper, "axis": self.axis}

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        """The same projection in CVXPY form, for `CvxpyLayer`.

        Parameters `(x, upper)` when the layer takes bounds at call time,
        else `(x,)`.
        """
        return type(self)._problem(n, upper=self.upper)
