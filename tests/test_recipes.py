"""The recipes: their TFDS builders, their quick runs, their committed results.

Each recipe's `main([...])` runs in-process with temporary output, model and
data directories; nothing touches the network (the public data set path
runs on `tfds.testing.mock_data`).
"""

from __future__ import annotations

import pathlib

import cvxpy as cp
import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow_datasets as tfds
from helpers import cvxpy_solve_batch
from PIL import Image

from keras_optlayers.core.problems import ellipsoid_projection_problem, polytope_projection_problem
from recipes import activations, data_poisoning, ellipsoid, mpc, optnet, pipeline, stiffness, stochastic_control, topk
from recipes.datasets.ellipsoid_projections import EllipsoidProjections, hidden_ellipsoids
from recipes.datasets.mpc_expert_plans import EXPERT_STATE_WEIGHTS, FORCE_BOUND, HORIZON, MpcExpertPlans, dynamics
from recipes.datasets.multilabel_prototypes import MAX_LABELS, MIN_LABELS, MultilabelPrototypes
from recipes.datasets.optnet_solutions import OptnetSolutions, hidden_qp
from recipes.datasets.poisoning_points import PoisoningPoints
from recipes.datasets.polytope_projections import PolytopeProjections, hidden_polytope
from recipes.datasets.spring_equilibria import HIDDEN_STIFFNESS, LENGTH, WIDTH, SpringEquilibria

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILDERS = [PolytopeProjections, EllipsoidProjections, OptnetSolutions, MultilabelPrototypes, PoisoningPoints,
            MpcExpertPlans, SpringEquilibria]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
    """One TFDS data directory for the module: each builder is prepared once."""
    return tmp_path_factory.mktemp("tensorflow_datasets")


def assert_images(paths) -> None:
    """Each path is a non-empty image that PIL can read."""
    for path in paths:
        assert path.stat().st_size > 0, path
        with Image.open(path) as image:
            image.verify()


# -- builders -------------------------------------------------------------------


@pytest.mark.parametrize("builder_class", BUILDERS, ids=lambda c: c.__name__)
def test_builder_prepares_the_declared_splits_and_shapes(builder_class, data_dir):
    builder = pipeline.prepared(builder_class, data_dir)
    assert {name: split.num_examples for name, split in builder.info.splits.items()} == builder_class.SPLIT_SIZES
    for split in builder_class.SPLIT_SIZES:
        arrays = pipeline.arrays(builder, split)
        for name, shape in builder_class.FEATURE_SHAPES.items():
            assert arrays[name].shape == (builder_class.SPLIT_SIZES[split], *shape)
            assert np.all(np.isfinite(arrays[name]))
    # Seeded: a second computation gives the same arrays.
    first, second = (builder_class(data_dir=str(data_dir)).make_split("test", 16) for _ in range(2))
    for name in builder_class.FEATURE_SHAPES:
        np.testing.assert_array_equal(first[name], second[name])


def test_polytope_targets_are_projections(data_dir):
    examples = pipeline.arrays(pipeline.prepared(PolytopeProjections, data_dir), "test[:16]")
    G, h = hidden_polytope()
    spec = polytope_projection_problem(2, len(h))
    expected, = cvxpy_solve_batch(spec.problem, spec.parameters, [examples["x"], [G] * 16, [h] * 16], spec.variables)
    np.testing.assert_allclose(examples["y"], expected, atol=1e-6)  # float32 storage


def test_ellipsoid_targets_are_projections(data_dir):
    examples = pipeline.arrays(pipeline.prepared(EllipsoidProjections, data_dir), "test[:8]")
    spec = ellipsoid_projection_problem(2)
    for k, (A, z) in enumerate(zip(*hidden_ellipsoids(), strict=True)):
        expected, = cvxpy_solve_batch(spec.problem, spec.parameters, [examples["x"], [A] * 8, [z] * 8], spec.variables)
        np.testing.assert_allclose(examples["y"][:, k], expected, atol=1e-5)


def test_optnet_targets_solve_the_hidden_qp(data_dir):
    examples = pipeline.arrays(pipeline.prepared(OptnetSolutions, data_dir), "test[:16]")
    qp = hidden_qp()
    q, x = cp.Parameter(qp.P.shape[0]), cp.Variable(qp.P.shape[0])
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, qp.P) + q @ x), [qp.A @ x == qp.b, qp.G @ x <= qp.h])
    expected, = cvxpy_solve_batch(problem, [q], [examples["q"]], [x])
    np.testing.assert_allclose(examples["x"], expected, atol=1e-5)


