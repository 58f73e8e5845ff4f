"""The PolytopeProjection layer: projection onto a learnable polytope."""

from __future__ import annotations

from typing import Any, Mapping

import keras

from keras_optlayers.core.problems.offsets import inequality_offsets
from keras_optlayers.core.problems.polytope import (
    check_polytope_projection_arguments,
    polytope_projection_problem,
)
from keras_optlayers.layers.convex_layer import ConvexLayer, known_last_dimension


@keras.saving.register_keras_serializable(package="keras_optlayers")
class PolytopeProjection(ConvexLayer):
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
    the solve fails with a `SolverError`.

    Args:
        num_constraints: number of half-spaces (rows of G), a positive integer.
        offset: "interior_point" (h = G z0 + slack) or "free" (h trainable).
        interior_point: the value of every coordinate of z0 (for
            `offset="interior_point"`). Defaults to `0.0`.
        slack: s0, the value of every coordinate of h - G z0, a positive
            number (for `offset="interior_point"`). Defaults to `1.0`.
        trainable_interior_point: whether z0 is trained too. Defaults to
            `False`.
        G_initializer: initializer of G. Defaults to `"glorot_uniform"`.
        h_initializer: initializer of h (for `offset="free"`). Defaults to
            `"ones"`, a polytope with the origin inside.
        solver: None (default: the native QP solver) or a solver name, see
            `ConvexLayer`.
        solver_args: default solver settings, see `ConvexLayer`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Weights:
        `G`; `h` with `offset="free"`, else `z0` (trainable or not).

    Input shape:
        `(..., dim)`.

    Output shape:
        Same shape as the input; the dtype is the layer's compute dtype.

    Example:

    >>> layer = PolytopeProjection(num_constraints=10)
    >>> y = layer(np.random.normal(size=(32, 2)).astype("float32"))
    >>> G, h = layer.polytope()  # y[i] is feasible: G @ y[i] <= h
    """

    def __init__(
        self,
        num_constraints: int,
        offset: str = "interior_point",
        interior_point: float = 0.0,
        slack: float = 1.0,
        trainable_interior_point: bool = False,
        G_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        h_initializer: str | keras.initializers.Initializer = "ones",
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(solver=solver, solver_args=solver_args, **kwargs)
        check_polytope_projection_arguments(num_constraints, offset, interior_point, slack, trainable_interior_point)
        self.num_constraints = num_constraints
        self.offset = offset
        self.interior_point = float(interior_point)
        self.slack = float(slack)
        self.trainable_interior_point = trainable_interior_point
        self.G_initializer = keras.initializers.get(G_initializer)
        self.h_initializer = keras.initializers.get(h_initializer)

    def build(self, input_shape):
        dim = known_last_dimension(input_shape)
        self.G = self.add_weight(
            shape=(self.num_constraints, dim), initializer=self.G_initializer, name="G")
        if self.offset == "free":
            self.h = self.add_weight(
                shape=(self.num_constraints,), initializer=self.h_initializer, name="h")
        else:
            self.z0 = self.add_weight(
                shape=(dim,),
                initializer=keras.initializers.Constant(self.interior_point),
                trainable=self.trainable_interior_point,
                name="z0",
            )
        spec = polytope_projection_problem(dim, self.num_constraints)
        x, G, h = spec.parameters
        self.set_problem(
            spec.problem, inputs=[x], weights={G: self.G, h: self._offsets}, outputs=spec.variables)

    def _offsets(self):
        if self.offset == "free":
            return self.h
        return inequality_offsets(self.G, self.z0, self.slack)

    def polytope(self) -> tuple[Any, Any]:
        """The current (G, h) as tensors."""
        return keras.ops.convert_to_tensor(self.G), keras.ops.convert_to_tensor(self._offsets())

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_constraints": self.num_constraints,
            "offset": self.offset,
            "interior_point": self.interior_point,
            "slack": self.slack,
            "trainable_interior_point": self.trainable_interior_point,
            "G_initializer": keras.initializers.serialize(self.G_initializer),
            "h_initializer": keras.initializers.serialize(self.h_initializer),
        }
