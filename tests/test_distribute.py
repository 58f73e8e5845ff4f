"""Scale-out: data-parallel training with tf.distribute matches one device.

Two small models, one per solver path: a Dense layer followed by
`PolytopeProjection` (the native QP solver, TF ops on each replica's device)
or by `EllipsoidProjection` (the diffcp host path, a host callback on each
replica). Whatever the strategy, a step sums the replicas' gradients of the
loss over the global batch, so N steps of data-parallel training must give the
weights of N steps on the whole batch on one device, up to the order of
floating-point sums (and the solver's tolerance, tight here).

- `MirroredStrategy` over two logical CPU devices in one process, through
  `model.fit` (the devices are configured before TensorFlow starts, hence a
  subprocess).
- `MultiWorkerMirroredStrategy` over two worker processes on localhost (a
  TF_CONFIG each), each reading its own shard of every global batch, through
  a custom training loop: in Keras 3.15, `model.fit` under this strategy
  fails before the first step (its symbolic build reduces a PerReplica batch
  that it cannot convert), whatever the layers.

This file is also the workers' script: `python test_distribute.py ROLE OUT`.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 8
NUM_EXAMPLES = 16  # two global batches
EPOCHS = 2  # four steps in all
LEARNING_RATE = 0.1
KINDS = ("polytope", "ellipsoid")
# An interior point to 1e-9: the host path's answer then depends on its input
# continuously enough for the comparison (SCS's default tolerance lets a
# last-digit change in the input move the solution by ~1e-5).
TIGHT_CLARABEL = {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9}
TOLERANCE = 1e-6
WORKER_TIMEOUT_S = 180


def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((NUM_EXAMPLES, 3)), 0.5 * rng.standard_normal((NUM_EXAMPLES, 3))


def make_model(kind: str) -> keras.Model:
    """A float64 model with seeded initial weights (no global seed is set)."""
    # Imported here, after a worker has configured its logical devices, which
    # must happen before anything starts TensorFlow's runtime.
    from keras_optlayers import EllipsoidProjection, PolytopeProjection

    if kind == "polytope":
        projection = PolytopeProjection(4, G_initializer=keras.initializers.GlorotUniform(seed=2), dtype="float64")
    else:
        projection = EllipsoidProjection(solver="Clarabel", solver_args=TIGHT_CLARABEL, dtype="float64")
    return keras.Sequential([
        keras.Input((3,), dtype="float64"),
        keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=1), dtype="float64"),
        projection,
    ])


def fit(kind: str) -> list[np.ndarray]:
    """`model.fit` in the current strategy's scope; returns the trained weights."""
    x, y = training_data()
    with tf.distribute.get_strategy().scope():
        model = make_model(kind)
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return model.get_weights()


def train_in_loop(kind: str, strategy: tf.distribute.Strategy) -> list[np.ndarray]:
    """A custom loop: each input pipeline reads its shard of every global batch.

    Pipeline i of n takes examples i, i + n, ...; batched per replica, step k
    of all pipelines together covers examples [8k, 8k + 8): the same global
    batches as one device reading the data in order.
    """
    x, y = training_data()

    def dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        shard = tf.data.Dataset.from_tensor_slices((x, y)).shard(
            context.num_input_pipelines, context.input_pipeline_id)
        return shard.batch(context.get_per_replica_batch_size(GLOBAL_BATCH)).repeat(EPOCHS)

    with strategy.scope():
        model = make_model(kind)
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
        optimizer.build(model.trainable_variables)

    def replica_step(inputs, targets):
        with tf.GradientTape() as tape:
            per_example = tf.reduce_mean(tf.square(model(inputs, training=True) - targets), axis=-1)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # sums over replicas
        return loss

    @tf.function
    def step(batch):
        strategy.run(replica_step, args=batch)

    steps = EPOCHS * NUM_EXAMPLES // GLOBAL_BATCH
    iterator = iter(strategy.distribute_datasets_from_function(dataset))
    for _ in range(steps):
        step(next(iterator))
    return model.get_weights()


def assert_same_weights(actual: list[np.ndarray], expected: list[np.ndarray], kind: str, what: str) -> None:
    assert len(actual) == len(expected), what
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=TOLERANCE, atol=TOLERANCE, err_msg=f"{kind}: {what}")
    # The comparison means something only if training moved the weights.
    untrained = make_model(kind)
    untrained(training_data()[0][:1])  # builds the projection's weights
    moved = max(float(np.max(np.abs(a - w))) for a, w in zip(actual, untrained.get_weights()))
    assert moved > 1e-3, f"{kind}: {what}: training left the weights where they were"


# -- subprocesses ------------------------------------------------------------


def _worker_env(**extra: str) -> dict[str, str]:
    """The test's environment, with the repository importable, TF quiet, localhost unproxied."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    # gRPC, which carries the workers' all-reduce, honours proxy variables.
    no_proxy = ",".join(p for p in (env.get("no_proxy", ""), "localhost", "127.0.0.1") if p)
    return {**env, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", "no_proxy": no_proxy, **extra}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_workers(commands: list[list[str]], envs: list[dict[str, str]]) -> None:
    """Starts all workers, waits for all; kills every one left on any failure."""
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for command, env in zip(commands, envs)
    ]
    try:
        for index, process in enumerate(processes):
            try:
                output, _ = process.communicate(timeout=WORKER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {index} ran past {WORKER_TIMEOUT_S} s")
            assert process.returncode == 0, f"worker {index} failed:\n{output[-4000:]}"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _load(path: pathlib.Path) -> dict[str, list[np.ndarray]]:
    with np.load(path) as arrays:
        return {kind: [arrays[f"{kind}_{i}"] for i in range(sum(k.startswith(kind) for k in arrays))]
                for kind in KINDS}


# -- tests ---------------------------------------------------------------------


@pytest.mark.slow
def test_mirrored_strategy_on_two_devices_matches_one_device(tmp_path):
    out = tmp_path / "mirrored.npz"
    _run_workers([[sys.executable, __file__, "mirrored", str(out)]], [_worker_env()])
    mirrored = _load(out)
    for kind in KINDS:
        assert_same_weights(mirrored[kind], fit(kind), kind, "MirroredStrategy vs one device")


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_matches_one_worker(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    outs = [tmp_path / f"worker{index}.npz" for index in range(2)]
    _run_workers(
        [[sys.executable, __file__, "multi_worker", str(out)] for out in outs],
        [_worker_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
         for index in range(2)],
    )
    workers = [_load(out) for out in outs]
    for kind in KINDS:
        expected = train_in_loop(kind, tf.distribute.get_strategy())
        for index, worker in enumerate(workers):
            assert_same_weights(worker[kind], expected, kind, f"worker {index} of 2 vs one worker")


# -- the workers' entry point -------------------------------------------------


def _worker_main(role: str, out: str) -> None:
    if role == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            weights = {kind: fit(kind) for kind in KINDS}
    elif role == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        assert strategy.num_replicas_in_sync == 2
        weights = {kind: train_in_loop(kind, strategy) for kind in KINDS}
    else:
        raise ValueError(f"Expected role 'mirrored' or 'multi_worker'. Received: role={role!r}")
    np.savez(out, **{f"{kind}_{i}": w for kind, ws in weights.items() for i, w in enumerate(ws)})


if __name__ == "__main__":
    _worker_main(*sys.argv[1:])
