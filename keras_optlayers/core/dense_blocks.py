"""The native solvers' data as dense blocks, each one sparse map of the parameter vector.

The compiled problem maps theta to the values of P and A in their sparsity
patterns; the native solvers want dense (B, rows, cols) matrices, with
CVXPY's auxiliary variables substituted out (`auxiliary_variables`). Every
step on the way is linear in the data, so each dense block the
substitution reads is one constant sparse matrix applied to the parameter
vector [parameters flattened row-major in the user's order, 1]: the gather
that forms theta, the scatter into a dense matrix, the split by rows and
the selection of columns are composed here, once, in scipy. The front end
applies the blocks' maps (one gather, one segment sum, one split) and
does the substitution's products (`ops/qp_reduction.py`,
`ops/cone_reduction.py`), with no other gather, slice or transpose
between the parameters and the solver (measured at batch 128
on the OptNet QP, those took 3.8 ms of a 21 ms forward and backward call,
as much as the affine arithmetic itself).

With the variables ordered [kept x, eliminated t] and each eliminated t
defined by an equality a t + A_def[:, kept] x = b_def (so t = M x + d with
M = -A_def[:, kept] / a and d = b_def / a), the blocks of a QP are

    P_kk, P_kt, P_tk, P_tt   P's rows and columns split by kept/eliminated
    c_k, c_t                 c likewise
    M, d                     the definitions of t
    A, b                     the other equalities, on the kept columns
    G, h                     the inequalities, on the kept columns

and those of a cone program (whose t may also enter cone rows)

    A, A_t, b                the rows that define nothing (the other
                             equalities, then every cone row), on the kept
                             and on the eliminated columns
    c_k, c_t, M, d           as above
    P_kk, P_kt, P_tk, P_tt   as above, when the program keeps a quadratic
                             objective (`compile_problem(...,
                             quadratic_objective=True)`).

Without auxiliary variables the kept columns are all of them and the t
blocks are absent. A block of zero size (no equalities left, no
inequalities) is absent; a block that is structurally zero is not applied
(`BlockLayout.applied`), so that a front end skips the products it
enters, unless the solver needs it (`required`).

When the definitions' M is constant (t = y − z, or CVXPY's t = x − y for a
squared norm: no parameter in M), the substitution's products that are
linear in the parameters are composed here too (`_folded_blocks`), and
the front end reads their results as blocks: P_reduced (P' of
`ops/auxiliary_substitution.reduced_objective`), c_reduced when P_kt d
and P_tt d are linear (a constant d or constant P blocks), and for a cone
program A_reduced (A + A_t M) and b_reduced (b − A_t d, when linear). The
blocks only those products read are then not applied (`superseded`).
On the sparsemax QP no product is left (P' is a constant, c' one map of
the parameters); on the ellipsoid projection only b' = b − A_t d is.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from keras_optlayers.core.auxiliary_variables import AuxiliaryVariables
from keras_optlayers.core.compiler import CompiledProblem, SparseDataMap


@dataclasses.dataclass(frozen=True)
class DenseBlock:
    """A dense block of solver data: `matrix @ parameter_vector`, reshaped row-major to `shape`."""

    matrix: sp.csr_matrix  # (prod(shape), len(parameter vector))
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """The blocks of one compiled program (module docstring) and where the solution's entries go.

    The solver's primal solution is x (kept variables); with the eliminated
    t = M x + d appended, `x_order` puts [x, t] in the compiled order. Its
    dual solution, with the eliminated rows' multipliers appended
    (stationarity in t divided by `coefficients`), is put in the compiled
    order of y by `y_order`: [ν, ν_def, λ] for a QP, [y, y_def] for a cone
    program.
    """

    blocks: dict[str, DenseBlock]
    required: tuple[str, ...]  # blocks present even when structurally zero
    coefficients: np.ndarray  # a of each defining row, in the order of t
    x_order: np.ndarray
    y_order: np.ndarray
    superseded: tuple[str, ...] = ()  # blocks read only by products composed here (the *_reduced blocks)

    @property
    def has_auxiliary(self) -> bool:
        return "M" in self.blocks

    def applied(self) -> list[str]:
        """The blocks a front end computes: those with a structural nonzero, and the required ones, less the superseded."""
        return [name for name, block in self.blocks.items()
                if name not in self.superseded and (block.matrix.nnz or name in self.required)]


def _dense_map(data: SparseDataMap | None, selection: sp.csr_matrix, shape: tuple[int, int]) -> sp.csr_matrix:
    """(shape[0] * shape[1], len(parameter vector)): the dense matrix of `data`, row-major; zero for None."""
    if data is None:
        return sp.csr_matrix((shape[0] * shape[1], selection.shape[1]))
    return sp.csr_matrix(data.scatter() @ data.matrix @ selection)


def _block(dense: sp.csr_matrix, width: int, rows: np.ndarray, cols: np.ndarray | None) -> DenseBlock:
    """Rows × cols of a dense matrix map of `width` columns (cols None: a vector's entries `rows`)."""
    if cols is None:
        return DenseBlock(sp.csr_matrix(dense[rows]), (len(rows),))
    entries = (rows[:, None] * width + cols[None, :]).ravel()
    return DenseBlock(sp.csr_matrix(dense[entries]), (len(rows), len(cols)))


def _split(program: CompiledProblem, auxiliary: AuxiliaryVariables | None):
    """(kept, eliminated, kept equality rows, defining rows, coefficients) as integer and float arrays."""
    if auxiliary is None:
        none = np.array([], dtype=int)
        return np.arange(program.num_vars), none, np.arange(program.cones.zero), none, np.array([])
    return auxiliary.kept, auxiliary.eliminated, auxiliary.kept_rows, auxiliary.defining_rows, auxiliary.coefficients


def _definitions(A, b, n, kept, defining_rows, coefficients) -> dict[str, DenseBlock]:
    """M = -A_def[:, kept] / a and d = b_def / a: each defining row divided by its coefficient."""
    per_entry = sp.diags(-1.0 / np.repeat(coefficients, len(kept)))
    return {
        "M": DenseBlock(sp.csr_matrix(per_entry @ _block(A, n, defining_rows, kept).matrix),
                        (len(defining_rows), len(kept))),
        "d": DenseBlock(sp.csr_matrix(sp.diags(1.0 / coefficients) @ _block(b, 1, defining_rows, None).matrix),
                        (len(defining_rows),)),
    }


def _constant_value(block: DenseBlock | None) -> np.ndarray | None:
    """The block's value when no parameter enters it (only the parameter vector's last entry, the 1); else None."""
    if block is None or block.matrix[:, :-1].nnz:
        return None
    return block.matrix[:, -1].toarray().reshape(block.shape)


def _times_vector(matrix: DenseBlock, vector: DenseBlock | None) -> sp.csr_matrix | None:
    """The map of matrix @ vector when it is linear in the parameters (zero for an absent or zero factor); else None."""
    if vector is None or not matrix.matrix.nnz or not vector.matrix.nnz:
        return sp.csr_matrix((matrix.shape[0], matrix.matrix.shape[1]))
    matrix_value, vector_value = _constant_value(matrix), _constant_value(vector)
    if matrix_value is not None:
        return sp.csr_matrix(sp.csr_matrix(matrix_value) @ vector.matrix)
    if vector_value is not None:
        # Row-major: (X d)_i = Σ_j X_ij d_j, so the map is (I ⊗ dᵀ) vec(X).
        return sp.csr_matrix(sp.kron(sp.identity(matrix.shape[0]), sp.csr_matrix(vector_value[None, :])) @ matrix.matrix)
    return None


def _folded_blocks(blocks: dict[str, DenseBlock], cone: bool) -> tuple[dict[str, DenseBlock], tuple[str, ...]]:
    """The substitution's products composed in scipy where M is constant (module docstring): new blocks, and the superseded.

    Row-major vec: vec(X M) = (I ⊗ Mᵀ) vec(X), vec(Mᵀ Y) = (Mᵀ ⊗ I) vec(Y),
    vec(Mᵀ Y M) = (Mᵀ ⊗ Mᵀ) vec(Y).
    """
    M_value = _constant_value(blocks.get("M"))
    if M_value is None:
        return {}, ()
    kept = M_value.shape[1]
    M_t = sp.csr_matrix(M_value.T)
    identity_kept = sp.identity(kept)
    folded, superseded = {}, []
    P_kk, P_kt, P_tk, P_tt = (blocks.get(name) for name in ("P_kk", "P_kt", "P_tk", "P_tt"))
    if P_kk is not None and P_kt is not None and P_tk is not None and P_tt is not None:  # a quadratic objective
        P_reduced = (P_kk.matrix + sp.kron(identity_kept, M_t) @ P_kt.matrix + sp.kron(M_t, identity_kept) @ P_tk.matrix
                     + sp.kron(M_t, M_t) @ P_tt.matrix)
        folded["P_reduced"] = DenseBlock(sp.csr_matrix(P_reduced), (kept, kept))
        superseded.append("P_kk")
    # c' = c_k + P_kt d + Mᵀ (c_t + P_tt d)
    d = blocks.get("d")
    P_kt_d = None if P_kt is None else _times_vector(P_kt, d)
    P_tt_d = None if P_tt is None else _times_vector(P_tt, d)
    if P_kk is None or (P_kt_d is not None and P_tt_d is not None):
        linear_t = blocks["c_t"].matrix if P_tt_d is None else blocks["c_t"].matrix + P_tt_d
        c_reduced = blocks["c_k"].matrix + M_t @ linear_t + (0 if P_kt_d is None else P_kt_d)
        folded["c_reduced"] = DenseBlock(sp.csr_matrix(c_reduced), (kept,))
        superseded += ["c_k"] + (["P_kt"] if "P_reduced" in folded else [])
    if cone:
        A, A_t = blocks["A"], blocks["A_t"]
        rows = A.shape[0]
        folded["A_reduced"] = DenseBlock(sp.csr_matrix(A.matrix + sp.kron(sp.identity(rows), M_t) @ A_t.matrix), (rows, kept))
        superseded.append("A")
        A_t_d = _times_vector(A_t, d)
        if A_t_d is not None:
            folded["b_reduced"] = DenseBlock(sp.csr_matrix(blocks["b"].matrix - A_t_d), (rows,))
            superseded.append("b")
    return folded, tuple(superseded)


def _dense_data(program: CompiledProblem) -> tuple[sp.csr_matrix, ...]:
    """Maps of the parameter vector to the dense P and A (row-major; P zero when absent), b and c."""
    selection = program.parameter_selection()
    n, rows = program.num_vars, program.num_rows
    return (_dense_map(program.P, selection, (n, n)), _dense_map(program.A, selection, (rows, n)),
            sp.csr_matrix(program.b @ selection), sp.csr_matrix(program.c @ selection))


def qp_blocks(program: CompiledProblem, auxiliary: AuxiliaryVariables | None) -> BlockLayout:
    """The dense blocks of a compiled QP (`program.kind == "qp"`), its auxiliary variables substituted out."""
    n, zero, rows = program.num_vars, program.cones.zero, program.num_rows
    P, A, b, c = _dense_data(program)
    kept, eliminated, kept_rows, defining_rows, coefficients = _split(program, auxiliary)
    inequalities = np.arange(zero, rows)
    blocks = {"P_kk": _block(P, n, kept, kept), "c_k": _block(c, 1, kept, None)}
    if len(eliminated):
        blocks.update(
            P_kt=_block(P, n, kept, eliminated), P_tk=_block(P, n, eliminated, kept),
            P_tt=_block(P, n, eliminated, eliminated), c_t=_block(c, 1, eliminated, None),
            **_definitions(A, b, n, kept, defining_rows, coefficients))
    if len(kept_rows):
        blocks.update(A=_block(A, n, kept_rows, kept), b=_block(b, 1, kept_rows, None))
    if len(inequalities):
        blocks.update(G=_block(A, n, inequalities, kept), h=_block(b, 1, inequalities, None))
    equality_order = np.argsort(np.concatenate([kept_rows, defining_rows]))
    folded, superseded = _folded_blocks(blocks, cone=False)
    return BlockLayout(
        blocks={**blocks, **folded},
        required=("P_kk", "c_k", "M", "A", "b", "G", "h", *folded),
        superseded=superseded,
        coefficients=np.asarray(coefficients, dtype=np.float64),
        x_order=np.argsort(np.concatenate([kept, eliminated])),
        y_order=np.concatenate([equality_order, inequalities]),
    )


def cone_blocks(program: CompiledProblem, auxiliary: AuxiliaryVariables | None) -> BlockLayout:
    """The dense blocks of a compiled cone program (`program.kind == "cone"`), its auxiliary variables substituted out."""
    n, zero, rows = program.num_vars, program.cones.zero, program.num_rows
    P, A, b, c = _dense_data(program)
    kept, eliminated, kept_rows, defining_rows, coefficients = _split(program, auxiliary)
    other_rows = np.concatenate([kept_rows, np.arange(zero, rows)]).astype(int)
    blocks = {"A": _block(A, n, other_rows, kept), "b": _block(b, 1, other_rows, None),
              "c_k": _block(c, 1, kept, None)}
    if program.P is not None:
        blocks["P_kk"] = _block(P, n, kept, kept)
    if len(eliminated):
        blocks.update(A_t=_block(A, n, other_rows, eliminated), c_t=_block(c, 1, eliminated, None),
                      **_definitions(A, b, n, kept, defining_rows, coefficients))
        if program.P is not None:
            blocks.update(P_kt=_block(P, n, kept, eliminated), P_tk=_block(P, n, eliminated, kept),
                          P_tt=_block(P, n, eliminated, eliminated))
    folded, superseded = _folded_blocks(blocks, cone=True)
    return BlockLayout(
        blocks={**blocks, **folded},
        required=("A", "b", "c_k", "M", *folded),
        superseded=superseded,
        coefficients=np.asarray(coefficients, dtype=np.float64),
        x_order=np.argsort(np.concatenate([kept, eliminated])),
        y_order=np.argsort(np.concatenate([other_rows, defining_rows])),
    )
