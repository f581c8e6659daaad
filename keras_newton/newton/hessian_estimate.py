"""``HessianEstimate``: how the empirical Hessian ``H̄`` of a batch is estimated.

The default is exact: ``H̄ = (1/N) Σ_i H_i`` of the whole batch, formed every
step. Each field makes it cheaper (see :mod:`keras_newton.newton._estimators`
for the estimators and their accuracy):

* ``samples=s``: from the first ``s`` samples of the (shuffled) batch;
* ``rank=r``: a rank-``r`` randomized eigen-sketch from ``2r``
  Hessian-vector products, computed by ``products="autodiff"``
  (reverse-over-reverse, exact) or ``"finite_differences"`` (central
  differences of gradients: first derivatives only), with Gaussian probes
  from the stateless ``seed``;
* ``refresh_every=k``: recompute the factorization every ``k`` calls and
  reuse it in between (held by the loss, single replica only).

Example:

>>> estimate = HessianEstimate(samples=4, rank=8, products="finite_differences")
>>> estimate.exact
False
>>> HessianEstimate.from_config(estimate.get_config()) == estimate
True
"""

from typing import Optional

import keras

from keras_newton._validation import int_at_least, one_of
from keras_newton.newton._configurable import Configurable
from keras_newton.newton._curvature_cache import CurvatureCache, validate_refresh_every
from keras_newton.newton.curvatures import HESSIAN
from keras_newton.newton._sketch import (
    finite_difference_mean_hessian_products,
    mean_hessian_products,
)

# How the sketch's Hessian-vector products are computed.
HESSIAN_PRODUCTS = {
    "autodiff": mean_hessian_products,  # reverse-over-reverse, exact
    "finite_differences": finite_difference_mean_hessian_products,  # gradients only
}


def _optional_positive_int(value, name: str) -> Optional[int]:
    return int_at_least(value, f"HessianEstimate.{name}", allow_none=True)


@keras.saving.register_keras_serializable(package="keras_newton")
class HessianEstimate(Configurable):
    """How ``H̄`` is estimated: exact, subsampled, sketched, refreshed (see module).

    Args:
      samples: estimate from the first ``s`` samples (``None``: all).
      rank: sketch rank ``r <= m`` (``None``: the full ``m×m`` matrix).
      products: ``"autodiff"`` or ``"finite_differences"`` products of the
        sketch (needs ``rank``).
      seed: int seed of the sketch's Gaussian probes.
      refresh_every: recompute every ``k >= 1`` calls.
    """

    def __init__(self, samples: Optional[int] = None, rank: Optional[int] = None,
                 products: str = "autodiff", seed: int = 0, refresh_every: int = 1):
        self.samples = _optional_positive_int(samples, "samples")
        self.rank = _optional_positive_int(rank, "rank")
        one_of(products, HESSIAN_PRODUCTS, "HessianEstimate.products")
        if products != "autodiff" and rank is None:
            raise ValueError(
                f"HessianEstimate.products={products!r} computes the products of the "
                "sketch: set HessianEstimate.rank (rank=m gives the whole matrix).")
        self.products = products
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"HessianEstimate.seed must be an int, got {seed!r}.")
        self.seed = seed
        self.refresh_every = validate_refresh_every(refresh_every)

    @property
    def exact(self) -> bool:
        """Whether this is the plain ``H̄`` of the whole batch, every step."""
        return self.samples is None and self.rank is None and self.refresh_every == 1

    def check(self, curvature: str) -> None:
        """Raises unless ``curvature`` is the empirical Hessian or this is exact."""
        used = [f"HessianEstimate.{name}" for name in ("samples", "rank")
                if getattr(self, name) is not None]
        if self.refresh_every > 1:
            used.append("HessianEstimate.refresh_every")
        if used and curvature != HESSIAN:
            raise ValueError(
                f"{', '.join(used)} apply to curvature='hessian' (the empirical "
                f"Hessian, a batch mean); got curvature={curvature!r}.")

    def check_loss(self, loss, protocol: bool) -> None:
        """Raises if ``loss`` supplies its own curvature (``protocol``) and ``rank`` is set."""
        if self.rank is not None and protocol:
            raise ValueError(
                "HessianEstimate.rank sketches the Hessian from autodiff Hessian-vector "
                f"products, but {type(loss).__name__} supplies its own curvature; "
                "use HessianEstimate.samples instead.")

    def new_cache(self) -> Optional[CurvatureCache]:
        """The state a caller keeps across steps: a cache if ``refresh_every > 1``."""
        return CurvatureCache(self.refresh_every) if self.refresh_every > 1 else None

    def get_config(self) -> dict:
        return {"samples": self.samples, "rank": self.rank, "products": self.products,
                "seed": self.seed, "refresh_every": self.refresh_every}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_config().items()
                   if v != HessianEstimate().get_config()[k]}
        return f"HessianEstimate({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
