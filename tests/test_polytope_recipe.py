"""The polytope recipe runs end to end, and its committed model projects correctly."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import keras
import numpy as np
from helpers import cvxpy_solve_batch
from PIL import Image

from keras_optlayers import SolverError, solver_errors
from keras_optlayers.core.problems.polytope import polytope_projection_problem
from keras_optlayers import PolytopeProjection

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SAVED_MODEL = REPO_ROOT / "saved_models" / "polytope.keras"


def test_quick_run_writes_its_outputs(tmp_path, default_solver):
    model_path = tmp_path / "polytope.keras"
    command = [sys.executable, "-m", "recipes.polytope", "--quick",
               "--output-dir", str(tmp_path), "--model-path", str(model_path), "--data-dir", str(tmp_path / "data")]
    if default_solver is not None:
        command += ["--solver", default_solver]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final test loss (MSE):" in result.stdout

    frames = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(frames) == 4  # before training and after each of 3 epochs
    assert (tmp_path / "loss.png").stat().st_size > 0
    with Image.open(tmp_path / "polytope.gif") as animation:
        assert animation.n_frames == len(frames)
    assert isinstance(keras.models.load_model(model_path).get_layer("polytope"), PolytopeProjection)


def test_committed_model_projects_onto_its_learned_polytope():
    model = keras.models.load_model(SAVED_MODEL, safe_mode=True)
    layer = model.get_layer("polytope")
    G, h = (np.asarray(t, dtype=np.float64) for t in layer.polytope())
    x = np.random.default_rng(0).standard_normal((32, 2)).astype("float32")
    y = np.asarray(model.predict(x, verbose=0))
    tolerance = 1e-3  # the model's own solver settings (SCS defaults: 1e-4 residuals)
    assert np.all(y @ G.T <= h + tolerance)
    # Projecting points already on the boundary is degenerate (active
    # constraints with zero multipliers): the QP solver may report
    # "inaccurate" there rather than vouch for its answer (README, "Limits").
    try:
        with solver_errors():
            again = model.predict(y, verbose=0)
    except SolverError as error:
        assert "inaccurate" in error.statuses
    else:
        np.testing.assert_allclose(again, y, atol=tolerance)
    spec = polytope_projection_problem(2, len(h))
    expected, = cvxpy_solve_batch(spec.problem, spec.parameters, [x, [G] * 32, [h] * 32], spec.variables)
    np.testing.assert_allclose(y, expected, atol=tolerance)
