"""The interior-point loops' shrinking working batch (keras_optlayers.solvers.shrinking_batch)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from test_qp_solver import infeasible_batch, kkt_constructed_qp
from test_eager_native_gradient import layer_and_values
from test_socp_solver import _status_batch, ball_projection, ball_projection_data

from keras_optlayers.solvers.qp import STATUS_NAMES as QP_STATUS_NAMES
from keras_optlayers.solvers.qp import qp_solve_with_info
from keras_optlayers.solvers.shrinking_batch import SMALLEST_SHRINKING_BATCH, iterate_while_running, recompute_rows
from keras_optlayers.solvers.socp import STATUS_NAMES as SOCP_STATUS_NAMES
from keras_optlayers.solvers.socp import socp_solve_with_info

RUNS = {
    "eager": lambda function: function,
    "tf.function": tf.function,
    "xla": lambda function: tf.function(function, jit_compile=True),
}
# Example i takes LIMITS[i] steps; 20 examples, finishing at different times.
LIMITS = [3, 1, 7, 2, 2, 9, 1, 1, 4, 2, 1, 3, 1, 2, 12, 1, 2, 1, 5, 1]


def _count_to_limits(limits: tf.Tensor, max_iter: int):
    """Steps each example to its limit, read from the data; returns (steps, working batch size at its last step, limit read)."""

    def step(data, state):
        limit, nothing = data
        assert nothing is None  # None leaves of the data reach the step as None
        steps, batch_seen, limit_seen = state
        running = steps < limit
        size = tf.fill(tf.shape(steps), tf.size(steps))
        return steps + tf.cast(running, tf.int32), tf.where(running, size, batch_seen), limit

    big = tf.fill(tf.shape(limits), 1 << 30)  # the limit is unknown before the first step
    zeros = tf.zeros_like(limits)
    return iterate_while_running(
        step, (limits, None), (zeros, zeros, big), is_running=lambda state: state[0] < state[2], max_iter=max_iter
    )


def _expected_batch_sizes(limits, shrinking: bool):
    """Simulates the working batch: the size each example saw at its last step."""
    steps = np.zeros(len(limits), int)
    seen = np.zeros(len(limits), int)
    working = np.arange(len(limits))
    while (steps < limits).any():
        running_before = working[steps[working] < np.asarray(limits)[working]]
        seen[running_before] = len(working)
        steps[running_before] += 1
        running = working[steps[working] < np.asarray(limits)[working]]
        if shrinking and 2 * len(running) <= len(working) and len(working) > SMALLEST_SHRINKING_BATCH:
            working = running
    return seen


@pytest.mark.parametrize("run", RUNS)
def test_examples_leave_the_working_batch_as_they_finish(run):
    limits = tf.constant(LIMITS)
    steps, batch_seen, limit_seen = RUNS[run](lambda limits: _count_to_limits(limits, max_iter=100))(limits)
    np.testing.assert_array_equal(steps.numpy(), LIMITS)
    np.testing.assert_array_equal(limit_seen.numpy(), LIMITS)  # each example kept its own data
    expected = _expected_batch_sizes(LIMITS, shrinking=run != "xla")  # XLA needs static shapes: no shrinking
    np.testing.assert_array_equal(batch_seen.numpy(), expected)
    if run != "xla":
        assert expected.min() < len(LIMITS) / 2  # the batch did shrink


def test_iteration_limit_holds_for_the_whole_batch():
    steps, _, _ = tf.function(lambda limits: _count_to_limits(limits, max_iter=4))(tf.constant(LIMITS))
    np.testing.assert_array_equal(steps.numpy(), np.minimum(LIMITS, 4))


def test_small_static_batches_are_not_shrunk():
    limits = LIMITS[:SMALLEST_SHRINKING_BATCH]
    _, batch_seen, _ = tf.function(lambda limits: _count_to_limits(limits, max_iter=100))(tf.constant(limits))
    np.testing.assert_array_equal(batch_seen.numpy(), len(limits))


# -- the solvers: a batch gives each example what it gets alone -------------------


def _qp_batch():
    """24 QPs (active sets of 0 to 5 constraints, so they finish at different iterations), two infeasible."""
    rng = np.random.default_rng(3)
    parts = [kkt_constructed_qp(rng, 4, 6, 0, 8, active)[0] for active in range(6)]
    data = {name: np.concatenate([part[name] for part in parts]) for name in ("P", "q", "G", "h")}
    P, q, G, h = infeasible_batch()  # its example 2 is infeasible
    data["G"][[5, 17]] = np.vstack([G, np.zeros((2, 3))]) @ np.hstack([np.eye(3), np.zeros((3, 3))])
    data["h"][[5, 17]] = np.concatenate([h[2], [1.0, 1.0]])
    return data


def test_qp_batch_solves_each_example_as_alone():
    data = _qp_batch()
    x, _, _, status, info = qp_solve_with_info(data["P"], data["q"], G=data["G"], h=data["h"])
    names = [QP_STATUS_NAMES[int(code)] for code in status.numpy()]
    assert names.count("solved") == 22 and names[5] == names[17] == "infeasible (primal infeasible)"
    iterations = info["iterations"].numpy()
    assert iterations.min() < iterations.max()
    for i in range(len(names)):
        x_alone, _, _, status_alone, info_alone = qp_solve_with_info(*(data[name][i : i + 1] for name in ("P", "q")),
                                                                     G=data["G"][i : i + 1], h=data["h"][i : i + 1])
        assert int(status_alone[0]) == int(status[i])
        assert int(info_alone["iterations"][0]) == iterations[i]
        if names[i] == "solved":
            np.testing.assert_allclose(x.numpy()[i], x_alone.numpy()[0], atol=1e-12)


def _socp_examples_alone_match(A, b, c, cones, x, status, iterations):
    for i in range(len(status)):
        x_alone, _, _, status_alone, info_alone = socp_solve_with_info(A[i : i + 1], b[i : i + 1], c[i : i + 1], cones)
        assert int(status_alone[0]) == int(status[i])
        assert int(info_alone["iterations"][0]) == iterations[i]
        if status[i] == 0:
            np.testing.assert_allclose(x[i], x_alone.numpy()[0], atol=1e-12)


def test_socp_batch_solves_each_example_as_alone():
    """Ball projections of 12 points from near the center to far outside: they finish at different iterations."""
    rng = np.random.default_rng(4)
    points = rng.standard_normal((12, 3)) * np.geomspace(0.1, 10.0, 12)[:, None]
    A, b, c, cones = ball_projection_data(points)
    A, c = np.broadcast_to(A, (12, *A.shape)), np.broadcast_to(c, (12, *c.shape))
    x, _, _, status, info = tf.function(lambda b: socp_solve_with_info(A, b, c, cones))(tf.constant(b))
    np.testing.assert_array_equal(status.numpy(), 0)
    np.testing.assert_allclose(x.numpy()[:, 1:], ball_projection(points), atol=1e-10)
    iterations = info["iterations"].numpy()
    assert iterations.min() < iterations.max()
    _socp_examples_alone_match(A, b, c, cones, x.numpy(), status.numpy(), iterations)


def test_socp_statuses_stay_at_their_batch_indices():
    """`_status_batch`'s solvable, infeasible and unbounded examples, mixed in a batch of 12."""
    A, b, c, cones = _status_batch()
    kinds = np.array([0, 0, 1, 0, 2, 0, 0, 1, 0, 0, 2, 0])
    A, b, c = A[kinds], b[kinds].copy(), c[kinds]
    b[kinds == 0, 1] = np.linspace(2.5, 8.0, np.sum(kinds == 0))  # radii of the solvable examples
    x, _, _, status, info = socp_solve_with_info(A, b, c, cones)
    names = [SOCP_STATUS_NAMES[int(code)] for code in status.numpy()]
    expected = {0: "solved", 1: "infeasible (primal infeasible)", 2: "unbounded (dual infeasible)"}
    assert names == [expected[kind] for kind in kinds]
    np.testing.assert_allclose(x.numpy()[kinds == 0], np.tile([2.0, 0.0], (8, 1)), atol=1e-9)
    _socp_examples_alone_match(A, b, c, cones, x.numpy(), status.numpy(), info["iterations"].numpy())


