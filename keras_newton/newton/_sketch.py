"""Empirical Hessians from Hessian-vector products: exact, sketched, and solves.

The empirical Hessian ``H̄ = (1/N) Σ_i H_i`` of a batch acts on a direction
``v ∈ R^m`` as the derivative of the batch-mean gradient when every sample's
output moves by the same ``v``:

.. math::

    \\bar H v = \\frac1N \\sum_i \\nabla_{y_i}\\big(\\nabla_{y_i}\\ell_i \\cdot v\\big).

Here ``r`` such products are computed in one reverse-over-reverse pass over
``r`` stacked copies of the batch (copy ``j`` carries direction ``v_j``), so
there is no ``pfor`` and no ``jacobian`` graph: the traced program is about
twice the loss's gradient program, whatever ``r`` is, which keeps XLA compile
times close to those of the gradient. Cost and memory grow like ``r·N``
loss evaluations. (Reverse-over-reverse rather than forward-over-reverse:
TensorFlow's XLA gradient of ``Slice`` -- used by ``tf.pad``'s gradient --
has no forward-mode rule.)

**Finite-difference products** (``hessian_products="finite_differences"``):
``H̄ v ≈ mean_i [g_i(y_i + h v) - g_i(y_i - h v)] / 2h``, central
differences of per-sample gradients, with ``‖h v‖ = δ (1 + max|y|)``,
``δ = 10⁻³`` in float32 and ``10⁻⁵`` in float64 (near the optimum of
truncation and rounding error; measured relative error on the 12×12 relaxed
Bellman-Ford: ~1e-3 in float32, ~2e-8 in float64). They need
first derivatives only, so they work for losses whose second derivatives do
not compile, such as loops written as ``tf.while_loop`` under XLA (e.g.
``ShortestPathLoss(unroll=False)``, which compiles in seconds).

**Randomized sketch** (Halko, Martinsson & Tropp, 2011, Alg. 4.1 + 5.3): with
Gaussian probes ``Ω ∈ R^{m×r}``, ``Q = orth(H̄ Ω)``, the Rayleigh-Ritz matrix
``T = Qᵀ H̄ Q = U diag(e) Uᵀ`` gives ``H̄ ≈ V diag(e) Vᵀ`` with ``V = QU``,
from ``2r`` products. For ``r = m`` it is exact (``Q`` is a full orthonormal
basis). The sketch works for indefinite ``H̄``, unlike the Nyström method.

The damped solve with such a factorization is
:func:`keras_newton.newton._eigen_solve.low_rank_damped_solve`.

Example:

>>> import tensorflow as tf
>>> from keras_newton.newton._sketch import mean_hessian_products
>>> loss = lambda t, y: tf.reduce_sum(y ** 4, axis=-1) / 12.0   # H_i = diag(y_i²)
>>> y = tf.constant([[1.0, 2.0], [3.0, 0.0]])
>>> mean_hessian_products(loss, None, y, tf.eye(2)).numpy()
array([[5., 0.],
       [0., 2.]], dtype=float32)

References:
  Pearlmutter, "Fast exact multiplication by the Hessian", 1994.
  Halko, Martinsson & Tropp, "Finding structure with randomness", SIAM
  Review 53(2), 2011.
"""

from typing import Callable

import tensorflow as tf

from keras_newton.newton._eigen_solve import Factorization, finite_eigh

ZERO = tf.UnconnectedGradients.ZERO


def _tile_batch(value, copies: int):
    if value is None:
        return None
    value = tf.convert_to_tensor(value)
    if value.shape.rank == 0:
        return value
    return tf.tile(value, [copies] + [1] * (value.shape.rank - 1))


def _flat_batch(outputs, vectors):
    """``(sample_shape, flat [N, m], vectors [r, m])``, gradients stopped, one dtype."""
    outputs = tf.convert_to_tensor(outputs)
    m = outputs.shape[1:].num_elements()
    flat = tf.reshape(tf.stop_gradient(outputs), [-1, m])
    vectors = tf.stop_gradient(tf.cast(tf.convert_to_tensor(vectors), flat.dtype))
    return outputs.shape[1:].as_list(), flat, vectors


def _stacked_gradients(per_sample, y_true, stacked, sample_shape, copies):
    """Per-sample gradients ``[copies·N, m]`` at ``copies`` stacked batches.

    ``stacked`` holds the flat outputs of the copies one after the other; the
    targets are tiled to match.
    """
    stacked_true = tf.nest.map_structure(lambda t: _tile_batch(t, copies), y_true)
    with tf.GradientTape() as tape:
        tape.watch(stacked)
        values = per_sample(stacked_true, tf.reshape(stacked, [-1] + sample_shape))
        total = tf.reduce_sum(values)
    # Samples are independent: row i of the gradient of the sum is sample i's.
    return tape.gradient(total, stacked, unconnected_gradients=ZERO)


