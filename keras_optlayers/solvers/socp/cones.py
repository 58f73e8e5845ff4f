"""The cone K = zero^z × nonneg^l × SOC(q₁) × … × SOC(q_k) and its algebra.

`ConeLayout` is the static description (sizes only). Its methods apply the
Euclidean Jordan algebra of K to batched tensors whose rows are the conic
part of a vector (the l nonnegative rows, then the SOC blocks; the zero rows
are handled by the caller), in dense TF ops only:

* u ∘ v: componentwise for nonneg rows; (uᵀv, u₀v₁ + v₀u₁) for a SOC block;
* λ \\ r: the solution x of λ ∘ x = r;
* Nesterov–Todd scaling W (symmetric, block diagonal) with W z = W⁻¹ s;
* the longest step keeping x + α d in K, and the least eigenvalue of x.

SOC blocks are handled one run at a time: consecutive blocks of one size are
reshaped to (B, blocks, size[, r]), so a block's head and tail are one split,
its sums are reductions over one axis and per-block scalars broadcast over the block's
rows. Nothing loops over cones, everything compiles under XLA, and the op
count grows with the number of runs, not of cones: the solver orders the
blocks by size first (`grouped_by_size`), one run per distinct size. (The
previous form, sums as products with a 0/1 block-membership matrix, spent
most of the interior-point loop in those products, measured.) Every
operation takes (B, rows) vectors or (B, rows, r) tensors (r right-hand
sides side by side) as they are: the block axis is axis 2 in both, so
vectors need no added axis (an expand and a squeeze around every call were
a sixth of the loop's slicing ops, at batch 1 where each op counts).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf


# -- one run of SOC blocks, (B, blocks, size) or (B, blocks, size, r) ----------


def _head_and_tail(blocks: tf.Tensor) -> list[tf.Tensor]:
    """[(B, k, 1[, r]), (B, k, q − 1[, r])]: one split op, where two slices were two ops.

    The helpers below ask for a block's head or tail separately; Grappler
    merges their identical splits into one (at batch 1 each op counts).
    """
    return tf.split(blocks, [1, blocks.shape[2] - 1], axis=2)


def _head(blocks: tf.Tensor) -> tf.Tensor:
    return _head_and_tail(blocks)[0]


def _tail(blocks: tf.Tensor) -> tf.Tensor:
    return _head_and_tail(blocks)[1]


def _block_sum(values: tf.Tensor) -> tf.Tensor:
    """(B, k, q[, r]) -> (B, k, 1[, r]), which broadcasts back over each block's rows."""
    return tf.reduce_sum(values, axis=2, keepdims=True)