def test_mpc_targets_are_the_expert_plans(data_dir):
    examples = pipeline.arrays(pipeline.prepared(MpcExpertPlans, data_dir), "test[:8]")
    A, B = dynamics()
    for x0, plan in zip(examples["x0"], examples["plan"], strict=True):
        u, x = cp.Variable(HORIZON), cp.Variable((HORIZON + 1, 2))
        constraints = [x[0] == x0, cp.abs(u) <= FORCE_BOUND]
        constraints += [x[t + 1] == A @ x[t] + B[:, 0] * u[t] for t in range(HORIZON)]
        cost = sum(EXPERT_STATE_WEIGHTS @ cp.square(x[t]) for t in range(1, HORIZON + 1)) + cp.sum_squares(u)
        cp.Problem(cp.Minimize(cost), constraints).solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10,
                                                         tol_feas=1e-10)
        np.testing.assert_allclose(plan, u.value, atol=1e-5)


def test_multilabel_examples_have_two_to_four_labels(data_dir):
    labels = pipeline.arrays(pipeline.prepared(MultilabelPrototypes, data_dir), "train")["labels"]
    assert set(np.unique(labels)) == {0.0, 1.0}
    counts = labels.sum(axis=1)
    assert counts.min() == MIN_LABELS and counts.max() == MAX_LABELS


# -- recipes ----------------------------------------------------------------------


@pytest.mark.slow
def test_activations_match_keras_and_the_fast_layers(tmp_path):
    largest_gap = activations.main(["--quick", "--output-dir", str(tmp_path)])
    assert largest_gap < 1e-3  # SCS's default tolerance bounds the CVXPY forms' accuracy
    assert_images(tmp_path / name for name in ("relu.png", "sigmoid.png", "softmax.png", "projections.png"))


@pytest.mark.slow
def test_ellipsoid_quick_run(tmp_path, data_dir):
    model_path = tmp_path / "ellipsoid.keras"
    final_loss = ellipsoid.main(["--quick", "--output-dir", str(tmp_path), "--model-path", str(model_path),
                                 "--data-dir", str(data_dir)])
    test = pipeline.evaluation_pipeline(pipeline.prepared(EllipsoidProjections, data_dir), ellipsoid.QUICK_RUN.test_split)
    assert final_loss < ellipsoid.make_model().evaluate(test, verbose=0)
    assert_images([tmp_path / "loss.png", tmp_path / "ellipsoids.gif", *sorted((tmp_path / "frames").glob("*.png"))])
    keras.models.load_model(model_path, safe_mode=True)


def test_committed_ellipsoid_model_fits_the_hidden_ellipsoids(data_dir):
    model = keras.models.load_model(REPO_ROOT / "saved_models" / "ellipsoid.keras", safe_mode=True)
    test = pipeline.evaluation_pipeline(pipeline.prepared(EllipsoidProjections, data_dir), "test[:64]")
    untrained_loss = ellipsoid.make_model().evaluate(test, verbose=0)
    assert model.evaluate(test, verbose=0) < untrained_loss / 1000


@pytest.mark.slow
def test_optnet_quick_run(tmp_path, data_dir):
    model_path = tmp_path / "optnet.keras"
    final_loss = optnet.main(["--quick", "--output-dir", str(tmp_path), "--model-path", str(model_path),
                              "--data-dir", str(data_dir)])
    test = pipeline.evaluation_pipeline(pipeline.prepared(OptnetSolutions, data_dir), optnet.QUICK_RUN.test_split)
    assert final_loss < optnet.make_model().evaluate(test, verbose=0)
    assert_images([tmp_path / "loss.png", tmp_path / "feasible_set.gif", *sorted((tmp_path / "frames").glob("*.png"))])
    keras.models.load_model(model_path, safe_mode=True)


def test_committed_optnet_model_solves_like_the_hidden_qp(data_dir):
    model = keras.models.load_model(REPO_ROOT / "saved_models" / "optnet.keras", safe_mode=True)
    test = pipeline.evaluation_pipeline(pipeline.prepared(OptnetSolutions, data_dir), "test")
    untrained_loss = optnet.make_model().evaluate(test, verbose=0)
    assert model.evaluate(test, verbose=0) < untrained_loss / 1000
    assert optnet.plane_angle_degrees(model, optnet.HiddenPlane()) < 1.0


def test_topk_falls_back_to_the_built_in_set(tmp_path, data_dir, capsys):
    model_path = tmp_path / "topk.keras"
    recalls = topk.main(["--quick", "--dataset", "mnist", "--output-dir", str(tmp_path),
                         "--model-path", str(model_path), "--data-dir", str(data_dir)])
    printed = capsys.readouterr().out
    assert printed.count("using the built-in multilabel_prototypes set instead") == 1
    assert "training the lml model on multilabel_prototypes" in printed
    chance = topk.DEFAULT_K / 20  # the recall of random scores: k of 20 labels
    assert recalls["lml"] > chance and recalls["sigmoid"] > chance
    assert_images([tmp_path / "recall.png"])
    loaded = keras.models.load_model(model_path, safe_mode=True)
    assert isinstance(loaded.get_layer("lml"), keras.layers.Layer)


