"""Auxiliary variables of a compiled QP or cone program that its own equalities define, found once.

CVXPY writes ½‖Mx‖² with a parameter M as ½‖t‖² subject to t = Mx: the
OptNet QP (n = 10, 5 equalities, 5 inequalities) becomes 20 variables and 15
equalities, and the native QP solver, whose cost grows with both, took 12.7
ms for it at batch 128 against 6.5 ms for the QP as written. A variable that
appears in one equality row only, with a constant nonzero coefficient, is a
function of the others: t_j = (b_r - Σ_{k≠j} A_rk x_k) / A_rj. The solver
front end substitutes such variables out of the objective and solves the
QP of the rest (`ops/qp_reduction.py`); this module only finds them, from
the compiled problem's sparsity pattern and constant entries.

Cone programs have them too: CVXPY writes the ellipsoid constraint
‖A(y − z)‖ ≤ 1 as ‖t‖ ≤ 1 with t = A(y − z), 42 variables and 20 equalities
for n = 20 where 22 variables and no equality say the same. There an
auxiliary variable may also enter cone rows (they are rewritten in the
others), but no other equality (`ops/cone_reduction.py`).

Limits: in a QP, a variable that also enters an inequality stays; a variable
whose coefficient depends on a parameter (it could vanish) stays; each
equality row defines at most one variable.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the compiler asks how many variables a QP leaves to solve for
    from keras_optlayers.core.compiler import CompiledProblem


@dataclasses.dataclass(frozen=True)
class AuxiliaryVariables:
    """Variables to substitute out of a compiled QP, with the equalities that define them.

    `eliminated[i]` is defined by equality row `defining_rows[i]`, where its
    coefficient is the constant `coefficients[i]`; `kept` and `kept_rows`
    are the other variables and equality rows (`core/dense_blocks` lays the
    solvers' data out in these terms).
    """

    kept: np.ndarray
    eliminated: np.ndarray
    defining_rows: np.ndarray
    coefficients: np.ndarray
    kept_rows: np.ndarray


def find_auxiliary_variables(program: CompiledProblem) -> AuxiliaryVariables | None:
    """The program's auxiliary variables defined by its equalities; None if there are none.

    In a QP they appear in no other row of A; in a cone program, in no other
    equality row (cone rows are allowed).
    """
    rows, cols = program.A.rows, program.A.cols
    num_equalities, num_vars = program.cones.zero, program.num_vars
    counted = slice(None) if program.kind == "qp" else rows < num_equalities
    appearances = np.bincount(cols[counted], minlength=num_vars)
    # An entry is constant when only theta's constant 1 feeds it (the entry
    # after every parameter, before the gather that forms theta).
    one = sum(info.size for info in program.parameters)
    constant_columns = np.flatnonzero(program.theta_index == one)
    matrix = program.A.matrix
    eliminated, defining_rows, coefficients, used_rows = [], [], [], set()
    for entry, (row, col) in enumerate(zip(rows, cols)):
        if appearances[col] != 1 or row >= num_equalities or row in used_rows:
            continue
        start, stop = matrix.indptr[entry], matrix.indptr[entry + 1]
        feeds = matrix.indices[start:stop]
        if len(feeds) != 1 or feeds[0] not in constant_columns or matrix.data[start] == 0:
            continue
        eliminated.append(int(col))
        defining_rows.append(int(row))
        coefficients.append(float(matrix.data[start]))
        used_rows.add(int(row))
    # Something must be left to solve: a variable, and (the SOCP solver needs one) a row.
    if not eliminated or len(eliminated) == num_vars or (program.kind != "qp" and len(eliminated) == program.num_rows):
        return None
    eliminated_array = np.array(eliminated)
    kept = np.setdiff1d(np.arange(num_vars), eliminated_array)
    defining = np.array(defining_rows)
    kept_rows = np.setdiff1d(np.arange(num_equalities), defining)
    return AuxiliaryVariables(
        kept=kept,
        eliminated=eliminated_array,
        defining_rows=defining,
        coefficients=np.array(coefficients),
        kept_rows=kept_rows,
    )
