"""The solver registry: one place that names solvers and checks and translates settings."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf

from keras_optlayers import CvxpyLayer, PolytopeProjection
from keras_optlayers.core.problems import sparsemax_problem
from keras_optlayers.solvers import registry


def sparsemax_layer(**kwargs):
    spec = sparsemax_problem(4)
    return CvxpyLayer(spec.problem, spec.parameters, spec.variables, **kwargs)


X = tf.constant([[1.5409961, -0.2934289, -2.1787894, 0.56843126]], tf.float64)
EXACT = [[0.98628242, 0.0, 0.0, 0.01371758]]  # tau = (1.5409961 + 0.56843126 - 1) / 2


@pytest.mark.parametrize("where", ["construction", "call"])
def test_cvxpylayers_settings_work_with_automatic_dispatch(where):
    """cvxpylayers' tests pass {"eps": ...} to QP-shaped problems; it is an accuracy target."""
    settings = {"eps": 1e-10, "max_iters": 10_000}
    layer = sparsemax_layer(solver_args=settings) if where == "construction" else sparsemax_layer()
    assert layer.solver == "QP"
    y, = layer(X) if where == "construction" else layer(X, solver_args=settings)
    np.testing.assert_allclose(y, EXACT, atol=1e-7)


def test_a_solver_specific_setting_selects_its_solver():
    assert sparsemax_layer(solver_args={"acceleration_lookback": 0}).solver == "SCS"
    assert sparsemax_layer(solver_args={"tol_ktratio": 1e-7}).solver == "Clarabel"
    assert sparsemax_layer(solver_args={"solve_method": "ECOS"}).solver == "ECOS"


def test_accuracy_targets_are_translated_between_solvers():
    assert registry.translate_settings(registry.CLARABEL, {"eps": 1e-9}) == {
        "tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9}
    assert registry.translate_settings(registry.QP, {"eps_abs": 1e-9, "max_iters": 50}) == {
        "tol": 1e-9, "max_iter": 50}
    assert registry.translate_settings(registry.SCS, {"tol": 1e-7}) == {"eps_abs": 1e-7, "eps_rel": 1e-7}


@pytest.mark.parametrize(
    "solver_args, message",
    [
        ({"epsilon": 1e-8}, r"Unknown solver setting `epsilon`.*'SCS': \["),
        ({"mode": "exact"}, r"`mode` must be one of \['auto', 'dense', 'lsqr'\]"),
        ({"eps": -1.0}, r"`eps` must be a positive finite number"),
        ({"max_iters": 2.5}, r"`max_iters` must be a positive integer"),
        ([1, 2], r"`solver_args` must be a dict"),
        ({"acceleration_lookback": 0, "tol_ktratio": 1e-7}, r"belong to different solvers"),
    ],
)
def test_bad_settings_fail_at_construction(solver_args, message):
    with pytest.raises(ValueError, match=message):
        sparsemax_layer(solver_args=solver_args)
    with pytest.raises(ValueError, match=message):
        PolytopeProjection(3, solver_args=solver_args)


def test_a_setting_the_chosen_solver_does_not_take_says_which_solver_does():
    with pytest.raises(ValueError, match=r"'QP' does not take the setting `acceleration_lookback`.*\['SCS'\]"):
        sparsemax_layer(solver="QP", solver_args={"acceleration_lookback": 0})
    layer = sparsemax_layer()
    with pytest.raises(ValueError, match="does not take the setting `normalize`"):
        layer(X, solver_args={"normalize": False})


def test_unknown_solver_lists_the_registry():
    with pytest.raises(ValueError, match=r"one of \['QP', 'SOCP', 'SCS', 'ECOS', 'Clarabel'\]. Received: solver='OSQP'"):
        sparsemax_layer(solver="OSQP")


def test_every_entry_declares_where_it_runs_and_how_it_differentiates():
    for entry in registry.SOLVERS.values():
        assert entry.program in ("qp", "cone")
        assert entry.differentiation
        assert entry.runs_in_xla == entry.exportable
        assert set(entry.accuracy_settings) <= set(entry.settings)
        assert entry.iteration_setting in entry.settings


def test_changing_settings_at_every_call_keeps_a_bounded_number_of_compiled_functions():
    layer = sparsemax_layer()
    for i in range(12):
        layer(X, solver_args={"tol": 1e-8 * (1 + i)})
    assert len(layer.batched_problem._functions) <= 8


@pytest.mark.parametrize("solver", ["QP", "SOCP"])
def test_changing_settings_at_every_call_does_not_grow_memory(solver):
    """Reported: about 9 MiB per distinct setting, 1.9 GB after 200 calls;
    bounding the cache of compiled functions did not free them (11 MiB per
    setting remained: TensorFlow keeps a traced graph's gradient
    registrations). The settings are now tensor arguments: nothing is traced
    again."""
    from helpers import resident_memory_kib

    if solver == "QP":
        layer = sparsemax_layer()
        inputs = X
    else:
        z, w = cp.Parameter(3), cp.Variable(3)
        layer = CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(z - w)), [cp.norm(w) <= 1]), [z], [w],
                           solver="SOCP")
        inputs = tf.constant([[2.0, -1.0, 0.5]], tf.float64)
    for i in range(3):  # warm up
        layer(inputs, solver_args={"tol": 1e-9 * (1 + i)})
    before = resident_memory_kib()
    for i in range(30):
        layer(inputs, solver_args={"tol": 1e-8 * (1 + i), "max_iter": 40 + i})
    growth_mib = (resident_memory_kib() - before) / 1024
    assert growth_mib < 30, f"resident memory grew by {growth_mib:.0f} MiB over 30 settings"


def test_soc_dual_variables_are_returned():
    """cp.SOC(t, x) has two dual variables; cvxpylayers 1.x returns them."""
    p = cp.Parameter(3)
    x, t = cp.Variable(3), cp.Variable()
    soc = cp.SOC(t, x)
    problem = cp.Problem(cp.Minimize(t), [soc, x == p])
    layer = CvxpyLayer(problem, [p], [t, soc.dual_variables[0], soc.dual_variables[1]],
                       solver="Clarabel", solver_args={"eps": 1e-10})
    value = np.array([3.0, 0.0, 4.0])
    t_value, dual_t, dual_x = layer(tf.constant(value))
    p.value = value
    problem.solve(solver=cp.CLARABEL)
    np.testing.assert_allclose(t_value, 5.0, atol=1e-7)
    np.testing.assert_allclose(np.ravel(dual_t), np.ravel(soc.dual_variables[0].value), atol=1e-6)
    np.testing.assert_allclose(np.ravel(dual_x), np.ravel(soc.dual_variables[1].value), atol=1e-6)
