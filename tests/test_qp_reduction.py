"""The native QP path substitutes CVXPY's auxiliary variables out before solving.

CVXPY writes ½‖Mx‖² as ½‖t‖² with t = Mx; the QP solver then solves for x
alone (`core/auxiliary_variables.py`, `ops/qp_reduction.py`). The answers,
the multipliers of the substituted rows and the gradients must be those of
the problem as written.
"""

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf
from helpers import (
    REFERENCE_CLARABEL,
    dense_data,
    finite_difference_gradients,
    loss_and_gradients,
    op_types_and_gradients,
)

from keras_optlayers import CvxpyLayer
from keras_optlayers.core.auxiliary_variables import find_auxiliary_variables
from keras_optlayers.core.compiler import compile_problem
from keras_optlayers.core.problems import sparsemax_problem
from keras_optlayers.core import dense_blocks
from keras_optlayers.core.dense_blocks import BlockLayout, DenseBlock, qp_blocks
from keras_optlayers.ops.affine_maps import BlockMaps
from keras_optlayers.ops.qp_reduction import reduced_qp


def optnet_qp(n=4, p=1, m=3):
    root, q, A, b, G, h = (cp.Parameter(shape, name=name) for name, shape in
                           (("root", (n, n)), ("q", n), ("A", (p, n)), ("b", p), ("G", (m, n)), ("h", m)))
    x = cp.Variable(n, name="x")
    equality, inequality = A @ x == b, G @ x <= h
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(root @ x) + q @ x), [equality, inequality])
    return problem, [root, q, A, b, G, h], x, equality, inequality


def optnet_values(rng, n=4, p=1, m=3):
    x0 = rng.normal(size=n)
    A, G = rng.normal(size=(p, n)), rng.normal(size=(m, n))
    # The unconstrained minimizer far along -q: some inequalities are active.
    return [rng.normal(size=(n, n)) + 2 * np.eye(n), rng.normal(size=n) * 3, A, A @ x0, G, G @ x0 + 0.5]


def test_the_auxiliary_variables_of_a_squared_norm_are_found():
    problem, parameters, x, _, _ = optnet_qp()
    program = compile_problem(problem, parameters, [x], quadratic=True)
    auxiliary = find_auxiliary_variables(program)
    assert program.num_vars == 8 and program.cones.zero == 5
    assert len(auxiliary.eliminated) == 4 and len(auxiliary.kept) == 4
    assert len(auxiliary.defining_rows) == 4 and len(auxiliary.kept_rows) == 1
    # Kept and eliminated split the variables, kept and defining rows the equalities.
    np.testing.assert_array_equal(np.sort(np.concatenate([auxiliary.kept, auxiliary.eliminated])), np.arange(8))
    np.testing.assert_array_equal(np.sort(np.concatenate([auxiliary.kept_rows, auxiliary.defining_rows])), np.arange(5))
    # The solver's [x, t] back in the compiled order.
    order = np.concatenate([auxiliary.kept, auxiliary.eliminated])[qp_blocks(program, auxiliary).x_order]
    np.testing.assert_array_equal(order, np.arange(8))


def test_no_auxiliary_variables_where_none_is_defined_by_an_equality():
    q, y = cp.Parameter(5), cp.Variable(5)
    plain = cp.Problem(cp.Minimize(cp.sum_squares(y) + q @ y), [y >= 0])  # no auxiliary variable
    program = compile_problem(plain, [q], [y], quadratic=True)
    assert find_auxiliary_variables(program) is None
    spec = sparsemax_problem(5)  # ½‖x - y‖² is ½‖t‖² with t = x - y
    program = compile_problem(spec.problem, spec.parameters, spec.variables, quadratic=True)
    assert len(find_auxiliary_variables(program).eliminated) == 5
    # A variable that also enters an inequality stays.
    M, y, t = cp.Parameter((3, 3)), cp.Variable(3), cp.Variable(3)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(t) + cp.sum(y)), [t == M @ y, t >= -1])
    program = compile_problem(problem, [M], [y], quadratic=True)
    auxiliary = find_auxiliary_variables(program)
    assert auxiliary is None or not set(auxiliary.eliminated) & set(_columns_in_inequalities(program))