def _tail_norm(blocks: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(_block_sum(tf.square(_tail(blocks))))


def _jdot(u: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """u₀v₀ − u₁ᵀv₁ per block."""
    return _head(u) * _head(v) - _block_sum(_tail(u) * _tail(v))


def _with_head(head: tf.Tensor, tail: tf.Tensor) -> tf.Tensor:
    return tf.concat([head, tail], axis=2)


def _fill_blocks(per_block: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """A (B, k, 1[, r]) per-block value on every row of its block."""
    return tf.broadcast_to(per_block, tf.shape(like))


def _columns(tensor: tf.Tensor, vector_rank: int) -> list:
    """[r] for a tensor with a trailing column axis (its rank above `vector_rank`), [] for a vector."""
    if tensor.shape.rank == vector_rank:
        return []
    return [tensor.shape[-1] if tensor.shape[-1] is not None else tf.shape(tensor)[-1]]


def _least(parts: list[tf.Tensor]) -> tf.Tensor:
    return parts[0] if len(parts) == 1 else tf.reduce_min(tf.stack(parts), axis=0)


@dataclasses.dataclass(frozen=True)
class ConeLayout:
    """Sizes of K in SCS order: `zero` rows, `nonneg` rows, then SOC blocks `soc`."""

    zero: int
    nonneg: int
    soc: tuple[int, ...]

    @property
    def num_rows(self) -> int:
        return self.zero + self.nonneg + sum(self.soc)

    @property
    def num_conic_rows(self) -> int:
        """Rows of the nonneg and SOC cones (those the interior-point loop sees)."""
        return self.nonneg + sum(self.soc)

    @property
    def degree(self) -> int:
        """Barrier degree: one per nonneg row and one per SOC block."""
        return self.nonneg + len(self.soc)

    @functools.cached_property
    def runs(self) -> tuple[tuple[int, int], ...]:
        """(number of blocks, size) of each run of consecutive SOC blocks of one size."""
        runs: list[tuple[int, int]] = []
        for size in self.soc:
            if runs and runs[-1][1] == size:
                runs[-1] = (runs[-1][0] + 1, size)
            else:
                runs.append((1, size))
        return tuple(runs)

    @functools.cached_property
    def _block_heads(self) -> np.ndarray:
        """Each SOC block's first row among the conic rows."""
        return self.nonneg + np.concatenate([[0], np.cumsum(self.soc)[:-1]]).astype(int)

    def grouped_by_size(self) -> tuple[ConeLayout, np.ndarray | None]:
        """This layout with its SOC blocks in order of size, and the row order that does it.

        The order is a permutation of all `num_rows` rows (None when the blocks
        are already grouped, one run per distinct size); the sort is stable.
        """
        if len(self.runs) == len(set(self.soc)):
            return self, None
        starts = self.zero + self._block_heads
        order = sorted(range(len(self.soc)), key=lambda block: self.soc[block])
        rows = np.concatenate([np.arange(self.zero + self.nonneg)] + [starts[block] + np.arange(self.soc[block]) for block in order])
        return ConeLayout(self.zero, self.nonneg, tuple(self.soc[block] for block in order)), rows

    @functools.cached_property
    def _arrow_entries(self) -> np.ndarray:
        """(rows², ) which entry of u sits at each entry of L(u), flattened; `num_conic_rows` means 0."""
        rows = self.num_conic_rows
        entries = np.full((rows, rows), rows)
        linear = np.arange(self.nonneg)
        entries[linear, linear] = linear
        for head, size in zip(self._block_heads, self.soc):
            block = np.arange(head, head + size)
            entries[block, block] = head
            entries[head, block[1:]] = entries[block[1:], head] = block[1:]
        return entries.reshape(-1)

    # -- splitting into the nonneg rows and runs of SOC blocks ---------------------

    def _split(self, u: tf.Tensor) -> tuple[tf.Tensor | None, list[tf.Tensor]]:
        """(B, conic rows[, r]) -> (nonneg rows (B, l[, r]), [(B, k, q[, r]) per run]).

        The nonneg part is None when there are no nonneg rows but SOC blocks
        (at batch 1 every op counts, even an empty part of a split).
        """
        columns = _columns(u, vector_rank=2)
        has_linear = bool(self.nonneg) or not self.runs
        sizes = ([self.nonneg] if has_linear else []) + [count * size for count, size in self.runs]
        parts = tf.split(u, sizes, axis=1) if len(sizes) > 1 else [u]
        linear = parts.pop(0) if has_linear else None
        runs = [tf.reshape(rows, [-1, count, size, *columns]) for rows, (count, size) in zip(parts, self.runs)]
        return linear, runs

    def _join(self, linear: tf.Tensor | None, runs: Sequence[tf.Tensor]) -> tf.Tensor:
        parts = [] if linear is None else [linear]
        parts += [tf.reshape(blocks, [-1, blocks.shape[1] * blocks.shape[2], *_columns(blocks, vector_rank=3)]) for blocks in runs]
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)

    def _soc_map(self, *tensors, soc_fn: Callable, linear_fn: Callable, run_arguments: Sequence[tuple] | None = None):
        """Applies `linear_fn` to the nonneg rows and `soc_fn` to each run of SOC blocks.

        `run_arguments[i]`, if given, are passed to `soc_fn` after run i's blocks.
        """
        splits = [self._split(t) for t in tensors]
        linear = None if splits[0][0] is None else linear_fn(*[part for part, _ in splits])
        mapped = [
            soc_fn(*[blocks[i] for _, blocks in splits], *(run_arguments[i] if run_arguments else ()))
            for i in range(len(self.runs))
        ]
        return self._join(linear, mapped)

    def block_max(self, v: tf.Tensor) -> tf.Tensor:
        """v ≥ 0 with each SOC block's rows replaced by the block's largest entry."""
        return self._soc_map(
            v, soc_fn=lambda blocks: _fill_blocks(tf.reduce_max(blocks, axis=2, keepdims=True), blocks), linear_fn=lambda x: x
        )

    def block_sum(self, v: tf.Tensor) -> tf.Tensor:
        """v with each SOC block's rows replaced by the block's sum (nonneg rows unchanged)."""
        return self._soc_map(v, soc_fn=lambda blocks: _fill_blocks(_block_sum(blocks), blocks), linear_fn=lambda x: x)

    # -- Jordan algebra ----------------------------------------------------------

    def identity(self, like: tf.Tensor) -> tf.Tensor:
        """e: ones on nonneg rows and SOC heads, zeros on SOC tails, shaped like `like`."""
        if not self.soc:
            return tf.ones_like(like)
        ones = np.zeros(self.num_conic_rows)
        ones[: self.nonneg] = 1.0
        ones[self._block_heads] = 1.0
        return tf.zeros_like(like) + tf.constant(ones.reshape(-1, *[1] * (like.shape.rank - 2)), like.dtype)

    def product(self, u: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """u ∘ v."""

        def soc(a, b):
            return _with_head(_block_sum(a * b), _head(a) * _tail(b) + _head(b) * _tail(a))

        return self._soc_map(u, v, soc_fn=soc, linear_fn=lambda a, b: a * b)

    def inverse_product(self, lam: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
        """x with lam ∘ x = r, for lam in the interior of K (lam broadcasts over r's columns)."""

        def soc(lam_blocks, r_blocks):
            x0 = _jdot(lam_blocks, r_blocks) / _jdot(lam_blocks, lam_blocks)
            return _with_head(x0, (_tail(r_blocks) - x0 * _tail(lam_blocks)) / _head(lam_blocks))

        return self._soc_map(lam, r, soc_fn=soc, linear_fn=lambda a, b: b / a)

    def min_eigenvalue(self, u: tf.Tensor) -> tf.Tensor:
        """Least eigenvalue over all blocks and rows, (B, r): u ∈ K iff it is ≥ 0."""
        linear, runs = self._split(u)
        parts = [tf.reduce_min(linear, axis=1)] if self.nonneg else []
        parts += [tf.reduce_min(_head(blocks) - _tail_norm(blocks), axis=[1, 2]) for blocks in runs]
        return _least(parts)

    def project(self, u: tf.Tensor) -> tf.Tensor:
        """The Euclidean projection of u onto K (conic rows)."""

        def soc(blocks):
            head, tail_norm = _head(blocks), _tail_norm(blocks)
            # Outside both K and −K: ((u₀ + ‖u₁‖)/2) (1, u₁/‖u₁‖).
            factor = 0.5 * (head + tail_norm)
            on_surface = _with_head(factor, _tail(blocks) * (factor / tf.where(tail_norm > 0, tail_norm, 1.0)))
            inside = tf.cast(tail_norm <= head, blocks.dtype)
            polar = tf.cast(tail_norm <= -head, blocks.dtype)
            return inside * blocks + (1.0 - inside) * (1.0 - polar) * on_surface

        return self._soc_map(u, soc_fn=soc, linear_fn=lambda v: tf.maximum(v, 0.0))

    def max_step(self, u: tf.Tensor, du: tf.Tensor) -> tf.Tensor:
        """Largest α ≥ 0 (capped at 1e30) with u + α du ∈ K, for u in K's interior; (B, r).

        For a SOC block, with ū = u / √det u (det u = u₀² − ‖u₁‖²), the
        hyperbolic rotation taking ū to e maps du to (ρ₀, ρ₁) with
        ρ₀ = ūᵀJ du and ρ₁ = du₁ − (ρ₀ + du₀)/(ū₀ + 1) ū₁; u + α du stays in
        the cone while 1 + α (ρ₀ − ‖ρ₁‖)/√det u ≥ 0.
        """
        big = tf.constant(1e30, u.dtype)
        linear, runs = self._split(u)
        dlinear, druns = self._split(du)
        parts = []
        if self.nonneg and linear is not None and dlinear is not None:
            ratios = tf.where(dlinear < 0, -linear / tf.where(dlinear < 0, dlinear, -1.0), big)
            parts.append(tf.reduce_min(ratios, axis=1))
        for blocks, dblocks in zip(runs, druns):
            root_det = tf.sqrt(tf.maximum(_jdot(blocks, blocks), 0.0))
            normalized = blocks / root_det
            rho0 = _jdot(normalized, dblocks)
            rho1 = _tail(dblocks) - (rho0 + _head(dblocks)) / (_head(normalized) + 1.0) * _tail(normalized)
            shrink = tf.sqrt(_block_sum(tf.square(rho1))) - rho0
            ratios = tf.where(shrink > 0, root_det / tf.where(shrink > 0, shrink, 1.0), big)
            parts.append(tf.reduce_min(ratios, axis=[1, 2]))
        return tf.minimum(_least(parts), big)

    def arrow(self, u: tf.Tensor) -> tf.Tensor:
        """The arrow matrix of u (B, rows): L(u) v = u ∘ v, as a dense (B, rows, rows).

        L(u) is linear in u, each entry one of u's or zero: one gather instead of a diagonal, a
        product and its transpose.
        """
        rows = self.num_conic_rows
        with_zero = tf.concat([u, tf.zeros_like(u[:, :1])], axis=1)
        return tf.reshape(tf.gather(with_zero, self._arrow_entries, axis=1), [-1, rows, rows])


class NesterovToddScaling:
    """W with W z = W⁻¹ s = λ for s, z in K's interior (block diagonal, symmetric).

    Nonneg rows: W = diag(√(s/z)). SOC block: W = η H(w̄), where H(w) is the
    hyperbolic rotation [[w₀, w₁ᵀ], [w₁, I + w₁w₁ᵀ/(1 + w₀)]] (H(w)² = 2wwᵀ − J,
    J = diag(1, −I), H(w)⁻¹ = H(Jw)), η = (det s / det z)^¼ and
    w̄ = (s̄ + J z̄)/(2γ), s̄ = s/√det s, z̄ = z/√det z, γ = √((1 + s̄ᵀz̄)/2),
    so w̄ᵀJw̄ = 1 (Vandenberghe, "The CVXOPT linear and quadratic cone
    program solvers", 2010, section 4.1).
    """

    def __init__(self, layout: ConeLayout, s: tf.Tensor, z: tf.Tensor):
        self.layout = layout
        s_linear, s_runs = layout._split(s)
        z_linear, z_runs = layout._split(z)
        self._linear_scales: tuple[tf.Tensor, tf.Tensor] | None = None
        if s_linear is not None:
            linear_scale = tf.sqrt(s_linear / z_linear)
            self._linear_scales = (linear_scale, 1.0 / linear_scale)
        # Per run: (w̄₀, w̄₁, η) for W and (w̄₀, −w̄₁, 1/η) for W⁻¹ = H(Jw̄)/η, each (B, k, ·).
        self._run_scalings: list[tuple[tf.Tensor, ...]] = []
        self._run_inverse_scalings: list[tuple[tf.Tensor, ...]] = []
        for s_blocks, z_blocks in zip(s_runs, z_runs):
            root_det_s, root_det_z = tf.sqrt(_jdot(s_blocks, s_blocks)), tf.sqrt(_jdot(z_blocks, z_blocks))
            s_bar, z_bar = s_blocks / root_det_s, z_blocks / root_det_z
            twice_gamma = tf.sqrt(2.0 * (1.0 + _block_sum(s_bar * z_bar)))
            w_head = (_head(s_bar) + _head(z_bar)) / twice_gamma
            w_tail = (_tail(s_bar) - _tail(z_bar)) / twice_gamma
            eta = tf.sqrt(root_det_s / root_det_z)
            self._run_scalings.append((w_head, w_tail, eta))
            self._run_inverse_scalings.append((w_head, -w_tail, 1.0 / eta))
        self.lam = self.apply(z)

    @staticmethod
    def _scaled_rotation(blocks: tf.Tensor, w_head: tf.Tensor, w_tail: tf.Tensor, eta: tf.Tensor) -> tf.Tensor:
        """η H(w) u for a run of blocks u (B, k, q[, r])."""
        if blocks.shape.rank == 4:  # columns side by side: the per-block scalars broadcast over them
            w_head, w_tail, eta = w_head[..., None], w_tail[..., None], eta[..., None]
        u_head = _head(blocks)
        w_tail_u = _block_sum(w_tail * _tail(blocks))
        new_head = w_head * u_head + w_tail_u
        new_tail = _tail(blocks) + (u_head + w_tail_u / (1.0 + w_head)) * w_tail
        return eta * _with_head(new_head, new_tail)

    def _apply(self, u: tf.Tensor, inverse: bool) -> tf.Tensor:
        def linear(v):
            scale = self._linear_scales[1 if inverse else 0]
            return scale * v if v.shape.rank == 2 else scale[..., None] * v

        return self.layout._soc_map(
            u, soc_fn=self._scaled_rotation, linear_fn=linear,
            run_arguments=self._run_inverse_scalings if inverse else self._run_scalings,
        )

    def apply(self, u: tf.Tensor) -> tf.Tensor:
        """W u for u of shape (B, rows) or (B, rows, r)."""
        return self._apply(u, inverse=False)

    def apply_inverse(self, u: tf.Tensor) -> tf.Tensor:
        """W⁻¹ u for u of shape (B, rows) or (B, rows, r)."""
        return self._apply(u, inverse=True)
