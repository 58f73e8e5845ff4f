"""The EllipsoidProjection layer: projection onto a learnable ellipsoid."""

from __future__ import annotations

from typing import Any, Mapping

import keras

from keras_optlayers.core.definitions import ELLIPSOID_PROJECTION
from keras_optlayers.layers.learnable_layer import Initializer, LearnableLayer, own_arguments

_DEFAULTS = ELLIPSOID_PROJECTION.defaults


@keras.saving.register_keras_serializable(package="keras_optlayers")
class EllipsoidProjection(LearnableLayer):
    """Euclidean projection onto a learnable ellipsoid.

    Formula:
    ``` python
    y = argmin_y ½||x - y||²  s.t.  ½||A (y - z)||² <= 1
    ```
    with the shape matrix A (dim, dim) and the center z (dim,) trainable.
    The ellipsoid is never empty (z is in it). The constraint is a
    second-order cone, so the layer solves a cone program; see `solver`.

    Args:
        A_initializer: initializer of A. Defaults to `"identity"`, the ball
            of radius sqrt(2) around z.
        z_initializer: initializer of z. Defaults to `"zeros"`.
        A_regularizer, z_regularizer: regularizers of A and z. Default: none.
        A_constraint, z_constraint: constraints of A and z. Default: none.
        solver, solver_args, on_failure: see `ConvexLayer`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Weights:
        `A`, `z`.

    Input shape:
        `(..., dim)`.

    Output shape:
        Same shape as the input; the dtype is the layer's compute dtype.

    Example:

    >>> import numpy as np
    >>> layer = EllipsoidProjection()
    >>> layer(np.array([[3.0, 0.0], [0.5, 0.5]])).numpy().round(3)  # outside points land on the boundary
    array([[1.414, 0.   ],
           [0.5  , 0.5  ]], dtype=float32)
    """

    definition = ELLIPSOID_PROJECTION

    def __init__(
        self,
        A_initializer: Initializer = _DEFAULTS.A_initializer,
        z_initializer: Initializer = _DEFAULTS.z_initializer,
        A_regularizer: Any = None,
        z_regularizer: Any = None,
        A_constraint: Any = None,
        z_constraint: Any = None,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        on_failure: str = "raise",
        **kwargs,
    ):
        super().__init__(**own_arguments(locals()), **kwargs)
