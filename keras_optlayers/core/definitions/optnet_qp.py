"""The definition of OptNetQP: a quadratic program with learnable data."""

from __future__ import annotations

from keras_optlayers.core import checks
from keras_optlayers.core.definitions.base import Argument, LearnableDefinition, Weight
from keras_optlayers.core.problems.offsets import equality_offsets, inequality_offsets
from keras_optlayers.core.problems.optnet_qp import check_count, optnet_qp_problem


def _count(name):
    def check(value):
        check_count(name, value)
        return value
    return check


def _input_size(input_shape, arguments) -> int:
    n = checks.known_input_size(input_shape, arguments)
    if n <= arguments["num_eq"]:
        raise ValueError(
            "Expected the last input dimension n to be larger than `num_eq`, or the equalities "
            f"leave at most one point. Received: input_shape={tuple(input_shape)}, num_eq={arguments['num_eq']}")
    return n


def _wiring(w, a):
    values = [w["L"]]
    if a["num_eq"]:
        values += [w["A"], equality_offsets(w["A"], w["z0"])]
    if a["num_ineq"]:
        values += [w["G"], inequality_offsets(w["G"], w["z0"], a["slack"])]
    return values


OPTNET_QP = LearnableDefinition(
    name="OptNetQP",
    arguments=(
        Argument("num_eq", check=_count("num_eq")),
        Argument("num_ineq", check=_count("num_ineq")),
        Argument("eps", 1e-4, lambda value: checks.check_positive("eps", value)),
        Argument("slack", 1.0, lambda value: checks.check_positive("slack", value)),
    ),
    weights=(
        Weight("L", lambda n, a: (n, n), "identity"),
        Weight("A", lambda n, a: (a["num_eq"], n), "glorot_uniform", present=lambda a: a["num_eq"] > 0),
        Weight("G", lambda n, a: (a["num_ineq"], n), "glorot_uniform", present=lambda a: a["num_ineq"] > 0),
        Weight("z0", lambda n, a: (n,), "zeros"),
    ),
    input_size=_input_size,
    problem=lambda n, a: optnet_qp_problem(n, a["num_eq"], a["num_ineq"], a["eps"]),
    wiring=_wiring,
)
