"""Models holding learnable layers save to .keras and load back, safely."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import between_dense_layers

from keras_optlayers.layers.polytope_projection import PolytopeProjection

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# Loads each model in a fresh process that imports only the package (and,
# until the package's __init__ imports them, the layer modules) and keras.
LOAD_AND_PREDICT = textwrap.dedent("""
    import sys
    import keras
    import numpy as np
    import keras_optlayers
    import keras_optlayers.layers.ellipsoid_projection
    import keras_optlayers.layers.optnet_qp
    import keras_optlayers.layers.polytope_projection

    folder = sys.argv[1]
    x = np.load(f"{folder}/x.npy")
    for name in sys.argv[2:]:
        model = keras.models.load_model(f"{folder}/{name}.keras", safe_mode=True)
        np.save(f"{folder}/{name}_loaded.npy", np.asarray(model.predict(x, verbose=0)))
""")


def test_saved_models_predict_the_same_in_a_fresh_process(learnable_layers, default_solver, tmp_path):
    # The loaded weights must be the saved ones: a fresh initialization differs.
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    predictions = {}
    for name, make_layer in learnable_layers.items():
        keras.utils.set_random_seed(0)
        model = between_dense_layers(make_layer(solver=default_solver), units=2)
        predictions[name] = np.asarray(model.predict(x, verbose=0))
        model.save(tmp_path / f"{name}.keras")

    subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(tmp_path), *predictions],
        check=True, cwd=REPO_ROOT, timeout=120,
    )
    for name, expected in predictions.items():
        np.testing.assert_allclose(np.load(tmp_path / f"{name}_loaded.npy"), expected, atol=1e-6, err_msg=name)


def test_config_is_plain_json_and_round_trips(make_learnable_layer):
    layer = make_learnable_layer(solver="SCS", solver_args={"eps_abs": 1e-6})
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    assert type(layer).from_config(config).get_config() == config


def test_config_naming_an_unknown_layer_fails_clearly():
    config = keras.saving.serialize_keras_object(PolytopeProjection(3))
    config["registered_name"] = "keras_optlayers>PolytopeProjector"
    config["class_name"] = "PolytopeProjector"
    with pytest.raises(TypeError, match="PolytopeProjector"):
        keras.saving.deserialize_keras_object(config, safe_mode=True)


def test_config_with_an_unknown_argument_fails_clearly():
    config = PolytopeProjection(3).get_config()
    with pytest.raises(TypeError, match="Unrecognized keyword arguments.*num_faces"):
        PolytopeProjection.from_config({**config, "num_faces": 3})
    with pytest.raises(TypeError, match="Received: solver='GUROBI'"):
        PolytopeProjection.from_config({**config, "solver": "GUROBI"})