def _columns_in_inequalities(program):
    return program.A.cols[program.A.rows >= program.cones.zero]


def test_solutions_multipliers_and_gradients_are_those_of_the_problem_as_written(run):
    problem, parameters, x, equality, inequality = optnet_qp()
    rng = np.random.default_rng(4)
    values = optnet_values(rng)
    layer = CvxpyLayer(problem, parameters, [x, equality.dual_variables[0], inequality.dual_variables[0]],
                       solver="QP")
    assert layer.batched_problem._blocks.layout.has_auxiliary

    outputs = run(lambda *t: layer(*t), *[tf.constant(v) for v in values])

    for parameter, value in zip(parameters, values):
        parameter.value = value
    problem.solve(**REFERENCE_CLARABEL)
    np.testing.assert_allclose(outputs[0].numpy(), x.value, atol=1e-7)
    np.testing.assert_allclose(outputs[1].numpy(), equality.dual_value, atol=1e-6)
    np.testing.assert_allclose(outputs[2].numpy(), inequality.dual_value, atol=1e-6)
    assert np.any(inequality.dual_value > 1e-3)  # an active inequality

    output_weights = [rng.normal(size=4), np.zeros(1), np.zeros(3)]  # the loss weighs the solution only
    _, gradients = run(loss_and_gradients(layer, output_weights), *[tf.constant(v) for v in values])
    expected = finite_difference_gradients(layer, output_weights, values)
    for got, want in zip(gradients, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batched", [True, False])
def test_a_users_own_defining_equality_keeps_its_multiplier(batched):
    """t == M y written by the user is substituted too; its dual comes from stationarity in t."""
    M, q = cp.Parameter((3, 3), name="M"), cp.Parameter(3, name="q")
    y, t = cp.Variable(3), cp.Variable(3)
    definition = t == M @ y
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(t) + q @ y + cp.sum_squares(y)), [definition, y >= -1])
    layer = CvxpyLayer(problem, [M, q], [y, t, definition.dual_variables[0]], solver="QP")
    assert layer.batched_problem._blocks.layout.has_auxiliary
    rng = np.random.default_rng(5)
    M_value, q_value = rng.normal(size=(3, 3)), rng.normal(size=3) * 4
    inputs = (M_value[None], q_value[None]) if batched else (M_value, q_value)

    y_out, t_out, dual = (o.numpy().reshape(3) for o in layer(*inputs))

    M.value, q.value = M_value, q_value
    problem.solve(**REFERENCE_CLARABEL)
    np.testing.assert_allclose(y_out, y.value, atol=1e-7)
    np.testing.assert_allclose(t_out, t.value, atol=1e-7)
    np.testing.assert_allclose(dual, definition.dual_value, atol=1e-6)


def test_optnet_layer_under_xla_is_solved_and_matches_clarabel():
    # XLA's SVD is accurate to about 1e-7: a null-space projector built from
    # it alone left the equalities unmet by that much, and at this size the
    # check called every example infeasible (NaN outputs with on_failure="nan").
    n, p, m = 10, 5, 5
    problem, parameters, x, _, _ = optnet_qp(n, p, m)
    layer = CvxpyLayer(problem, parameters, [x], solver="QP", on_failure="nan")
    rng = np.random.default_rng(0)
    batch = [optnet_values(rng, n, p, m) for _ in range(3)]
    stacked = [tf.constant(np.stack(values)) for values in zip(*batch)]

    (solutions,) = tf.function(lambda *t: layer(*t), jit_compile=True)(*stacked)

    for solution, values in zip(solutions.numpy(), batch, strict=True):
        for parameter, value in zip(parameters, values):
            parameter.value = value
        problem.solve(**REFERENCE_CLARABEL)
        np.testing.assert_allclose(solution, x.value, atol=1e-7)


