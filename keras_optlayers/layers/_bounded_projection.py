"""The shared base of the capped-simplex layers (CSparsemax, CSoftmax)."""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from keras_optlayers.ops._projection_utils import canonical_axis, check_float_upper


class BoundedProjection(keras.layers.Layer):
    """A projection with per-coordinate upper bounds, fixed or fed at call time.

    Subclasses set `_op`, the functional op `(x, upper, axis) -> y`.
    """

    _op: Callable

    def __init__(self, upper: float | None = None, axis: int = -1, **kwargs):
        # The input dtype is kept: float64 callers get float64 results.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"`axis` must be an integer. Received: axis={axis!r}")
        if upper is not None:
            if isinstance(upper, bool) or not isinstance(upper, (int, float, np.integer, np.floating)):
                raise ValueError(
                    "`upper` given at construction must be a python number; pass per-element "
                    f"bounds at call time instead, `layer(x, upper)`. Received: upper={upper!r}"
                )
            upper = float(upper)
            check_float_upper(upper, n=None)
        self.upper = upper
        self.axis = axis

    def build(self, inputs_shape, upper_shape=None):
        axis = canonical_axis(self.axis, len(inputs_shape), name="inputs")
        if self.upper is not None:
            check_float_upper(self.upper, inputs_shape[axis])

    def call(self, inputs, upper=None):
        if self.upper is not None and upper is not None:
            raise ValueError(
                f"`upper` was fixed at construction; do not pass it again at call time. Received: upper={self.upper}"
            )
        if self.upper is None and upper is None:
            raise ValueError(
                f"{type(self).__name__} was built with upper=None, so the call needs the bounds: "
                "`layer(x, upper)`. Received: upper=None"
            )
        return type(self)._op(inputs, self.upper if upper is None else upper, axis=self.axis)

    def compute_output_shape(self, inputs_shape, upper_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "upper": self.upper, "axis": self.axis}
