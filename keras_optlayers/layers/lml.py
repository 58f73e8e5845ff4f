"""The LML (limited multi-label) layer."""

from __future__ import annotations

import keras
import numpy as np

from keras_optlayers.core import checks
from keras_optlayers.core.problems import ProblemSpec, lml_problem
from keras_optlayers.ops._lml import lml


@keras.saving.register_keras_serializable(package="keras_optlayers")
class LML(keras.layers.Layer):
    """The limited multi-label projection: a soft top-k.

    Formula:
    ``` python
    y = argmin_y -x^T y - H_b(y)  s.t.  sum(y) = k   (along `axis`)
    ```
    with H_b the binary entropy (Amos, Koltun & Kolter, 2019): y lies in
    (0, 1)^n and sums to k. Computed as y = sigmoid(x + nu) with nu found by
    bracketed Newton with bisection fallback (at most 100 steps), with the
    exact implicit gradient. float32 inputs are computed in float64
    internally. TensorFlow backend only.

    Args:
        k: a python number strictly between 0 and n, the size of `axis`
            (need not be an integer).
        axis: the axis to project along; its size must be known. Defaults
            to `-1`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        Arbitrary, rank >= 1, with a known size along `axis`.

    Output shape:
        Same shape and dtype as the input (no autocasting).

    Example:

    >>> import numpy as np
    >>> layer = LML(k=2)
    >>> layer(np.array([1.5, -0.3, -2.2, 0.6], dtype="float32")).numpy().round(4)
    array([0.82  , 0.4295, 0.1012, 0.6493], dtype=float32)
    """

    def __init__(self, k: float, axis: int = -1, **kwargs):
        # The input dtype is kept: float64 callers get float64 results.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        checks.check_axis_argument(axis)
        checks.check_k(k, n=None)
        self.k = k.item() if isinstance(k, np.generic) else k
        self.axis = axis

    def build(self, input_shape):
        axis = checks.canonical_axis(self.axis, len(input_shape), name="inputs")
        checks.check_k(self.k, input_shape[axis])

    def call(self, inputs):
        return lml(inputs, self.k, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "k": self.k, "axis": self.axis}

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        """The same projection in CVXPY form, for `CvxpyLayer`; parameters `(x,)`."""
        return lml_problem(n, self.k)
