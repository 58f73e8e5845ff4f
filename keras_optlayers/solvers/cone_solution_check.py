"""An after-the-fact optimality check of cone program solutions, batched.

For  minimize cᵀx  s.t.  Ax + s = b,  s ∈ K  and its dual
maximize -bᵀy  s.t.  Aᵀy + c = 0,  y ∈ K*,  a point (x, y, s) is optimal
when five measures vanish; each is made relative to the size of the terms
it compares, so that it does not change when A, b or c are multiplied by a
positive number:

    primal residual  ‖Ax + s - b‖∞ / max(‖A‖∞‖x‖∞, ‖s‖∞, ‖b‖∞), and each
                     row's |Ax + s - b|ᵢ / max(Σⱼ|Aᵢⱼxⱼ|, |sᵢ|, |bᵢ|,
                     TERM_SCALE_FLOOR × that scale)
    dual residual    ‖Aᵀy + c‖∞    / max(‖A‖∞‖y‖∞, ‖c‖∞)
    gap              max(|cᵀx + bᵀy| / G, Σₖ min(|sₖᵀyₖ| / G, |sₖᵀyₖ| / (‖sₖ‖‖yₖ‖)))
                     with G = max(Σᵢ|cᵢxᵢ|, Σᵢ|bᵢyᵢ|, TERM_SCALE_FLOOR ×
                     (‖c‖∞‖x‖∞ + ‖b‖∞‖y‖∞)), k running over the cones (each
                     row of the zero and nonnegative cones is one): each
                     cone's complementarity is small against the whole gap's
                     scale, or sₖ and yₖ are orthogonal (the cosine of their
                     angle is small)
    primal cone      dist∞(s, K)   / primal scale
    dual cone        ‖A‖∞ dist∞(y, K*) / dual scale

(‖A‖∞ is A's largest entry in absolute value.) The check does not trust the
solver's own status or its tolerances: a solve passes only if every measure
is at most `ACCEPTANCE_TOLERANCE`, whatever settings the user chose.

Limits: a relative test cannot tell a tiny answer from a zero one; when all
the terms a measure compares are exactly zero, the measure is zero. The
measures bound residuals, not the distance to the true solution: where the
optimum is a smooth minimum (CVXPY's conic form of a squared norm,
||(2z, t - 1)|| <= t + 1, or a norm), a gap of ε fixes the minimizer only to
about √ε relative, so a passing point may be off by ~1e-5 relative (as
interior-point solvers at 1e-8 are: the README's sparsemax 0.98640 for
0.98628). And the constant 1 of that form does not scale with the data:
with parameters of size 1e-8 a point off by 1e-3 of their size still passes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from keras_optlayers.core.compiler import ConeDims
from keras_optlayers.solvers.cone_projection import ConeProjection

# Measured (benchmarks/bench_cone_accuracy.py): tight SCS (eps 1e-9), ECOS and
# Clarabel at their defaults reach 1e-9 or better on the library's problems;
# SCS at its default eps 1e-4 reaches about 1e-5, and its wrong answers 1e-2.
ACCEPTANCE_TOLERANCE = 1e-6

# Rows and the gap are measured against their own terms, but no smaller than
# this share of a whole-problem scale (products of the largest entries):
# solvers leave residuals of about their tolerance times that scale in every
# row (SCS at its default 1e-9: at 1e-4, 12 of 40 right polytope projections
# were refused), and an objective of exactly 0 has no size of its own. At
# 1e-2, rows of size 1 next to a squared norm's epigraph of 1e8 passed with
# residuals of 0.6 (a ball projection returned 0).
TERM_SCALE_FLOOR = 1e-3

MEASURES = ("primal residual", "dual residual", "gap", "primal cone", "dual cone")
# The same measures as keys of a solver's info dict.
MEASURE_KEYS = tuple(name.replace(" ", "_") for name in MEASURES)


@dataclasses.dataclass(frozen=True)
class SolutionCheck:
    """The five relative measures for each example, (B,) each, in `MEASURES` order."""

    primal_residual: np.ndarray
    dual_residual: np.ndarray
    gap: np.ndarray
    primal_cone: np.ndarray
    dual_cone: np.ndarray

    def measures(self) -> np.ndarray:
        """(5, B): the measures stacked in `MEASURES` order."""
        return np.stack([self.primal_residual, self.dual_residual, self.gap,
                         self.primal_cone, self.dual_cone])

    def passed(self, tolerance: float = ACCEPTANCE_TOLERANCE) -> np.ndarray:
        """(B,) bool: every measure is at most `tolerance` (NaN fails)."""
        return np.all(self.measures() <= tolerance, axis=0)

    def reason(self, index: int, tolerance: float = ACCEPTANCE_TOLERANCE) -> str:
        """Why example `index` failed, e.g. 'primal residual 3e-02 > 1e-06'."""
        values = self.measures()[:, index]
        failing = [f"{name} {value:.0e} > {tolerance:.0e}"
                   for name, value in zip(MEASURES, values) if not value <= tolerance]
        return ", ".join(failing)


def _ratio(numerator: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """numerator / scale, with 0 / 0 = 0 (nothing to compare)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = numerator / scale
    return np.where((numerator == 0) & (scale == 0), 0.0, ratio)


