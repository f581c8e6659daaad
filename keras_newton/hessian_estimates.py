"""Affordable empirical Hessians: batch subsampling and randomized sketches.

The empirical Hessian of a Newton loss is a batch *mean*,
``H̄ = (1/N) Σ_i H_i``, so

* **subsampling** (``hessian_samples=s``): ``H̄_S = (1/s) Σ_{i∈S} H_i`` over
  ``s`` samples of the batch is an unbiased estimate (the first ``s``
  samples of a shuffled batch are a uniform random subset); the cost of the
  curvature drops by ``s/N``. Gradients still use the whole batch.
* **sketching** (``hessian_rank=r``): a rank-``r`` eigen-sketch of ``H̄`` from
  ``2r`` Hessian-vector products (:mod:`keras_newton.hessian_sketch`); exact
  for ``r = m``. Costs ``2r`` gradient-sized reverse-over-reverse passes
  instead of ``m``, and compiles like a gradient (no ``pfor``).
* both together: the sketch of the subsample's Hessian.

Under ``tf.distribute`` each replica estimates from its own shard (its
first ``s`` samples: ``s`` times the replica count in all) and the products
(or matrices) are all-reduced as sums and counts, so the estimate is that of
the global (sub)batch; the sketch's probes come from one stateless seed, so
every replica builds the same basis. Combine with
:class:`keras_newton.curvature_cache.CurvatureCache` to refresh every ``k``
steps.

Example:

>>> import tensorflow as tf, keras_newton as kn
>>> loss = lambda t, y: tf.reduce_sum(tf.sqrt(1.0 + (y - t) ** 2), axis=-1)
>>> y = tf.random.stateless_normal([16, 6], seed=[1, 2])
>>> exact = kn.newton_target(loss, tf.zeros_like(y), y)
>>> sketched = kn.newton_target(loss, tf.zeros_like(y), y, hessian_rank=6)
>>> bool(tf.reduce_max(tf.abs(exact - sketched)) < 1e-3)
True

References:
  Petersen et al., "Newton Losses", NeurIPS 2024, arXiv:2410.19055.
  Halko, Martinsson & Tropp, "Finding structure with randomness", 2011.
"""

from typing import Callable, Optional

import tensorflow as tf

from keras_newton import curvature as curvature_lib
from keras_newton.curvature_cache import validate_refresh_every
from keras_newton.hessian_sketch import (
    Factorization,
    dense_factorization,
    finite_difference_mean_hessian_products,
    mean_hessian_products,
    sketch_mean_hessian,
)

# How the sketch's Hessian-vector products are computed.
HESSIAN_PRODUCTS = {
    "autodiff": mean_hessian_products,  # reverse-over-reverse, exact
    "finite_differences": finite_difference_mean_hessian_products,  # gradients only
}


def _optional_positive_int(value, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None or an int >= 1, got {value!r}.")
    return value


def validate_hessian_options(curvature, hessian_samples, hessian_rank, hessian_seed,
                             hessian_refresh_every=1, loss=None,
                             hessian_products="autodiff") -> None:
    """Raises ValueError for bad or inapplicable affordable-Hessian options."""
    if hessian_products not in HESSIAN_PRODUCTS:
        raise ValueError(
            f"Unknown hessian_products={hessian_products!r}; expected one of "
            f"{tuple(HESSIAN_PRODUCTS)}."
        )
    if hessian_products != "autodiff" and hessian_rank is None:
        raise ValueError(
            f"hessian_products={hessian_products!r} computes the products of the "
            "sketch: set hessian_rank (hessian_rank=m gives the whole matrix)."
        )
    _optional_positive_int(hessian_samples, "hessian_samples")
    _optional_positive_int(hessian_rank, "hessian_rank")
    if isinstance(hessian_seed, bool) or not isinstance(hessian_seed, int):
        raise ValueError(f"hessian_seed must be an int, got {hessian_seed!r}.")
    validate_refresh_every(hessian_refresh_every)
    used = [name for name, value in (("hessian_samples", hessian_samples),
                                     ("hessian_rank", hessian_rank))
            if value is not None]
    if hessian_refresh_every > 1:
        used.append("hessian_refresh_every")
    if used and curvature != curvature_lib.HESSIAN:
        raise ValueError(
            f"{', '.join(used)} apply to curvature='hessian' (the empirical Hessian, "
            f"a batch mean); got curvature={curvature!r}."
        )
    if hessian_rank is not None and loss is not None and curvature_lib.provides_curvature(loss):
        raise ValueError(
            "hessian_rank sketches the Hessian from autodiff Hessian-vector "
            f"products, but {type(loss).__name__} supplies its own curvature; "
            "use hessian_samples instead."
        )


def uses_affordable_hessian(hessian_samples, hessian_rank, hessian_cache) -> bool:
    return hessian_samples is not None or hessian_rank is not None or hessian_cache is not None


def _first(value, count: int):
    if value is None or not tf.is_tensor(value) or value.shape.rank == 0:
        return value
    return value[:count]


def mean_hessian_factorization(
    loss,
    y_true,
    outputs: tf.Tensor,
    dense_mean_hessian: Callable,
    batch_mean: Callable,
    hessian_samples: Optional[int] = None,
    hessian_rank: Optional[int] = None,
    hessian_seed: int = 0,
    hessian_products: str = "autodiff",
) -> Factorization:
    """Eigen-factorization ``(e, V)`` of the (estimated) empirical Hessian.

    Args:
      loss: the wrapped loss (a Keras loss or per-sample callable).
      y_true: targets with a leading batch axis.
      outputs: ``[N, ...]`` outputs, gradient stopped, in the solve dtype.
      dense_mean_hessian: ``(y_true, outputs) -> [m, m]`` mean Hessian
        (the exact path of :func:`keras_newton.newton_target`).
      batch_mean: ``(mean, count) -> mean`` over the global batch.
      hessian_samples: curvature from the first ``s`` samples (``None``: all).
      hessian_rank: sketch rank ``r <= m`` (``None``: the full matrix).
      hessian_seed: seed of the sketch's Gaussian probes.
      hessian_products: ``"autodiff"`` (reverse-over-reverse, exact) or
        ``"finite_differences"`` (central differences of gradients; first
        derivatives only) products for the sketch.

    Returns:
      ``(eigenvalues [r], eigenvectors [m, r])`` (``r = m`` without a sketch).
    """
    m = outputs.shape[1:].num_elements()
    if hessian_rank is not None and hessian_rank > m:
        raise ValueError(f"hessian_rank must be <= m = {m} outputs per sample, got {hessian_rank}.")
    if hessian_samples is not None:
        outputs = outputs[:hessian_samples]
        y_true = tf.nest.map_structure(lambda t: _first(t, hessian_samples), y_true)
    count = tf.cast(tf.shape(outputs)[0], outputs.dtype)
    if hessian_rank is None:
        matrix = tf.cast(dense_mean_hessian(y_true, outputs), outputs.dtype)
        return dense_factorization(batch_mean(matrix, count))
    per_sample = curvature_lib.per_sample_loss_fn(loss)

    def products(vectors):
        local = HESSIAN_PRODUCTS[hessian_products](per_sample, y_true, outputs, vectors)
        return batch_mean(local, count)

    return sketch_mean_hessian(products, m, hessian_rank, [hessian_seed, 0], outputs.dtype)
