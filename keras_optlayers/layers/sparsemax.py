"""The Sparsemax layer."""

from __future__ import annotations

import keras

from keras_optlayers.core.definitions import SPARSEMAX
from keras_optlayers.layers.projection_layer import ProjectionLayer

_DEFAULTS = SPARSEMAX.defaults


@keras.saving.register_keras_serializable(package="keras_optlayers")
class Sparsemax(ProjectionLayer):
    """Sparsemax: the Euclidean projection onto the probability simplex.

    Formula:
    ``` python
    y = argmin_y ||y - x||^2  s.t.  sum(y) = 1, y >= 0   (along `axis`)
    ```
    Like softmax it returns a probability vector, but with exact zeros
    (Martins & Astudillo, 2016). Computed by sorting and thresholding, with
    the exact gradient; float32 inputs are computed in float64 internally.

    Args:
        axis: the axis to project along. Defaults to `-1`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the scores x.
        mask: optional boolean tensor broadcastable to `inputs`; False
            excludes an entry (probability 0, gradient 0), as do `-inf`
            inputs. NaN inputs give NaN outputs, as in softmax.

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

    definition = SPARSEMAX

    def __init__(self, axis: int = _DEFAULTS.axis, **kwargs):
        super().__init__(axis=axis, **kwargs)