def test_the_dense_blocks_and_the_reduced_qp_are_those_of_the_compiled_program():
    """Each block of `core/dense_blocks.qp_blocks`, applied to the parameter vector, against the compiled maps in numpy."""
    problem, parameters, x, _, _ = optnet_qp()
    program = compile_problem(problem, parameters, [x], quadratic=True)
    auxiliary = find_auxiliary_variables(program)
    layout = qp_blocks(program, auxiliary)
    values = optnet_values(np.random.default_rng(7))
    vector = np.concatenate([np.ravel(v) for v in values] + [[1.0]])
    theta = program.theta([v[None] for v in values])[0]
    np.testing.assert_array_equal(program.parameter_selection() @ vector, theta)
    n, zero = program.num_vars, program.cones.zero
    P, A = dense_data(program.P, theta), dense_data(program.A, theta)
    c, b = program.c @ theta, program.b @ theta
    kept, eliminated, a = auxiliary.kept, auxiliary.eliminated, auxiliary.coefficients
    blocks = {name: (block.matrix @ vector).reshape(block.shape) for name, block in layout.blocks.items()}
    M = -A[auxiliary.defining_rows][:, kept] / a[:, None]
    d = b[auxiliary.defining_rows] / a
    np.testing.assert_allclose(blocks["M"], M, atol=1e-14)
    np.testing.assert_allclose(blocks["d"], d, atol=1e-14)
    np.testing.assert_allclose(blocks["P_tt"], P[np.ix_(eliminated, eliminated)], atol=1e-14)
    np.testing.assert_allclose(blocks["A"], A[np.ix_(auxiliary.kept_rows, kept)], atol=1e-14)
    np.testing.assert_allclose(blocks["G"], A[zero:][:, kept], atol=1e-14)
    np.testing.assert_allclose(blocks["h"], b[zero:], atol=1e-14)
    assert {"P_kk", "P_tt", "M"} <= set(layout.applied()) and not {"P_kt", "P_tk", "c_t", "d"} & set(layout.applied())

    # The reduced QP is Tᵀ P T, Tᵀ (P u + c) with x_full = T x + u.
    T = np.zeros((n, len(kept)))
    T[kept, np.arange(len(kept))] = 1.0
    T[eliminated] = M
    u = np.zeros(n)
    u[eliminated] = d
    qp, restore = reduced_qp(layout, BlockMaps(layout)(tf.constant(vector[None])))
    np.testing.assert_allclose(qp[0][0].numpy(), T.T @ P @ T, atol=1e-12)
    np.testing.assert_allclose(qp[1][0].numpy(), T.T @ (P @ u + c), atol=1e-12)
    # The restored solution, read through the layout's orders, is x_full = T x + u.
    x_kept = np.random.default_rng(8).normal(size=len(kept))
    x_solution, _ = restore(tf.constant(x_kept[None]), tf.zeros([1, len(auxiliary.kept_rows)], tf.float64),
                            tf.zeros([1, program.num_rows - zero], tf.float64))
    np.testing.assert_allclose(x_solution[0].numpy()[layout.x_order], T @ x_kept + u, atol=1e-12)


def test_no_transpose_between_the_parameters_and_the_qp_solver():
    """The affine steps and the substitution run without a Transpose op, forward or backward.

    On CPU each of TensorFlow's transposes of these small batches cost 80-300 µs,
    45 of them 3.8 ms of the OptNet layer's 21 ms at batch 128 (`ops/affine_maps.py`).
    """
    problem, parameters, x, _, _ = optnet_qp()
    layer = CvxpyLayer(problem, parameters, [x], solver="QP")
    engine = layer.batched_problem
    values = [tf.constant(np.repeat(v[None], 3, axis=0)) for v in optnet_values(np.random.default_rng(9))]

    def affine_steps(*tensors):
        blocks = engine._blocks(engine._parameter_vector(list(tensors)))
        (P, c, A, b, G, h), restore = reduced_qp(engine._blocks.layout, blocks)
        return (P, c, A, b, G, h, *engine._read_outputs(*restore(c, b, h)))

    op_types, gradients = op_types_and_gradients(affine_steps, values)
    assert "Transpose" not in op_types and "GatherV2" in op_types
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)