class ConeSolutionChecker:
    """Checks solutions of cone programs sharing one sparsity pattern of A.

    Args:
        cones: the cone layout K.
        rows, cols: A's nonzero positions, in the order of its values.
        n, m: A's shape is (m, n).
    """

    def __init__(self, cones: ConeDims, rows: np.ndarray, cols: np.ndarray, n: int, m: int):
        self.projection = ConeProjection(cones)
        entries = np.arange(len(rows))
        ones = np.ones(len(rows))
        # Products of a (B, nnz) array with these sum entries into rows / columns of A.
        self._to_rows = sp.csr_matrix((ones, (entries, rows)), shape=(len(rows), m))
        self._to_cols = sp.csr_matrix((ones, (entries, cols)), shape=(len(rows), n))
        self.rows, self.cols = rows, cols
        # Products of a (B, m) array with this sum each cone's rows.
        cone_of_row = np.concatenate([
            np.arange(cones.zero + cones.nonneg),
            *(np.full(size, index) for index, size in enumerate(
                [*cones.soc, *(k * (k + 1) // 2 for k in cones.psd), *([3] * cones.exp)],
                start=cones.zero + cones.nonneg)),
        ]).astype(np.int64)
        self._to_cones = sp.csr_matrix((np.ones(m), (np.arange(m), cone_of_row)),
                                       shape=(m, int(cone_of_row.max(initial=-1)) + 1))

    def __call__(self, A_values, b, c, x, y, s) -> SolutionCheck:
        """Measures (x, y, s) (B, n), (B, m), (B, m) against the data (A as values)."""
        inf = np.inf
        Ax = np.asarray((A_values * x[:, self.cols]) @ self._to_rows)
        ATy = np.asarray((A_values * y[:, self.rows]) @ self._to_cols)
        A_size = np.max(np.abs(A_values), axis=1, initial=0.0)
        x_size = np.linalg.norm(x, inf, axis=1)
        y_size = np.linalg.norm(y, inf, axis=1)
        b_size = np.linalg.norm(b, inf, axis=1)
        c_size = np.linalg.norm(c, inf, axis=1)
        s_size = np.linalg.norm(s, inf, axis=1)
        primal_scale = np.maximum.reduce([A_size * x_size, s_size, b_size])
        dual_scale = np.maximum(A_size * y_size, c_size)
        cx, by = np.sum(c * x, axis=1), np.sum(b * y, axis=1)
        # The terms the gap sums, more than products of largest entries:
        # ‖b‖∞‖y‖∞ pairs b's and y's largest entries, which need not meet
        # (3.8e9 against an objective of 2.6e6 in a ball projection).
        gap_scale = np.maximum.reduce([np.sum(np.abs(c * x), axis=1), np.sum(np.abs(b * y), axis=1),
                                       TERM_SCALE_FLOOR * (c_size * x_size + b_size * y_size)])
        # Each row is also measured against its own terms (floored at a
        # TERM_SCALE_FLOOR share of the whole scale): a global scale is set by
        # the largest entry, often the epigraph variable of a squared norm,
        # and let sum(y) == 1 be off by 0.2 where that variable was ~1e6.
        row_terms = np.asarray((np.abs(A_values * x[:, self.cols])) @ self._to_rows)
        row_scale = np.maximum.reduce([row_terms, np.abs(s), np.abs(b),
                                       np.broadcast_to(TERM_SCALE_FLOOR * primal_scale[:, None], b.shape)])
        # At a solution every cone's sₖᵀyₖ vanishes; their sum sᵀy (= cᵀx +
        # bᵀy up to the residuals) does not show them: ECOS returned a ball
        # projection 0.09 off with a gap of 1e-12, +357 in one cone cancelled
        # by -357 in another, and sparsemax at 1e3 0.18 off, a multiplier of
        # 1e3 on a slack of 0.18 offset by the dual residual times a squared
        # norm's epigraph variable (~1e6). The cosine lets a squared norm's own
        # cone, whose products are ~1e12, carry a product of 10.
        cone_products = np.abs(np.asarray((s * y) @ self._to_cones))
        cone_sizes = np.sqrt(np.asarray((s * s) @ self._to_cones) * np.asarray((y * y) @ self._to_cones))
        complementarity = np.sum(np.minimum(_ratio(cone_products, gap_scale[:, None]),
                                            _ratio(cone_products, cone_sizes)), axis=1)
        row_residual = np.max(_ratio(np.abs(Ax + s - b), row_scale), axis=1, initial=0.0)
        return SolutionCheck(
            primal_residual=np.maximum(_ratio(np.linalg.norm(Ax + s - b, inf, axis=1), primal_scale), row_residual),
            dual_residual=_ratio(np.linalg.norm(ATy + c, inf, axis=1), dual_scale),
            gap=np.maximum(_ratio(np.abs(cx + by), gap_scale), complementarity),
            primal_cone=_ratio(np.linalg.norm(s - self.projection.primal(s), inf, axis=1), primal_scale),
            dual_cone=_ratio(A_size * np.linalg.norm(y - self.projection.dual(y), inf, axis=1), dual_scale),
        )
