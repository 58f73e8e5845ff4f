"""The PolytopeProjection layer: projection onto a learnable polytope."""

from __future__ import annotations

from typing import Any, Mapping

import keras

from keras_optlayers.core.definitions import POLYTOPE_PROJECTION
from keras_optlayers.layers.learnable_layer import Initializer, LearnableLayer, own_arguments

_DEFAULTS = POLYTOPE_PROJECTION.defaults


@keras.saving.register_keras_serializable(package="keras_optlayers")
class PolytopeProjection(LearnableLayer):
    """Euclidean projection onto a learnable polytope {y : G y <= h}.

    Formula:
    ``` python
    y = argmin_y ½||x - y||²  s.t.  G y <= h
    ```
    with G (num_constraints, dim) trainable. With `offset="interior_point"`
    (default) the offsets are tied to a point z0 as in the cvxpylayers
    tutorial, h = G z0 + s0 with s0 = `slack` > 0, so z0 is strictly inside
    the polytope whatever G becomes and the projection always exists. Any
    polytope with z0 in its interior is reachable (the rows of G set the
    distances s0/||G_i|| of the faces to z0). With `offset="free"`, h is a
    trainable weight of its own; training can then empty the polytope, and
    the solve fails (see `on_failure`).

    Args:
        num_constraints: number of half-spaces (rows of G), a positive integer.
        offset: "interior_point" (h = G z0 + slack) or "free" (h trainable).
        interior_point: the value of every coordinate of z0 (for
            `offset="interior_point"`). Defaults to `0.0`.
        slack: s0, the value of every coordinate of h - G z0, a positive
            number (for `offset="interior_point"`). Defaults to `1.0`.
        trainable_interior_point: whether z0 is trained too. Defaults to
            `False`.
        G_initializer, h_initializer: initializers of G (default
            `"glorot_uniform"`) and h (with `offset="free"`; default `"ones"`,
            a polytope with the origin inside).
        G_regularizer, h_regularizer, z0_regularizer: regularizers of the
            weights. Default: none.
        G_constraint, h_constraint, z0_constraint: constraints of the
            weights. Default: none.
        solver, solver_args, on_failure: see `ConvexLayer` (default: the
            native QP solver).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Weights:
        `G`; `h` with `offset="free"`, else `z0` (trainable or not).

    Input shape:
        `(..., dim)`.

    Output shape:
        Same shape as the input; the dtype is the layer's compute dtype.

    Example:

    >>> import numpy as np
    >>> layer = PolytopeProjection(num_constraints=10)
    >>> y = layer(np.random.normal(size=(32, 2)).astype("float32"))
    >>> G, h = layer.polytope()
    >>> bool(np.all(np.asarray(y) @ np.asarray(G).T <= np.asarray(h) + 1e-5))
    True
    """

    definition = POLYTOPE_PROJECTION

    def __init__(
        self,
        num_constraints: int,
        offset: str = _DEFAULTS.offset,
        interior_point: float = _DEFAULTS.interior_point,
        slack: float = _DEFAULTS.slack,
        trainable_interior_point: bool = _DEFAULTS.trainable_interior_point,
        G_initializer: Initializer = _DEFAULTS.G_initializer,
        h_initializer: Initializer = _DEFAULTS.h_initializer,
        G_regularizer: Any = None,
        h_regularizer: Any = None,
        z0_regularizer: Any = None,
        G_constraint: Any = None,
        h_constraint: Any = None,
        z0_constraint: Any = None,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        on_failure: str = "raise",
        **kwargs,
    ):
        super().__init__(**own_arguments(locals()), **kwargs)

    def polytope(self) -> tuple[Any, Any]:
        """The current (G, h) as tensors."""
        G, h = self.parameter_values()
        return G, h
