"""The LML layer."""

from __future__ import annotations

import keras

from keras_optlayers.core.definitions import LML as LML_DEFINITION
from keras_optlayers.layers.projection_layer import ProjectionLayer

_DEFAULTS = LML_DEFINITION.defaults


@keras.saving.register_keras_serializable(package="keras_optlayers")
class LML(ProjectionLayer):
    """The limited multi-label projection: a soft top-k.

    Formula:
    ``` python
    y = argmin_y -x^T y - H_b(y)  s.t.  sum(y) = k   (along `axis`)
    ```
    with H_b the binary entropy (Amos, Koltun & Kolter, 2019): y lies in
    (0, 1)^n and sums to k. Computed as y = sigmoid(x + nu) with nu found by
    bracketed Newton with bisection fallback (at most 100 steps), with the
    exact implicit gradient. float32 inputs are computed in float64
    internally.

    Args:
        k: a python number strictly between 0 and n, the size of `axis`
            (need not be an integer).
        axis: the axis to project along; its size must be known. Defaults
            to `-1`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the scores x.
        mask: optional boolean tensor broadcastable to `inputs`; False
            excludes an entry (probability 0, gradient 0), as do `-inf`
            inputs. NaN inputs give NaN outputs, as in softmax.

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

    definition = LML_DEFINITION

    def __init__(self, k: float, axis: int = _DEFAULTS.axis, **kwargs):
        super().__init__(k=k, axis=axis, **kwargs)
