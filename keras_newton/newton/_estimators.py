"""Curvature estimates ``M`` of a batch: exact, subsampled, sketched, refreshed.

After the derivatives, step (3a) of Petersen et al. (2024) needs the
curvature ``M`` of the global batch in the form its solver consumes:

* :class:`DenseCurvature`: ``H̄`` or ``F̄`` as an ``m×m`` matrix, or the
  element-wise Hessians ``[N, m, m]`` (the dense eigen-solve);
* :class:`EigenCurvature`: an eigen-factorization ``(e, V)`` of an
  *estimated* ``H̄`` (the low-rank eigen-solve);
* :class:`FisherFactor`: the gradients ``G`` with ``F̄ = GᵀG/k`` (Woodbury);
* :class:`HessianProducts`: ``v -> [H_i v_i]_i`` (conjugate gradients).

Affordable empirical Hessians (:class:`HessianEstimate`). ``H̄`` is a batch
*mean*, so

* **subsampling** (``samples=s``): ``H̄_S = (1/s) Σ_{i∈S} H_i`` over the
  first ``s`` samples of a shuffled batch is an unbiased estimate; the cost
  of the curvature drops by ``s/N``. Gradients still use the whole batch.
* **sketching** (``rank=r``): a rank-``r`` eigen-sketch of ``H̄`` from ``2r``
  Hessian-vector products (:mod:`keras_newton.newton._sketch`), by autodiff or
  by finite differences of gradients (``products``); exact for ``r = m``.
* **refreshing** (``refresh_every=k``): the factorization is recomputed every
  ``k`` calls and reused in between
  (:class:`keras_newton.newton._curvature_cache.CurvatureCache`).

Under ``tf.distribute`` each replica estimates from its own shard and the
products (or matrices) are all-reduced as sums and counts, so the estimate
is that of the global (sub)batch; the sketch's probes come from one
stateless seed, so every replica builds the same basis.

Example:

>>> import tensorflow as tf, keras_newton as kn
>>> loss = lambda t, y: tf.reduce_sum(tf.sqrt(1.0 + (y - t) ** 2), axis=-1)
>>> y = tf.random.stateless_normal([16, 6], seed=[1, 2])
>>> exact = kn.newton_target(loss, tf.zeros_like(y), y)
>>> sketched = kn.newton_target(loss, tf.zeros_like(y), y, kn.NewtonStep(
...     estimate=kn.newton.HessianEstimate(rank=6)))
>>> bool(tf.reduce_max(tf.abs(exact - sketched)) < 1e-3)
True

References:
  Petersen et al., "Newton Losses", NeurIPS 2024, arXiv:2410.19055.
  Halko, Martinsson & Tropp, "Finding structure with randomness", 2011.
"""

from typing import Callable, NamedTuple, Optional

import tensorflow as tf

from keras_newton.newton import _autodiff as autodiff, _derivatives as derivatives_lib
from keras_newton.newton._conjugate_gradient import per_sample_hessian_vector_product
from keras_newton.newton.curvatures import ELEMENTWISE_HESSIAN, FISHER, HESSIAN
from keras_newton.newton._distribution import global_batch_mean, global_batch_sum
from keras_newton.newton._eigen_solve import dense_factorization
from keras_newton.newton.hessian_estimate import HESSIAN_PRODUCTS, HessianEstimate
from keras_newton.newton._sketch import sketch_mean_hessian
from keras_newton.newton._usable_samples import usable_count


class DenseCurvature(NamedTuple):
    """``matrix`` ``[m, m]`` (batch) or ``[N, m, m]`` (per sample); ``ok``: finite."""

    matrix: tf.Tensor
    ok: tf.Tensor


class EigenCurvature(NamedTuple):
    """``H̄ ≈ V diag(e) Vᵀ`` with ``eigenvectors`` ``[m, r]``; ``ok``: finite."""

    eigenvalues: tf.Tensor
    eigenvectors: tf.Tensor
    ok: tf.Tensor


class FisherFactor(NamedTuple):
    """``F̄ = GᵀG / N_total`` for ``gradients = s·G``, ``scale = s`` (see Woodbury)."""

    gradients: tf.Tensor
    scale: tf.Tensor


class HessianProducts(NamedTuple):
    """``product``: ``[N, m] -> [N, m]``, row ``i`` is ``H_i v_i``."""

    product: Callable[[tf.Tensor], tf.Tensor]


def derivatives_needed(curvature: str, estimate: HessianEstimate, method: str) -> str:
    """The curvature the derivatives must form per sample (``FISHER``: gradients only).

    Matrix-free solvers and estimated Hessians need gradients only; their
    curvature comes from products or from a separate (sub)batch pass.
    """
    return curvature if method == "dense" and estimate.exact else FISHER