def mean_hessian_products(
    per_sample: Callable, y_true, outputs: tf.Tensor, vectors: tf.Tensor
) -> tf.Tensor:
    """Rows ``H̄ v_j`` for directions ``vectors`` ``[r, m]`` -> ``[r, m]``.

    Args:
      per_sample: ``(y_true, y_pred) -> [N]`` per-sample loss values.
      y_true: targets (tensors with a leading batch axis, or ``None``).
      outputs: ``[N, ...]`` outputs; ``m`` is the size of one sample.
      vectors: ``[r, m]`` directions (static ``r``).

    Returns:
      ``[r, m]``: the batch mean of the per-sample Hessian-vector products.
    """
    sample_shape, flat, vectors = _flat_batch(outputs, vectors)
    copies, m = vectors.shape[0], flat.shape[-1]
    stacked = tf.tile(flat, [copies, 1])
    directions = tf.repeat(vectors, tf.shape(flat)[0], axis=0)
    with tf.GradientTape() as outer:
        outer.watch(stacked)
        gradients = _stacked_gradients(per_sample, y_true, stacked, sample_shape, copies)
        directional = tf.reduce_sum(gradients * directions)
    products = outer.gradient(directional, stacked, unconnected_gradients=ZERO)
    return _batch_mean(tf.reshape(products, [copies, -1, m]))


def _batch_mean(rows: tf.Tensor) -> tf.Tensor:
    """Mean over axis 1 of ``[r, N, m]``; zero (not NaN) for an empty batch."""
    count = tf.cast(tf.shape(rows)[1], rows.dtype)
    return tf.reduce_sum(rows, axis=1) / tf.maximum(count, 1.0)


# Perturbation size, relative to 1 + max|y|, of finite-difference products
# (about the cube root of the machine epsilon; half precision is solved in
# float32, see eigen_solve.solve_dtype).
FINITE_DIFFERENCE_STEP = {tf.float32: 1e-3, tf.float64: 1e-5}


def finite_difference_mean_hessian_products(
    per_sample: Callable, y_true, outputs: tf.Tensor, vectors: tf.Tensor
) -> tf.Tensor:
    """Rows ``H̄ v_j`` by central differences of gradients: ``[r, m] -> [r, m]``.

    Same contract as :func:`mean_hessian_products`; first derivatives only.
    Each direction gets the step ``h_j = δ (1 + max|y|) / ‖v_j‖`` (``δ`` from
    :data:`FINITE_DIFFERENCE_STEP`, by dtype), and
    all ``2r`` perturbed copies of the batch go through one gradient pass.
    """
    sample_shape, flat, vectors = _flat_batch(outputs, vectors)
    copies, m, count = vectors.shape[0], flat.shape[-1], tf.shape(flat)[0]
    scale = FINITE_DIFFERENCE_STEP.get(flat.dtype, 1e-3) * (1.0 + tf.reduce_max(tf.abs(flat)))
    lengths = tf.norm(vectors, axis=1, keepdims=True)
    steps = tf.math.divide_no_nan(scale, lengths)  # [r, 1]
    offsets = tf.repeat(vectors * steps, count, axis=0)  # [r·N, m]
    base = tf.tile(flat, [copies, 1])
    stacked = tf.stop_gradient(tf.concat([base + offsets, base - offsets], axis=0))
    gradients = _stacked_gradients(per_sample, y_true, stacked, sample_shape, 2 * copies)
    plus, minus = tf.unstack(tf.reshape(gradients, [2, copies, -1, m]))
    differences = _batch_mean(plus - minus)  # [r, m]
    return tf.math.divide_no_nan(differences, 2.0 * steps)


def sketch_mean_hessian(
    products: Callable[[tf.Tensor], tf.Tensor], m: int, rank: int, seed, dtype
) -> Factorization:
    """Rank-``rank`` eigen-sketch of ``H̄`` from ``2·rank`` products.

    Args:
      products: ``[r, m] -> [r, m]``, rows ``H̄ v_j`` (already averaged over
        the global batch).
      m: output size; ``rank <= m``.
      rank: sketch rank ``r``.
      seed: ``[2]`` int32 stateless seed of the Gaussian probes.
      dtype: float dtype of the result.

    Returns:
      ``(eigenvalues [r], eigenvectors [m, r])``, eigenvectors orthonormal.
    """
    probes = tf.random.stateless_normal([rank, m], seed=seed, dtype=dtype)
    range_rows = products(probes)
    basis, _ = tf.linalg.qr(tf.transpose(range_rows))  # [m, r], orthonormal
    projected = products(tf.transpose(basis))  # rows (H̄ q_j)ᵀ
    rayleigh_ritz = tf.matmul(projected, basis)  # [r, r] = Qᵀ H̄ Q
    rayleigh_ritz = 0.5 * (rayleigh_ritz + tf.transpose(rayleigh_ritz))
    eigenvalues, rotation = finite_eigh(rayleigh_ritz)
    return eigenvalues, tf.matmul(basis, rotation)
