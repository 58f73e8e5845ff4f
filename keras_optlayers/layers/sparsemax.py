"""The Sparsemax layer."""

from __future__ import annotations

import keras

from keras_optlayers.core import checks
from keras_optlayers.core.problems import ProblemSpec, sparsemax_problem
from keras_optlayers.ops._sparsemax import sparsemax


@keras.saving.register_keras_serializable(package="keras_optlayers")
class Sparsemax(keras.layers.Layer):
    """Sparsemax: the Euclidean projection onto the probability simplex.

    Formula:
    ``` python
    y = argmin_y ||y - x||^2  s.t.  sum(y) = 1, y >= 0   (along `axis`)
    ```
    Like softmax it returns a probability vector, but with exact zeros
    (Martins & Astudillo, 2016). Computed by sorting and thresholding, with
    the exact gradient; float32 inputs are computed in float64 internally.
    TensorFlow backend only.

    Args:
        axis: the axis to project along. Defaults to `-1`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        Arbitrary, rank >= 1. Use `input_shape` when this layer is the first
        in a model.

    Output shape:
        Same shape and dtype as the input (no autocasting).

    Example:

    >>> import numpy as np
    >>> layer = Sparsemax()
    >>> layer(np.array([1.5, 0.5, -2.0], dtype="float32")).numpy()
    array([1., 0., 0.], dtype=float32)
    """

    def __init__(self, axis: int = -1, **kwargs):
        # The input dtype is kept: float64 callers get float64 results.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        checks.check_axis_argument(axis)
        self.axis = axis

    def build(self, input_shape):
        checks.canonical_axis(self.axis, len(input_shape), name="inputs")

    def call(self, inputs):
        return sparsemax(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        """The same projection in CVXPY form, for `CvxpyLayer`; parameters `(x,)`."""
        return sparsemax_problem(n)