def estimate_curvature(curvature, estimate, method, loss, source, y_true, outputs,
                       derivatives, cache=None):
    """The curvature ``M`` of the global batch, in the form ``method`` solves with.

    Args:
      curvature: ``"hessian"``, ``"fisher"`` or ``"elementwise_hessian"``.
      estimate: a :class:`HessianEstimate` (exact unless ``curvature="hessian"``).
      method: the resolved solver, ``"dense"``, ``"woodbury"`` or ``"cg"``.
      loss: the wrapped loss; ``source``: where its derivatives come from.
      y_true, outputs: the batch, ``outputs`` ``[N, ...]`` in the solve dtype.
      derivatives: :class:`keras_newton.newton._derivatives.Derivatives` of
        the batch, formed for :func:`derivatives_needed`.
      cache: a :class:`~keras_newton.newton._curvature_cache.CurvatureCache`
        when ``estimate.refresh_every > 1``.
    """
    if not estimate.exact:
        return _estimated_hessian(estimate, loss, source, y_true, outputs, cache)
    if method == "woodbury":
        # Woodbury divides GᵀG by the global batch size N; scaling G by
        # sqrt(N / k), k usable samples, makes that GᵀG / k (the dense Fisher).
        total = global_batch_sum(tf.cast(tf.shape(derivatives.gradients)[0], outputs.dtype))
        scale = tf.sqrt(total / tf.maximum(global_batch_sum(derivatives.count), 1.0))
        return FisherFactor(derivatives.gradients * scale, scale)
    if method == "cg":
        m = outputs.shape[1:].num_elements()
        product = per_sample_hessian_vector_product(
            autodiff.per_sample_loss_fn(loss), y_true, outputs)
        return HessianProducts(
            lambda v: tf.reshape(product(tf.reshape(v, tf.shape(outputs))), [-1, m]))
    matrix = derivatives.matrix
    if curvature == ELEMENTWISE_HESSIAN:
        matrix = tf.cast(matrix, outputs.dtype)
        usable = derivatives.usable[..., None]
        return DenseCurvature(tf.where(usable, matrix, tf.zeros_like(matrix)), True)
    if curvature == FISHER:
        gradients = derivatives.gradients
        matrix = (tf.matmul(gradients, gradients, transpose_a=True)
                  / tf.maximum(derivatives.count, 1.0))
    matrix = global_batch_mean(tf.cast(matrix, outputs.dtype), derivatives.count)
    ok = tf.reduce_all(tf.math.is_finite(matrix))
    return DenseCurvature(tf.where(ok, matrix, tf.zeros_like(matrix)), ok)


def _estimated_hessian(estimate, loss, source, y_true, outputs, cache) -> EigenCurvature:
    """Eigen-factorization of the subsampled / sketched / cached ``H̄``."""
    m = outputs.shape[1:].num_elements()
    if estimate.rank is not None and estimate.rank > m:
        raise ValueError(f"HessianEstimate.rank must be <= m = {m} outputs per sample, "
                         f"got {estimate.rank}.")

    def compute():
        return _factorization(estimate, loss, source, y_true, outputs)

    if cache is None:
        eigenvalues, eigenvectors = compute()
    else:
        eigenvalues, eigenvectors = cache.factorization(
            compute, estimate.rank or m, m, outputs.dtype)
    ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(eigenvalues)),
                        tf.reduce_all(tf.math.is_finite(eigenvectors)))
    return EigenCurvature(tf.where(ok, eigenvalues, tf.zeros_like(eigenvalues)),
                          tf.where(ok, eigenvectors, tf.zeros_like(eigenvectors)), ok)


def _first(value, count: Optional[int]):
    if count is None or value is None or not tf.is_tensor(value) or value.shape.rank == 0:
        return value
    return value[:count]


def _factorization(estimate, loss, source, y_true, outputs):
    """``(e [r], V [m, r])`` of ``H̄`` of the first ``samples`` of the global batch."""
    outputs = _first(outputs, estimate.samples)
    y_true = tf.nest.map_structure(lambda t: _first(t, estimate.samples), y_true)
    count = tf.cast(tf.shape(outputs)[0], outputs.dtype)
    if estimate.rank is None:
        # The dense estimate averages the usable samples of the (sub)batch
        # only; the all-reduce must weigh each replica by that count.
        _, mean, usable = derivatives_lib.loss_derivatives(
            loss, y_true, outputs, HESSIAN, source)
        mean = tf.cast(mean, outputs.dtype)
        return dense_factorization(
            global_batch_mean(mean, usable_count(usable, outputs.dtype)))
    per_sample = autodiff.per_sample_loss_fn(loss)
    products_of = HESSIAN_PRODUCTS[estimate.products]

    def products(vectors):
        return global_batch_mean(products_of(per_sample, y_true, outputs, vectors), count)

    m = outputs.shape[1:].num_elements()
    return sketch_mean_hessian(products, m, estimate.rank, [estimate.seed, 0], outputs.dtype)
