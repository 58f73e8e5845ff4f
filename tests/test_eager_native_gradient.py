"""Eager calls of the native solvers: a compiled forward pass, and a compiled
gradient at the forward pass's own solution (`solvers/solution_replay.py`).

The gradient must be the one a single graph computes, and match central
differences; the gradient's graph must not iterate (no loop: the solve is
replayed), and one forward-and-backward call counts as one solve.
"""

import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    cvxpy_solve,
    ellipsoid_projection,
    finite_difference_gradients,
    inequality_qp,
    loss_and_gradients,
    weighted_sum,
    weights_like,
)

from keras_optlayers import CvxpyLayer
from keras_optlayers.compiled_function import CompiledFunction
from keras_optlayers.solvers.qp import qp_solve
from keras_optlayers.solvers import solution_replay

FAMILIES = {"QP": inequality_qp, "SOCP": ellipsoid_projection}


def layer_and_values(solver):
    family = FAMILIES[solver]()
    values = family.sample(np.random.default_rng(3))
    layer = CvxpyLayer(family.problem, family.parameters, family.variables, solver=solver)
    weights = weights_like(cvxpy_solve(family.problem, family.parameters, values, family.variables))
    return layer, values, weights


@pytest.mark.parametrize("solver", sorted(FAMILIES))
def test_eager_gradient_is_the_graph_gradient_and_matches_central_differences(solver):
    layer, values, weights = layer_and_values(solver)
    tensors = [tf.constant(v) for v in values]
    compute = loss_and_gradients(layer, weights)

    eager_loss, eager_gradients = compute(*tensors)
    graph_loss, graph_gradients = tf.function(compute)(*tensors)

    np.testing.assert_allclose(eager_loss.numpy(), graph_loss.numpy(), rtol=1e-12)
    for eager, graph in zip(eager_gradients, graph_gradients):
        np.testing.assert_allclose(eager.numpy(), graph.numpy(), rtol=1e-9, atol=1e-12)
    for eager, expected in zip(eager_gradients, finite_difference_gradients(layer, weights, values)):
        np.testing.assert_allclose(eager.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", sorted(FAMILIES))
def test_eager_gradient_does_not_solve_again(solver):
    layer, values, weights = layer_and_values(solver)
    tensors = [tf.constant(v) for v in values]

    loss_and_gradients(layer, weights)(*tensors)

    compiled, = layer.batched_problem._functions.values()
    graph, = [concrete.graph for concrete in compiled._gradient.concrete_functions()]
    loops = [op.type for op in graph.get_operations() if "While" in op.type]
    inner = [node.op for function in graph.as_graph_def().library.function
             for node in function.node_def if "While" in node.op]
    assert not loops and not inner
    assert layer.solver_statistics()["calls"] == 1


def op_types(function: CompiledFunction) -> list[str]:
    """The op types of a compiled function's one trace and of the functions it calls (loop bodies)."""
    graph, = [concrete.graph for concrete in function.concrete_functions()]
    graph_def = graph.as_graph_def()
    return [node.op for node in graph_def.node] + [
        node.op for function in graph_def.library.function for node in function.node_def]


def test_eager_gradient_does_not_compute_the_solvers_constants_again():
    """The scaling factors (Ruiz: rsqrt), P's convexity check (a Cholesky factor) and the
    equality elimination (an SVD) carry no gradient: the gradient's function replays them."""
    layer, values, weights = layer_and_values("QP")
    loss_and_gradients(layer, weights)(*[tf.constant(v) for v in values])

    compiled, = layer.batched_problem._functions.values()
    forward, gradient = op_types(compiled._forward), op_types(compiled._gradient)
    assert "Svd" in forward and "Rsqrt" in forward
    assert "Svd" not in gradient and "Rsqrt" not in gradient
    assert gradient.count("Cholesky") == 1  # the implicit gradient's own factor


@pytest.mark.parametrize("solver", sorted(FAMILIES))
def test_eager_gradient_on_the_tape_as_any_op(solver):
    """The solve is recorded on the tape directly (not through tf.custom_gradient):
    a persistent tape gives the same gradient twice, a variable's read is
    differentiated through, and a tape that watches nothing records nothing."""
    layer, values, weights = layer_and_values(solver)
    tensors = [tf.constant(v) for v in values]
    variable = tf.Variable(values[0])
    _, expected = tf.function(loss_and_gradients(layer, weights))(*tensors)

    with tf.GradientTape(persistent=True) as tape:
        loss = weighted_sum(layer(variable, *tensors[1:]), weights)
    first, again = tape.gradient(loss, variable), tape.gradient(loss, variable)
    np.testing.assert_allclose(first.numpy(), expected[0].numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(first.numpy(), again.numpy())

    with tf.GradientTape() as unwatched:
        loss = weighted_sum(layer(*tensors), weights)
    assert unwatched.gradient(loss, tensors[0]) is None


def test_eager_gradient_of_a_gathered_solution():
    """Gathering rows of qp_solve's solution makes its gradient IndexedSlices (it raised before)."""
    rng = np.random.default_rng(0)
    root = rng.standard_normal((4, 4))
    P, G, h = tf.constant(root @ root.T + np.eye(4)), tf.constant(rng.standard_normal((3, 4))), tf.constant(np.ones(3))
    q = tf.constant(rng.standard_normal((2, 4)))

    def gradient(q):
        with tf.GradientTape() as tape:
            tape.watch(q)
            loss = tf.reduce_sum(tf.gather(qp_solve(P, q, G=G, h=h), [0, 0]))
        return tape.gradient(loss, q)

    eager = gradient(q)
    np.testing.assert_allclose(eager.numpy(), tf.function(gradient)(q).numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(eager.numpy()[1], 0.0)


def test_replaying_must_use_every_tensor():
    with pytest.raises(RuntimeError, match="left unused"):
        with solution_replay.replaying([tf.constant(1.0), tf.constant(2.0)]):
            solution_replay.recorded_or_replayed(lambda: (tf.constant(0.0),), count=1)


def test_compiled_function_calls_flat_records_on_the_tape_and_traces_once_per_shape():
    traces = []

    def square(x):
        traces.append(x.shape)
        return x * x

    compiled = CompiledFunction(square)
    x = tf.constant([1.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = compiled(x)
    np.testing.assert_array_equal(y.numpy(), [1.0, 4.0])
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(compiled(tf.constant([3.0, 4.0])).numpy(), [9.0, 16.0])
    assert len(traces) == 1
    compiled(tf.constant([3.0]))
    assert len(traces) == 2


def test_replaying_needs_as_many_tensors_as_the_solves_take():
    with solution_replay.replaying([tf.constant(1.0)]):
        with pytest.raises(RuntimeError, match="fewer than"):
            solution_replay.recorded_or_replayed(lambda: (tf.constant(0.0), tf.constant(0.0)), count=2)
        solution_replay.recorded_or_replayed(lambda: (tf.constant(0.0),), count=1)  # uses it up


def test_recording_collects_and_replaying_returns_the_solution():
    with solution_replay.recording() as recorded:
        first = solution_replay.recorded_or_replayed(lambda: (tf.constant(1.0), tf.constant(2.0)), count=2)
    assert [float(t) for t in recorded] == [1.0, 2.0] == [float(t) for t in first]
    with solution_replay.replaying([tf.constant(5.0), tf.constant(6.0)]):
        replayed = solution_replay.recorded_or_replayed(lambda: pytest.fail("solved again"), count=2)
    assert [float(t) for t in replayed] == [5.0, 6.0]
    # Outside both, it just solves.
    assert float(solution_replay.recorded_or_replayed(lambda: (tf.constant(7.0),), count=1)[0]) == 7.0