# -- recompute_rows: a computation for some examples of a batch -------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("batch", [4, 12], ids=["small batch", "batch 12"])
def test_recompute_rows_replaces_only_the_masked_examples(run, batch):
    values = tf.constant(np.arange(2.0 * batch).reshape(batch, 2))
    current = (tf.fill([batch, 2], tf.constant(-1.0, tf.float64)), tf.fill([batch], -1))
    mask = np.arange(batch) % 2 == 1

    def compute(inputs):
        rows, nothing = inputs
        assert nothing is None  # None leaves reach the computation as None
        return 10.0 * rows, tf.fill(tf.shape(rows)[:1], tf.shape(rows)[0])  # the second: the batch it saw

    result, batch_seen = RUNS[run](lambda mask: recompute_rows(mask, compute, (values, None), current))(tf.constant(mask))
    expected = np.where(mask[:, None], 10.0 * values.numpy(), -1.0)
    np.testing.assert_array_equal(result.numpy(), expected)
    # Gathered (half the batch), except under XLA, whose static shapes make it compute the whole batch, and for a
    # batch known to be small (`is_small_batch`), where a gather costs more than it saves.
    whole = run == "xla" or batch <= SMALLEST_SHRINKING_BATCH
    np.testing.assert_array_equal(batch_seen.numpy(), np.where(mask, batch if whole else batch // 2, -1))


def test_recompute_rows_computes_nothing_for_an_empty_mask():
    calls = []

    def compute(inputs):
        calls.append(inputs)
        return inputs

    current = tf.zeros([3])
    result = recompute_rows(tf.zeros([3], tf.bool), compute, tf.ones([3]), current)
    np.testing.assert_array_equal(result.numpy(), 0.0)
    assert calls == []  # eagerly, the untaken branch never runs


# -- small batches: a static size down to the loop -------------------------------------


def _all_op_types(graph: tf.Graph) -> set[str]:
    """The op types of `graph` and of every function it calls (loop bodies, branches)."""
    graph_def = graph.as_graph_def()
    return {node.op for node in graph_def.node} | {
        node.op for function in graph_def.library.function for node in function.node_def}


SHRINK_OP = "TensorScatterUpdate"  # the shrinking loop writes its finished examples back with it


@pytest.mark.parametrize("family", ["QP", "SOCP"])
def test_a_small_batch_runs_the_plain_loop_in_a_graph_and_eagerly(family):
    """A layer's batch-1 call, in a `tf.function` or eagerly (even after a call on a large batch relaxed the
    eager trace's shapes), keeps its static batch size to the loop: no gathers and scatters of the
    shrinking batch, whose ops cost more than the iterations they save at that size."""
    layer, values, _ = layer_and_values(family)
    large = [tf.constant(np.repeat(v[None], 16, axis=0)) for v in values]  # the shrinking loop
    single = [tf.constant(v[None]) for v in values]
    for batch in (large, single):
        graph = tf.function(layer).get_concrete_function(*batch).graph
        assert (SHRINK_OP in _all_op_types(graph)) == (batch is large)
    expected = layer(*single)  # a fresh eager trace
    layer(*large)
    eager_result = layer(*single)
    compiled, = layer.batched_problem._functions.values()
    graphs = [concrete.graph for concrete in compiled._forward.concrete_functions()]
    assert [SHRINK_OP in _all_op_types(graph) for graph in graphs] == [False, True]
    for got, want in zip(eager_result, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-12)


def test_a_shared_first_parameter_does_not_make_every_batch_small():
    """Whether a batch is small is read off a batched parameter, not the first one: with a shared (3, 3) first
    parameter, calls at batches 16, 20 and 24 share the relaxed trace and none is traced for exact shapes."""
    layer, values, _ = layer_and_values("QP")  # Q_sqrt (3, 3) first, shared below
    forward = None
    for batch in (16, 20, 24):
        tensors = [tf.constant(values[0])] + [tf.constant(np.repeat(v[None], batch, axis=0)) for v in values[1:]]
        layer(*tensors)
        compiled, = layer.batched_problem._functions.values()
        forward = compiled._forward
    assert forward._exact_function.experimental_get_tracing_count() == 0
    assert forward._function.experimental_get_tracing_count() <= 2
