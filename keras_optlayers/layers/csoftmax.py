"""The CSoftmax layer."""

from __future__ import annotations

import keras

from keras_optlayers.core.definitions import CSOFTMAX
from keras_optlayers.layers.projection_layer import ProjectionLayer

_DEFAULTS = CSOFTMAX.defaults


@keras.saving.register_keras_serializable(package="keras_optlayers")
class CSoftmax(ProjectionLayer):
    """Constrained softmax: softmax with per-coordinate upper bounds.

    Formula:
    ``` python
    y = argmin_y -x^T y - H(y)  s.t.  sum(y) = 1, y <= upper   (along `axis`)
    ```
    with H the Shannon entropy (Martins & Kreutzer, 2017); the solution is
    y = min(upper, exp(x - tau)). With `upper=1` it is the softmax. Computed
    exactly by sorting the breakpoints, with the exact gradient, also with
    respect to call-time bounds. float32 inputs are computed in float64
    internally.

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
        mask: optional boolean tensor broadcastable to `inputs`; False
            excludes an entry (probability 0, gradient 0), as do `-inf`
            inputs. NaN inputs give NaN outputs, as in softmax.

    Input shape:
        Arbitrary, rank >= 1.

    Output shape:
        Same shape and dtype as the input (no autocasting).

    Example:

    >>> import numpy as np
    >>> layer = CSoftmax(upper=0.5)
    >>> layer(np.array([1.5, -0.3, -2.2, 0.6], dtype="float32")).numpy().round(4)
    array([0.5   , 0.1385, 0.0207, 0.3407], dtype=float32)
    """

    definition = CSOFTMAX

    def __init__(self, upper: float | None = _DEFAULTS.upper, axis: int = _DEFAULTS.axis, **kwargs):
        super().__init__(upper=upper, axis=axis, **kwargs)
