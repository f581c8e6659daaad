"""Amortized curvature: refresh the Hessian factorization every ``k`` steps.

K-FAC (Martens & Grosse, 2015) recomputes its curvature inverses only every
few iterations and reuses them in between. :class:`CurvatureCache` does the
same for the empirical Hessian of a Newton loss: on calls ``0, k, 2k, ...`` it
computes the eigen-factorization ``H̄ ≈ V diag(e) Vᵀ`` and stores it in
``tf.Variable``s; on the other calls it returns the stored one, so a step
costs a gradient and two ``[N, m] × [m, r]`` products. Inside ``tf.function``
and XLA the choice is a ``tf.cond``: only the taken branch runs.

.. math::

    (e, V)_t = \\begin{cases} \\operatorname{eig}(\\bar H_t) & t \\bmod k = 0 \\\\
    (e, V)_{t-1} & \\text{otherwise} \\end{cases}

Every call advances the counter (evaluation calls of a model included).
The variables are created on first use (lifted out of any ``tf.function``
with ``tf.init_scope``) and are not part of a saved model: after loading, the
first call refreshes. Under ``tf.distribute`` with several replicas the cache
would be shared by concurrently running replicas, so it raises instead
(``refresh_every=1``, the default of :class:`keras_newton.newton.HessianEstimate`, needs
no cache).

Example:

>>> import tensorflow as tf
>>> from keras_newton.newton._curvature_cache import CurvatureCache
>>> cache = CurvatureCache(refresh_every=2)
>>> calls = []
>>> def compute():
...     calls.append(1)
...     return tf.ones([3]), tf.eye(3)
>>> for _ in range(3):
...     _ = cache.factorization(compute, rank=3, m=3, dtype=tf.float32)
>>> len(calls)  # eager: computed on calls 0 and 2 only
2

References:
  Martens & Grosse, "Optimizing Neural Networks with Kronecker-factored
  Approximate Curvature", ICML 2015.
"""

from typing import Callable, Tuple

import tensorflow as tf

from keras_newton._validation import int_at_least


def validate_refresh_every(refresh_every) -> int:
    """Checks that ``refresh_every`` is an int ``>= 1``."""
    return int_at_least(refresh_every, "HessianEstimate.refresh_every")


class CurvatureCache(tf.Module):
    """Holds the last eigen-factorization of the curvature and a call counter.

    Args:
      refresh_every: ``k >= 1``; the factorization is recomputed on every
        ``k``-th call (the first call included).
      name: module name.
    """

    def __init__(self, refresh_every: int, name: str = "curvature_cache"):
        super().__init__(name=name)
        self.refresh_every = validate_refresh_every(refresh_every)
        self.step = None
        self.eigenvalues = None
        self.eigenvectors = None

    def _ensure_variables(self, rank: int, m: int, dtype: tf.DType) -> None:
        if self.eigenvalues is not None:
            if tuple(self.eigenvectors.shape) != (m, rank) or self.eigenvectors.dtype != dtype:
                raise ValueError(
                    f"This curvature cache holds a [{self.eigenvectors.shape[0]}, "
                    f"{self.eigenvectors.shape[1]}] {self.eigenvectors.dtype.name} "
                    f"factorization, but [{m}, {rank}] {dtype.name} was requested; "
                    "use one cache per output."
                )
            return
        with tf.init_scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.eigenvalues = tf.Variable(
                tf.zeros([rank], dtype), trainable=False, name="eigenvalues"
            )
            self.eigenvectors = tf.Variable(
                tf.zeros([m, rank], dtype), trainable=False, name="eigenvectors"
            )

    def factorization(
        self, compute: Callable[[], Tuple[tf.Tensor, tf.Tensor]], rank: int, m: int, dtype
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        """Returns a fresh ``compute()`` on refresh calls, else the stored one.

        Args:
          compute: ``() -> (eigenvalues [rank], eigenvectors [m, rank])``.
          rank, m, dtype: static shape and dtype of the factorization.
        """
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            raise ValueError(
                "HessianEstimate.refresh_every > 1 keeps the curvature in variables that "
                "concurrent replicas would share; under tf.distribute with "
                f"{context.num_replicas_in_sync} replicas use refresh_every=1 "
                "(with samples or rank to make it affordable)."
            )
        self._ensure_variables(rank, m, dtype)
        refresh = tf.equal(self.step % self.refresh_every, 0)

        def stored():
            return tf.identity(self.eigenvalues), tf.identity(self.eigenvectors)

        eigenvalues, eigenvectors = tf.cond(refresh, compute, stored)
        # Keep the last factorization if the new one is not finite.
        finite = tf.logical_and(
            tf.reduce_all(tf.math.is_finite(eigenvalues)),
            tf.reduce_all(tf.math.is_finite(eigenvectors)),
        )
        eigenvalues = tf.where(finite, eigenvalues, self.eigenvalues)
        eigenvectors = tf.where(finite, eigenvectors, self.eigenvectors)
        self.eigenvalues.assign(eigenvalues)
        self.eigenvectors.assign(eigenvectors)
        self.step.assign_add(1)
        return eigenvalues, eigenvectors
