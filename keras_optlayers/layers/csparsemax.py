"""The CSparsemax layer."""

from __future__ import annotations

import keras

from keras_optlayers.core.problems import csparsemax_problem
from keras_optlayers.layers._bounded_projection import BoundedProjection
from keras_optlayers.ops._csparsemax import csparsemax


@keras.saving.register_keras_serializable(package="keras_optlayers")
class CSparsemax(BoundedProjection):
    """Constrained sparsemax: the Euclidean projection onto the capped simplex.

    Formula:
    ``` python
    y = argmin_y ||y - x||^2  s.t.  sum(y) = 1, 0 <= y <= upper   (along `axis`)
    ```
    (Malaviya, Ferreira & Martins, 2018.) Computed exactly by a sorted sweep
    over the breakpoints of the threshold, with the exact gradient, also with
    respect to call-time bounds. float32 inputs are computed in float64
    internally. TensorFlow backend only.

    Args:
        upper: a python number bounding every coordinate (the size n of
            `axis` must satisfy n * upper >= 1), or `None` (default) to pass
            per-element bounds at call time: `layer(x, upper)`.
        axis: the axis to project along. Defaults to `-1`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the scores x.
        upper: per-element bounds, broadcastable to `inputs`, nonnegative and
            summing to at least 1 along `axis`; only when the layer was built
            with `upper=None`.

    Input shape:
        Arbitrary, rank >= 1.

    Output shape:
        Same shape and dtype as the input (no autocasting).

    Example:

    >>> import numpy as np
    >>> layer = CSparsemax(upper=0.5)
    >>> layer(np.array([1.5, -0.3, -2.2, 0.6], dtype="float32")).numpy()
    array([0.5, 0. , 0. , 0.5], dtype=float32)
    """

    _op = staticmethod(csparsemax)
    _problem = staticmethod(csparsemax_problem)
