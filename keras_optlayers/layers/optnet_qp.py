"""The OptNetQP layer: a learnable quadratic program (Amos & Kolter, 2017)."""

from __future__ import annotations

from typing import Any, Mapping

import keras

from keras_optlayers.core.definitions import OPTNET_QP
from keras_optlayers.layers.learnable_layer import Initializer, LearnableLayer, own_arguments

_DEFAULTS = OPTNET_QP.defaults


@keras.saving.register_keras_serializable(package="keras_optlayers")
class OptNetQP(LearnableLayer):
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
        L_initializer, A_initializer, G_initializer, z0_initializer:
            initializers of the weights. Default: `"identity"`,
            `"glorot_uniform"`, `"glorot_uniform"`, `"zeros"`.
        L_regularizer, A_regularizer, G_regularizer, z0_regularizer:
            regularizers of the weights. Default: none.
        L_constraint, A_constraint, G_constraint, z0_constraint: constraints
            of the weights. Default: none.
        solver, solver_args, on_failure: see `ConvexLayer` (default: the
            native QP solver).
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
    >>> model.output_shape
    (None, 1)
    """

    definition = OPTNET_QP

    def __init__(
        self,
        num_eq: int,
        num_ineq: int,
        eps: float = _DEFAULTS.eps,
        slack: float = _DEFAULTS.slack,
        L_initializer: Initializer = _DEFAULTS.L_initializer,
        A_initializer: Initializer = _DEFAULTS.A_initializer,
        G_initializer: Initializer = _DEFAULTS.G_initializer,
        z0_initializer: Initializer = _DEFAULTS.z0_initializer,
        L_regularizer: Any = None,
        A_regularizer: Any = None,
        G_regularizer: Any = None,
        z0_regularizer: Any = None,
        L_constraint: Any = None,
        A_constraint: Any = None,
        G_constraint: Any = None,
        z0_constraint: Any = None,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        on_failure: str = "raise",
        **kwargs,
    ):
        super().__init__(**own_arguments(locals()), **kwargs)
