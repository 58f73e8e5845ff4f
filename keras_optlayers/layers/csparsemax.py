"""The CSparsemax layer."""

from __future__ import annotations

import keras

from keras_optlayers.core.definitions import CSPARSEMAX
from keras_optlayers.layers.projection_layer import ProjectionLayer

_DEFAULTS = CSPARSEMAX.defaults


@keras.saving.register_keras_serializable(package="keras_optlayers")
class CSparsemax(ProjectionLayer):
    """Constrained sparsemax: the Euclidean projection onto the capped simplex.

    Formula:
    ``` python
    y = argmin_y ||y - x||^2  s.t.  sum(y) = 1, 0 <= y <= upper   (along `axis`)
    ```
    (Malaviya, Ferreira & Martins, 2018.) Computed exactly by a sorted sweep
    over the breakpoints of the threshold, with the exact gradient, also with
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
    >>> layer = CSparsemax(upper=0.5)
    >>> layer(np.array([1.5, -0.3, -2.2, 0.6], dtype="float32")).numpy()
    array([0.5, 0. , 0. , 0.5], dtype=float32)
    """

    definition = CSPARSEMAX

    def __init__(self, upper: float | None = _DEFAULTS.upper, axis: int = _DEFAULTS.axis, **kwargs):
        super().__init__(upper=upper, axis=axis, **kwargs)
