"""The EllipsoidProjection layer: projection onto a learnable ellipsoid."""

from __future__ import annotations

from typing import Any, Mapping

import keras

from keras_optlayers.core.problems.ellipsoid import ellipsoid_projection_problem
from keras_optlayers.layers.convex_layer import ConvexLayer, known_last_dimension


@keras.saving.register_keras_serializable(package="keras_optlayers")
class EllipsoidProjection(ConvexLayer):
    """Euclidean projection onto a learnable ellipsoid.

    Formula:
    ``` python
    y = argmin_y ½||x - y||²  s.t.  ½||A (y - z)||² <= 1
    ```
    with the shape matrix A (dim, dim) and the center z (dim,) trainable.
    The ellipsoid is never empty (z is in it). The constraint is a
    second-order cone, so the layer solves a cone program (SCS by default),
    on the host: it does not compile with XLA (`supports_jit` is False).

    Args:
        A_initializer: initializer of A. Defaults to `"identity"`, the ball
            of radius sqrt(2) around z.
        z_initializer: initializer of z. Defaults to `"zeros"`.
        solver: None (default: SCS) or "SCS", "Clarabel"; see `ConvexLayer`.
        solver_args: default solver settings, see `ConvexLayer`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Weights:
        `A`, `z`.

    Input shape:
        `(..., dim)`.

    Output shape:
        Same shape as the input; the dtype is the layer's compute dtype.

    Example:

    >>> layer = EllipsoidProjection()
    >>> y = layer(np.array([[3.0, 0.0], [0.5, 0.5]], dtype="float32"))
    >>> # y ~ [[1.414, 0.], [0.5, 0.5]]: outside points land on the boundary
    """

    def __init__(
        self,
        A_initializer: str | keras.initializers.Initializer = "identity",
        z_initializer: str | keras.initializers.Initializer = "zeros",
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(solver=solver, solver_args=solver_args, **kwargs)
        self.A_initializer = keras.initializers.get(A_initializer)
        self.z_initializer = keras.initializers.get(z_initializer)

    def build(self, input_shape):
        dim = known_last_dimension(input_shape)
        self.A = self.add_weight(shape=(dim, dim), initializer=self.A_initializer, name="A")
        self.z = self.add_weight(shape=(dim,), initializer=self.z_initializer, name="z")
        spec = ellipsoid_projection_problem(dim)
        x, A, z = spec.parameters
        self.set_problem(spec.problem, inputs=[x], weights={A: self.A, z: self.z}, outputs=spec.variables)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "A_initializer": keras.initializers.serialize(self.A_initializer),
            "z_initializer": keras.initializers.serialize(self.z_initializer),
        }
