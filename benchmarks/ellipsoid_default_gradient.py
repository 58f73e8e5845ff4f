"""The default EllipsoidProjection's Jacobian against the closed form, inside and outside.

EllipsoidProjection() with its defaults (the native SOCP solver, float64) on
64 points, unit directions times radii, half inside the ball of radius √2
that its default A = I, z = 0 describe, half outside; prints the worst entry
error of dy/dx on each side. Issue 13 reported errors of 1.87 (and 4.9) at
the first landing's defaults.

    python benchmarks/ellipsoid_default_gradient.py
"""

import numpy as np
import tensorflow as tf

from keras_optlayers import EllipsoidProjection

RADIUS = np.sqrt(2.0)


def ball_jacobian(point: np.ndarray) -> np.ndarray:
    """d(projection onto the ball of radius RADIUS)/d(point)."""
    norm = np.linalg.norm(point)
    if norm <= RADIUS:
        return np.eye(len(point))
    return RADIUS / norm * (np.eye(len(point)) - np.outer(point, point) / norm**2)


def main() -> None:
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((64, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = np.where(np.arange(64) % 2 == 0, rng.uniform(0.1, 1.35, 64), rng.uniform(1.5, 5.0, 64))
    points = tf.constant(directions * radii[:, None])
    layer = EllipsoidProjection(dtype="float64")
    with tf.GradientTape() as tape:
        tape.watch(points)
        projections = layer(points)
    jacobians = tape.batch_jacobian(projections, points).numpy()
    expected = np.array([ball_jacobian(point) for point in points.numpy()])
    errors = np.abs(jacobians - expected).max(axis=(1, 2))
    inside = radii <= RADIUS
    print(f"EllipsoidProjection() defaults, 64 points: worst Jacobian error inside {errors[inside].max():.1e}, "
          f"outside {errors[~inside].max():.1e}")


if __name__ == "__main__":
    main()
