"""The definitions of the fast projections: Sparsemax, CSparsemax, CSoftmax, LML."""

from __future__ import annotations

import numpy as np

from keras_optlayers.core import checks
from keras_optlayers.core.definitions.base import Argument, ProjectionDefinition
from keras_optlayers.core.problems.projections import (
    csoftmax_problem,
    csparsemax_problem,
    lml_problem,
    sparsemax_problem,
)


def _check_upper_size(n, arguments) -> None:
    if arguments["upper"] is not None:
        checks.check_float_upper(arguments["upper"], n)


def _check_k_size(n, arguments) -> None:
    if n is not None:
        checks.check_k(arguments["k"], n)


def _check_k(k):
    checks.check_k(k, n=None)
    return k.item() if isinstance(k, np.generic) else k


UPPER = Argument("upper", None, checks.check_upper_argument)

SPARSEMAX = ProjectionDefinition(
    name="Sparsemax",
    arguments=(),
    op="sparsemax",
    check_size=lambda n, a: None,
    problem=lambda n, a: sparsemax_problem(n),
)

CSPARSEMAX = ProjectionDefinition(
    name="CSparsemax",
    arguments=(UPPER,),
    op="csparsemax",
    check_size=_check_upper_size,
    problem=lambda n, a: csparsemax_problem(n, upper=a["upper"]),
    call_bounds=lambda a: a["upper"] is None,
)

CSOFTMAX = ProjectionDefinition(
    name="CSoftmax",
    arguments=(UPPER,),
    op="csoftmax",
    check_size=_check_upper_size,
    problem=lambda n, a: csoftmax_problem(n, upper=a["upper"]),
    call_bounds=lambda a: a["upper"] is None,
)

LML = ProjectionDefinition(
    name="LML",
    arguments=(Argument("k", check=_check_k),),
    op="lml",
    check_size=_check_k_size,
    problem=lambda n, a: lml_problem(n, a["k"]),
)