def test_the_reduced_qp_with_every_block_present():
    """P' = TᵀPT and c' = Tᵀ(Pu + c) when P couples kept and eliminated variables and t has an offset.

    No CVXPY problem this library compiles has nonzero P_kt or P_tk (CVXPY
    gives each quadratic term its own auxiliary variable), so the products
    with them are checked on synthetic blocks.
    """
    rng = np.random.default_rng(13)
    kept, eliminated = 3, 2
    root = rng.normal(size=(kept + eliminated, kept + eliminated))
    P, c = root @ root.T, rng.normal(size=kept + eliminated)
    M, d, a = rng.normal(size=(eliminated, kept)), rng.normal(size=eliminated), np.array([2.0, -0.5])
    k, t = slice(0, kept), slice(kept, None)
    blocks = {name: tf.constant(value[None]) for name, value in {
        "P_kk": P[k, k], "P_kt": P[k, t], "P_tk": P[t, k], "P_tt": P[t, t], "c_k": c[k], "c_t": c[t],
        "M": M, "d": d, "G": rng.normal(size=(1, kept)), "h": np.ones(1)}.items()}
    layout = BlockLayout(blocks={"M": DenseBlock(sp.csr_matrix((eliminated * kept, 1)), (eliminated, kept))},
                         required=(), coefficients=a, x_order=np.arange(kept + eliminated),
                         y_order=np.arange(eliminated + 1))
    T = np.vstack([np.eye(kept), M])
    u = np.concatenate([np.zeros(kept), d])

    (P_reduced, c_reduced, A, b, _, _), restore = reduced_qp(layout, blocks)

    assert A is None and b is None
    np.testing.assert_allclose(P_reduced[0].numpy(), T.T @ P @ T, atol=1e-12)
    np.testing.assert_allclose(c_reduced[0].numpy(), T.T @ (P @ u + c), atol=1e-12)
    x = rng.normal(size=kept)
    x_full, y = restore(tf.constant(x[None]), tf.zeros([1, 0], tf.float64), tf.constant([[0.7]], tf.float64))
    np.testing.assert_allclose(x_full[0].numpy(), T @ x + u, atol=1e-12)
    # Stationarity in t: (P x_full + c)_t + a ν_def = 0; λ comes last.
    np.testing.assert_allclose(y[0].numpy(), np.concatenate([-(P @ (T @ x + u) + c)[t] / a, [0.7]]), atol=1e-12)


@pytest.mark.parametrize("constant_d", [False, True], ids=["d_from_parameters", "constant_d"])
def test_products_with_a_constant_M_are_composed_at_compile_time(constant_d):
    """Where M is constant, P' (and c', when P_kt d and P_tt d are linear) come as blocks equal to the products."""
    rng = np.random.default_rng(14)
    kept, eliminated, entries = 3, 2, 5

    def block(shape, constant=False):
        size = int(np.prod(shape))
        matrix = np.zeros((size, entries + 1))
        if constant:
            matrix[:, -1] = rng.normal(size=size)  # the parameter vector's last entry is the constant 1
        else:
            matrix[:] = rng.normal(size=(size, entries + 1))
        return DenseBlock(sp.csr_matrix(matrix), shape)

    blocks = {
        "P_kk": block((kept, kept)), "P_kt": block((kept, eliminated)), "P_tk": block((eliminated, kept)),
        "P_tt": block((eliminated, eliminated)), "c_k": block((kept,)), "c_t": block((eliminated,)),
        "M": block((eliminated, kept), constant=True), "d": block((eliminated,), constant=constant_d),
        "G": block((1, kept)), "h": block((1,)),
    }
    folded, superseded = dense_blocks._folded_blocks(blocks, cone=False)
    assert "P_reduced" in folded and ("c_reduced" in folded) == constant_d
    orders = {"coefficients": np.array([2.0, -0.5]), "x_order": np.arange(kept + eliminated),
              "y_order": np.arange(eliminated + 1)}
    composed = BlockLayout(blocks={**blocks, **folded}, required=(*blocks, *folded), superseded=superseded, **orders)
    multiplied = BlockLayout(blocks=blocks, required=tuple(blocks), **orders)
    assert "P_kk" not in composed.applied()
    vector = tf.constant(np.append(rng.normal(size=entries), 1.0)[None])

    (P_composed, c_composed, *_), _ = reduced_qp(composed, BlockMaps(composed)(vector))
    (P_multiplied, c_multiplied, *_), _ = reduced_qp(multiplied, BlockMaps(multiplied)(vector))

    np.testing.assert_allclose(P_composed.numpy(), P_multiplied.numpy(), atol=1e-12)
    np.testing.assert_allclose(c_composed.numpy(), c_multiplied.numpy(), atol=1e-12)