def test_topk_uses_a_prepared_public_image_set(tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        recalls = topk.main(["--quick", "--dataset", "mnist", "--k", "3", "--output-dir", str(tmp_path),
                             "--model-path", str(tmp_path / "topk.keras"), "--data-dir", str(tmp_path / "data")])
    assert set(recalls) == {"lml", "sigmoid"}
    assert all(0.0 <= recall <= 1.0 for recall in recalls.values())
    model = keras.models.load_model(tmp_path / "topk.keras", safe_mode=True)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    probabilities = model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 3.0, rtol=1e-4)  # LML: k = 3 labels' worth


def test_committed_topk_model_beats_chance(data_dir):
    model = keras.models.load_model(REPO_ROOT / "saved_models" / "topk.keras", safe_mode=True)
    test = pipeline.evaluation_pipeline(pipeline.prepared(MultilabelPrototypes, data_dir), "test")
    recall = model.evaluate(test, verbose=0, return_dict=True)["top_k_recall"]
    untrained = topk.make_model((32,), 20, topk.DEFAULT_K, "lml")
    untrained_recall = untrained.evaluate(test, verbose=0, return_dict=True)["top_k_recall"]
    assert recall > 0.9 > untrained_recall + 0.3


def logistic_fit_test_loss(x_train, labels, x_test, y_test) -> tuple[np.ndarray, float, float]:
    """The recipe's regularized logistic regression solved by CVXPY (Clarabel, tight): θ, b, test loss."""
    theta, bias = cp.Variable(2), cp.Variable()
    margins = cp.multiply(labels, x_train @ theta + bias)
    objective = cp.sum(cp.logistic(-margins)) / len(labels) + data_poisoning.RIDGE * cp.sum_squares(theta)
    cp.Problem(cp.Minimize(objective)).solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    test_loss = float(np.mean(np.logaddexp(0.0, -y_test * (x_test @ theta.value + bias.value))))
    return theta.value, float(bias.value), test_loss


def test_data_poisoning_quick_run(tmp_path, data_dir):
    model_path = tmp_path / "data_poisoning.npz"
    results = data_poisoning.main(["--quick", "--output-dir", str(tmp_path), "--model-path", str(model_path),
                                   "--data-dir", str(data_dir)])
    before, after = results["test loss"]
    assert after > before  # every step climbs the test loss
    # The paper's one-step attack raises the test loss by about its first-order prediction.
    predicted, measured = results["paper's step"]
    assert predicted > 0 and abs(measured - predicted) < 0.1 * predicted
    assert_images([tmp_path / "gradients.png", tmp_path / "attack.gif", tmp_path / "test_loss.png"])
    with np.load(model_path) as saved:
        assert saved["x_poisoned"].shape == saved["x_clean"].shape


def test_committed_poisoned_points_raise_the_test_loss(data_dir):
    test = pipeline.arrays(pipeline.prepared(PoisoningPoints, data_dir), "test")
    with np.load(REPO_ROOT / "saved_models" / "data_poisoning.npz") as saved:
        saved = dict(saved)
    moves = np.linalg.norm(saved["x_poisoned"] - saved["x_clean"], axis=1)
    assert moves.max() <= saved["radius"] + 1e-9
    theta_clean, bias_clean, clean_loss = logistic_fit_test_loss(saved["x_clean"], saved["labels"], test["x"], test["label"])
    np.testing.assert_allclose(saved["theta_clean"], theta_clean, atol=1e-3)  # the layer's SCS fit
    *_, poisoned_loss = logistic_fit_test_loss(saved["x_poisoned"], saved["labels"], test["x"], test["label"])
    assert poisoned_loss > 1.5 * clean_loss


@pytest.mark.slow
def test_stochastic_control_quick_run(tmp_path):
    model_path = tmp_path / "stochastic_control.keras"
    costs = stochastic_control.main(["--quick", "--output-dir", str(tmp_path), "--model-path", str(model_path)])
    assert costs["training"][1] < costs["training"][0]
    assert_images([tmp_path / "cost.png"])
    keras.models.load_model(model_path, safe_mode=True)


def test_lqr_initialized_policy_is_lqr_where_the_input_bound_does_not_bind():
    A, B = stochastic_control.system()
    P = scipy.linalg.solve_discrete_are(A, B, np.eye(len(A)), np.eye(B.shape[1]))
    gain = np.linalg.solve(np.eye(B.shape[1]) + B.T @ P @ B, B.T @ P @ A)
    states = 1e-3 * np.random.default_rng(0).standard_normal((4, stochastic_control.NUM_STATES))
    controls = stochastic_control.make_policy().predict(states, verbose=0)
    assert np.all(np.linalg.norm(controls, axis=1) < stochastic_control.INPUT_BOUND)
    np.testing.assert_allclose(controls, -states @ gain.T, atol=1e-7)


