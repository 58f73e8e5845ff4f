"""The OptNetQP layer: a learnable quadratic program (Amos & Kolter, 2017)."""

from __future__ import annotations

from typing import Any, Mapping

import keras

from keras_optlayers.core.problems.offsets import equality_offsets, inequality_offsets
from keras_optlayers.core.problems.optnet_qp import check_input_size, check_optnet_qp_arguments, optnet_qp_problem
from keras_optlayers.layers.convex_layer import ConvexLayer


@keras.saving.register_keras_serializable(package="keras_optlayers")
class OptNetQP(ConvexLayer):
    """OptNet: a quadratic program with learnable data, fed its linear term.

    Formula:
    ``` python
    x = argmin_x ½ xᵀ(L Lᵀ + eps I)x + qᵀx  s.t.  A x = b,  G x <= h
    ```
    with the input q and trainable L (n, n), A (num_eq, n), G (num_ineq, n)
    and z0 (n,). As in OptNet, the right-hand sides are tied to z0 so that
    the QP stays feasible whatever the weights become: b = A z0 and
    h = G z0 + s0 with s0 = `slack` > 0 (z0 is feasible, strictly for the
    inequalities). Q = L Lᵀ + eps I stays positive definite, so the solution
    is unique.

    Args:
        num_eq: number of equality constraints, 0 <= num_eq < n.
        num_ineq: number of inequality constraints, >= 0.
        eps: the ridge eps > 0 added to L Lᵀ. Defaults to `1e-4`.
        slack: s0, a positive number. Defaults to `1.0`.
        L_initializer: initializer of L. Defaults to `"identity"`.
        A_initializer: initializer of A. Defaults to `"glorot_uniform"`.
        G_initializer: initializer of G. Defaults to `"glorot_uniform"`.
        z0_initializer: initializer of z0. Defaults to `"zeros"`.
        solver: None (default: the native QP solver) or a solver name, see
            `ConvexLayer`.
        solver_args: default solver settings, see `ConvexLayer`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Weights:
        `L`, `A` (when num_eq > 0), `G` (when num_ineq > 0), `z0`.

    Input shape:
        `(..., n)`: the linear term q.

    Output shape:
        `(..., n)`: the solution x; the dtype is the layer's compute dtype.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((20,)),
    ...     keras.layers.Dense(10),
    ...     OptNetQP(num_eq=2, num_ineq=5),
    ...     keras.layers.Dense(1),
    ... ])
    """

    def __init__(
        self,
        num_eq: int,
        num_ineq: int,
        eps: float = 1e-4,
        slack: float = 1.0,
        L_initializer: str | keras.initializers.Initializer = "identity",
        A_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        G_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        z0_initializer: str | keras.initializers.Initializer = "zeros",
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(solver=solver, solver_args=solver_args, **kwargs)
        check_optnet_qp_arguments(num_eq, num_ineq, eps, slack)
        self.num_eq = num_eq
        self.num_ineq = num_ineq
        self.eps = float(eps)
        self.slack = float(slack)
        self.L_initializer = keras.initializers.get(L_initializer)
        self.A_initializer = keras.initializers.get(A_initializer)
        self.G_initializer = keras.initializers.get(G_initializer)
        self.z0_initializer = keras.initializers.get(z0_initializer)

    def build(self, input_shape):
        n = input_shape[-1]
        check_input_size(n, self.num_eq, input_shape)
        spec = optnet_qp_problem(n, self.num_eq, self.num_ineq, self.eps)
        q, L, *constraint_parameters = spec.parameters
        self.L = self.add_weight(shape=(n, n), initializer=self.L_initializer, name="L")
        weights = {L: self.L}
        if self.num_eq:
            A, b, *constraint_parameters = constraint_parameters
            self.A = self.add_weight(shape=(self.num_eq, n), initializer=self.A_initializer, name="A")
            weights.update({A: self.A, b: lambda: equality_offsets(self.A, self.z0)})
        if self.num_ineq:
            G, h = constraint_parameters
            self.G = self.add_weight(shape=(self.num_ineq, n), initializer=self.G_initializer, name="G")
            weights.update({G: self.G, h: lambda: inequality_offsets(self.G, self.z0, self.slack)})
        self.z0 = self.add_weight(shape=(n,), initializer=self.z0_initializer, name="z0")
        self.set_problem(spec.problem, inputs=[q], weights=weights, outputs=spec.variables)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_eq": self.num_eq,
            "num_ineq": self.num_ineq,
            "eps": self.eps,
            "slack": self.slack,
            "L_initializer": keras.initializers.serialize(self.L_initializer),
            "A_initializer": keras.initializers.serialize(self.A_initializer),
            "G_initializer": keras.initializers.serialize(self.G_initializer),
            "z0_initializer": keras.initializers.serialize(self.z0_initializer),
        }
