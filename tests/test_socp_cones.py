"""The cone algebra of the native SOCP solver against a block-by-block numpy reference.

The layout mixes nonneg rows with SOC blocks of several sizes, not grouped by
size (runs of one and two blocks), and a size-1 block (a cone with no tail).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_optlayers.solvers.socp.cones import ConeLayout, NesterovToddScaling

LAYOUT = ConeLayout(zero=0, nonneg=2, soc=(3, 5, 5, 3, 1))


def _blocks(layout: ConeLayout, vector: np.ndarray) -> list[np.ndarray]:
    """The SOC blocks of one example's conic rows."""
    starts = layout.nonneg + np.concatenate([[0], np.cumsum(layout.soc)[:-1]]).astype(int)
    return [vector[start : start + size] for start, size in zip(starts, layout.soc)]


def _interior_point(rng, layout: ConeLayout, batch: int) -> np.ndarray:
    """Random points of K's interior, (batch, conic rows)."""
    points = []
    for _ in range(batch):
        parts = [rng.uniform(0.5, 2.0, layout.nonneg)]
        for size in layout.soc:
            tail = rng.standard_normal(size - 1)
            parts.append(np.concatenate([[np.linalg.norm(tail) + rng.uniform(0.1, 1.0)], tail]))
        points.append(np.concatenate(parts))
    return np.array(points)


def _arrow(block: np.ndarray) -> np.ndarray:
    matrix = block[0] * np.eye(len(block))
    matrix[0, 1:] = matrix[1:, 0] = block[1:]
    return matrix


def _reference_product(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    linear = u[: LAYOUT.nonneg] * v[: LAYOUT.nonneg]
    return np.concatenate([linear] + [_arrow(a) @ b for a, b in zip(_blocks(LAYOUT, u), _blocks(LAYOUT, v))])


def _reference_projection(u: np.ndarray) -> np.ndarray:
    parts = [np.maximum(u[: LAYOUT.nonneg], 0.0)]
    for block in _blocks(LAYOUT, u):
        head, tail_norm = block[0], np.linalg.norm(block[1:])
        if tail_norm <= head:
            parts.append(block)
        elif tail_norm <= -head:
            parts.append(np.zeros_like(block))
        else:
            factor = 0.5 * (head + tail_norm)
            parts.append(np.concatenate([[factor], factor * block[1:] / tail_norm]))
    return np.concatenate(parts)


def _min_eigenvalue(u: np.ndarray) -> float:
    values = list(u[: LAYOUT.nonneg]) + [block[0] - np.linalg.norm(block[1:]) for block in _blocks(LAYOUT, u)]
    return min(values)


def test_runs_and_grouping_by_size():
    assert LAYOUT.runs == ((1, 3), (2, 5), (1, 3), (1, 1))
    grouped, order = LAYOUT.grouped_by_size()
    assert grouped == ConeLayout(0, 2, (1, 3, 3, 5, 5))
    assert grouped.runs == ((1, 1), (2, 3), (2, 5))
    # Nonneg rows first, then the blocks' rows, each block whole and in its new place.
    np.testing.assert_array_equal(order, [0, 1, 18, 2, 3, 4, 15, 16, 17, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14])
    assert grouped.grouped_by_size() == (grouped, None)


def test_jordan_algebra_matches_the_blockwise_reference(run):
    rng = np.random.default_rng(0)
    u = _interior_point(rng, LAYOUT, 3)
    v = rng.standard_normal(u.shape)
    outputs = run(
        lambda u, v: [
            LAYOUT.product(u, v),
            LAYOUT.inverse_product(u, v),
            LAYOUT.min_eigenvalue(v),
            LAYOUT.project(v),
            LAYOUT.max_step(u, v),
            LAYOUT.identity(v),
            LAYOUT.arrow(u),
            LAYOUT.block_max(tf.abs(v)),
        ],
        tf.constant(u),
        tf.constant(v),
    )
    product, inverse_product, min_eigenvalue, projection, step, identity, arrow, block_max = [o.numpy() for o in outputs]
    for i in range(len(u)):
        np.testing.assert_allclose(product[i], _reference_product(u[i], v[i]), atol=1e-12)
        np.testing.assert_allclose(_reference_product(u[i], inverse_product[i]), v[i], atol=1e-10)
        np.testing.assert_allclose(min_eigenvalue[i], _min_eigenvalue(v[i]), atol=1e-12)
        np.testing.assert_allclose(projection[i], _reference_projection(v[i]), atol=1e-12)
        # The step lands on K's boundary: the least eigenvalue there is zero.
        assert abs(_min_eigenvalue(u[i] + step[i] * v[i])) < 1e-9
        np.testing.assert_allclose(identity[i], _reference_product(identity[i], identity[i]), atol=0)
        np.testing.assert_allclose(arrow[i] @ v[i], _reference_product(u[i], v[i]), atol=1e-12)
        expected_max = np.concatenate([np.abs(v[i, : LAYOUT.nonneg])] + [np.full(len(b), np.abs(b).max()) for b in _blocks(LAYOUT, v[i])])
        np.testing.assert_allclose(block_max[i], expected_max, atol=0)


def test_max_step_is_capped_for_directions_into_the_cone():
    u = _interior_point(np.random.default_rng(1), LAYOUT, 2)
    assert np.all(LAYOUT.max_step(tf.constant(u), tf.constant(u)).numpy() == 1e30)


@pytest.mark.parametrize("columns", [None, 4], ids=["vector", "matrix"])
def test_nesterov_todd_scaling_is_symmetric_and_maps_z_to_inverse_scaled_s(run, columns):
    rng = np.random.default_rng(2)
    s, z = _interior_point(rng, LAYOUT, 2), _interior_point(rng, LAYOUT, 2)
    shape = s.shape if columns is None else (*s.shape, columns)
    u = rng.standard_normal(shape)

    def scaled(s, z, u):
        scaling = NesterovToddScaling(LAYOUT, s, z)
        identity = tf.eye(LAYOUT.num_conic_rows, batch_shape=[2], dtype=s.dtype)
        return [scaling.apply(z), scaling.apply_inverse(s), scaling.lam, scaling.apply(identity), scaling.apply_inverse(scaling.apply(u))]

    Wz, W_inv_s, lam, W, round_trip = [o.numpy() for o in run(scaled, tf.constant(s), tf.constant(z), tf.constant(u))]
    np.testing.assert_allclose(Wz, W_inv_s, rtol=1e-10)
    np.testing.assert_allclose(lam, Wz, rtol=1e-12)
    np.testing.assert_allclose(W, np.swapaxes(W, 1, 2), atol=1e-12)
    np.testing.assert_allclose(round_trip, u, atol=1e-10)
    assert np.all(np.linalg.eigvalsh(W) > 0)