def test_committed_policy_solves_its_cone_program_and_beats_lqr_by_the_papers_margin():
    model = keras.models.load_model(REPO_ROOT / "saved_models" / "stochastic_control.keras", safe_mode=True)
    states = 3.0 * np.random.default_rng(0).standard_normal((6, stochastic_control.NUM_STATES))
    controls = model.predict(states, verbose=0)
    policy = model.get_layer("adp_policy")
    P_sqrt, P_21, q = (np.asarray(weight) for weight in (policy.P_sqrt, policy.P_21, policy.q))
    for state, control in zip(states, controls, strict=True):
        u = cp.Variable(stochastic_control.NUM_INPUTS)
        cp.Problem(cp.Minimize(0.5 * cp.sum_squares(P_sqrt @ u) + state @ P_21 @ u + q @ u),
                   [cp.norm(u, 2) <= stochastic_control.INPUT_BOUND]).solve(
            solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        np.testing.assert_allclose(control, u.value, atol=1e-5)
    size = stochastic_control.FULL_RUN
    held_out = stochastic_control.disturbances(stochastic_control.EVALUATION_SEED, size.evaluation_trajectories,
                                               size.horizon)
    learned = float(stochastic_control.average_cost(model, held_out))
    lqr_initialized = float(stochastic_control.average_cost(stochastic_control.make_policy(), held_out))
    # The paper (Agrawal et al. 2019, Figure 2): the average cost falls by roughly 40%.
    assert learned < 0.7 * lqr_initialized


@pytest.mark.slow
@pytest.mark.parametrize("recipe, builder_class, picture", [(mpc, MpcExpertPlans, "trajectories.png"),
                                                             (stiffness, SpringEquilibria, "blocks.png")],
                         ids=["mpc", "stiffness"])
def test_fitted_recipe_quick_run(tmp_path, data_dir, recipe, builder_class, picture):
    model_path = tmp_path / "model.keras"
    final_loss = recipe.main(["--quick", "--output-dir", str(tmp_path), "--model-path", str(model_path),
                              "--data-dir", str(data_dir)])
    test = pipeline.evaluation_pipeline(pipeline.prepared(builder_class, data_dir), recipe.QUICK_RUN.test_split)
    assert final_loss < recipe.make_model().evaluate(test, verbose=0)
    assert_images([tmp_path / "loss.png", tmp_path / picture])
    keras.models.load_model(model_path, safe_mode=True)


def test_committed_mpc_model_has_the_experts_weights(data_dir):
    model = keras.models.load_model(REPO_ROOT / "saved_models" / "mpc.keras", safe_mode=True)
    np.testing.assert_allclose(model.get_layer("planner").state_weights(), EXPERT_STATE_WEIGHTS, rtol=1e-2)
    test = pipeline.evaluation_pipeline(pipeline.prepared(MpcExpertPlans, data_dir), "test")
    assert model.evaluate(test, verbose=0) < mpc.make_model().evaluate(test, verbose=0) / 1000


def test_spring_targets_are_the_resting_positions(data_dir):
    examples = pipeline.arrays(pipeline.prepared(SpringEquilibria, data_dir), "test[:8]")
    p = cp.Variable(7)
    touching = 0
    for forces, positions in zip(examples["forces"], examples["positions"]):
        energy = sum(0.5 * k * cp.square(p[i + 1] - p[i]) for i, k in enumerate(HIDDEN_STIFFNESS))
        problem = cp.Problem(cp.Minimize(energy - forces.astype(float) @ p[1:-1]),
                             [p[0] == 0, p[-1] == LENGTH, cp.diff(p) >= WIDTH])
        problem.solve(solver=cp.CLARABEL)
        np.testing.assert_allclose(positions, p.value[1:-1], atol=1e-5)  # float32 storage
        touching += int(np.any(np.diff(p.value) < WIDTH + 1e-6))
    assert 0 < touching < 8  # some loads press blocks together, some do not


def test_committed_stiffness_model_has_the_hidden_constants(data_dir):
    model = keras.models.load_model(REPO_ROOT / "saved_models" / "stiffness.keras", safe_mode=True)
    np.testing.assert_allclose(model.get_layer("chain").stiffness(), HIDDEN_STIFFNESS, rtol=1e-2)
    test = pipeline.evaluation_pipeline(pipeline.prepared(SpringEquilibria, data_dir), "test")
    assert model.evaluate(test, verbose=0) < stiffness.make_model().evaluate(test, verbose=0) / 1000
