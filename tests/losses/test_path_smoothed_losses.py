"""SmoothedLoss and FenchelYoungLoss: estimates vs NumPy, curvature protocol, Newton training, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from conftest import run_in_mode
from keras_newton.losses import FenchelYoungLoss, SmoothedLoss
from keras_newton.shortest_path import shortest_path
from keras_newton.smoothing import sample_noise
from keras_newton.smoothing._seeding import make_seed_generator, next_seed


def _maps(rng, n=3, h=4, w=4):
    costs = rng.uniform(0.2, 1.5, size=(n, h, w))
    truth = shortest_path(tf.constant(rng.uniform(0.2, 1.5, size=(n, h, w)))).numpy()
    return truth, costs


def _noise(seed, shape, dtype=tf.float64):
    """The Normal noise a Monte-Carlo loss built with integer ``seed`` draws first."""
    return sample_noise("normal", shape, next_seed(make_seed_generator(seed)), dtype).z.numpy()


def _solve(costs):
    return shortest_path(tf.constant(costs)).numpy()


def test_whole_loss_smoothing_matches_numpy_lemma4(rng):
    # Hamming distance of the exact path: gradient (1/σ) mean Δℓ z and
    # Hessian (1/σ²) mean Δℓ (z zᵀ - I), Δℓ = ℓ(y + σz) - ℓ(y).
    truth, costs = _maps(rng)
    sigma, samples = 0.4, 6
    loss = SmoothedLoss("hamming", "shortest_path", num_samples=samples, sigma=sigma, seed=3,
                        dtype="float64")
    gradient, hessian = loss.per_sample_derivatives(tf.constant(truth), tf.constant(costs), hessian=True)
    z = _noise(3, [samples, 3, 16])
    hamming = lambda c: np.abs(_solve(c.reshape(-1, 4, 4)) - np.tile(truth, (len(c) // 3, 1, 1))).reshape(
        len(c), 16).mean(-1)
    delta = (hamming((costs[None] + sigma * z.reshape(samples, 3, 4, 4)).reshape(-1, 4, 4))
             - np.tile(hamming(costs), samples)).reshape(samples, 3)
    np.testing.assert_allclose(gradient, (delta[..., None] * z).mean(0) / sigma, rtol=1e-10, atol=1e-14)
    outer = np.einsum("sn,snm,snk->nmk", delta, z, z) / samples
    expected = (outer - delta.mean(0)[:, None, None] * np.eye(16)) / sigma**2
    np.testing.assert_allclose(hessian, expected, rtol=1e-10, atol=1e-12)
    assert loss.provides_hessian


def test_algorithm_smoothing_backpropagates_through_the_loss(rng):
    # ℓ = MSE(y_true, ŷ), ŷ = mean_s f(y + σz_s); gradient J̃ᵀ ∇ℓ(ŷ) with
    # J̃ = mean_s (f(y + σz_s) - f(y)) z_sᵀ / σ.
    truth, costs = _maps(rng)
    sigma, samples = 0.5, 5
    loss = SmoothedLoss("mse", "shortest_path", smoothing="algorithm", num_samples=samples,
                        sigma=sigma, seed=4, dtype="float64")
    gradient, hessian = loss.per_sample_derivatives(tf.constant(truth), tf.constant(costs), hessian=False)
    z = _noise(4, [samples, 3, 16])
    paths = _solve((costs[None] + sigma * z.reshape(samples, 3, 4, 4)).reshape(-1, 4, 4)).reshape(samples, 3, 16)
    mean = paths.mean(0)
    jacobian = np.einsum("snk,snm->nkm", paths - _solve(costs).reshape(1, 3, 16), z) / (samples * sigma)
    dloss = 2 * (mean - truth.reshape(3, 16)) / 16     # per-sample MSE: mean over the 16 cells
    np.testing.assert_allclose(gradient, np.einsum("nk,nkm->nm", dloss, jacobian), rtol=1e-10, atol=1e-14)
    assert hessian is None and not loss.provides_hessian
    fresh = SmoothedLoss("mse", "shortest_path", smoothing="algorithm", num_samples=samples,
                         sigma=sigma, seed=4, dtype="float64")
    value = fresh.call(tf.constant(truth), tf.constant(costs)).numpy()
    np.testing.assert_allclose(value, ((mean - truth.reshape(3, 16)) ** 2).mean(-1), rtol=1e-10)


def test_hessian_of_algorithm_smoothing_is_a_clear_error(rng):
    truth, costs = _maps(rng)
    loss = SmoothedLoss("mse", smoothing="algorithm", num_samples=2, seed=0)
    for curvature in ("hessian", "elementwise_hessian"):
        with pytest.raises(ValueError, match="fisher"):
            kn.NewtonLoss(loss, curvature=curvature)
        with pytest.raises(ValueError, match="fisher"):
            kn.newton_target(loss, truth, costs, curvature=curvature)
    with pytest.raises(ValueError, match="Hessians"):
        loss.per_sample_derivatives(tf.constant(truth), tf.constant(costs), hessian=True)
    kn.NewtonLoss(loss, curvature="fisher")


def test_fenchel_young_loss_uses_the_estimate(rng):
    truth, costs = _maps(rng)
    sigma, samples = 0.3, 5
    loss = FenchelYoungLoss("shortest_path", num_samples=samples, sigma=sigma, seed=9, dtype="float64")
    gradient, hessian = loss.per_sample_derivatives(tf.constant(truth), tf.constant(costs), hessian=True)
    z = _noise(9, [samples, 3, 16])
    paths = _solve((costs[None] + sigma * z.reshape(samples, 3, 4, 4)).reshape(-1, 4, 4)).reshape(samples, 3, 16)
    np.testing.assert_allclose(gradient, truth.reshape(3, 16) - paths.mean(0), rtol=1e-12)
    jacobian = np.einsum("snk,snm->nkm", paths, z) / (samples * sigma)
    np.testing.assert_allclose(hessian, -0.5 * (jacobian + np.swapaxes(jacobian, 1, 2)), rtol=1e-10, atol=1e-12)
    fresh = FenchelYoungLoss("shortest_path", num_samples=samples, sigma=sigma, seed=9, dtype="float64")
    perturbed = costs.reshape(1, 3, 16) + sigma * z
    expected = (costs.reshape(3, 16) * truth.reshape(3, 16)).sum(-1) - (perturbed * paths).sum(-1).mean(0)
    np.testing.assert_allclose(fresh.call(tf.constant(truth), tf.constant(costs)), expected, rtol=1e-10)


LOSSES = {
    "smoothed_hamming": lambda: SmoothedLoss("hamming", "shortest_path", num_samples=3, sigma=0.5, seed=1),
    "smoothed_algorithm": lambda: SmoothedLoss(keras.losses.MeanSquaredError(), "shortest_path",
                                               smoothing="algorithm", num_samples=3, sigma=0.5, seed=1),
    "smoothed_no_algorithm": lambda: SmoothedLoss("mae", None, num_samples=3, sigma=0.5, noise="logistic",
                                                  seed=1),
    "fenchel_young": lambda: FenchelYoungLoss("shortest_path", num_samples=3, sigma=0.5, noise="gumbel", seed=1),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_modes_seeds_and_get_config(mode, name, rng):
    truth, costs = _maps(rng)
    truth, costs = tf.constant(truth, tf.float32), tf.constant(costs, tf.float32)
    loss = LOSSES[name]()
    twin = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(twin) is type(loss) and twin.get_config() == loss.get_config()
    call = (lambda f: f) if mode == "eager" else (lambda f: tf.function(f, jit_compile=mode == "xla"))
    step, twin_step = call(loss.call), call(twin.call)
    first, second = step(truth, costs).numpy(), step(truth, costs).numpy()
    assert first.shape == (3,) and np.isfinite(first).all()
    # Same seed, same noise sequence; each call (training step) new noise.
    np.testing.assert_allclose(twin_step(truth, costs), first, rtol=1e-6)
    assert np.abs(first - second).max() > 0


def test_reductions_and_sample_weight(rng):
    truth, costs = _maps(rng, n=4)
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    for make in (lambda **k: SmoothedLoss(num_samples=2, seed=0, **k),
                 lambda **k: FenchelYoungLoss(num_samples=2, seed=0, **k)):
        per_sample = make(reduction=None)(truth, costs).numpy()
        assert per_sample.shape == (4,)
        summed = make(reduction="sum")(truth, costs, sample_weight=weights)
        np.testing.assert_allclose(summed, (per_sample * weights).sum(), rtol=1e-5)
        mean = make()(truth, costs, sample_weight=weights)
        np.testing.assert_allclose(mean, (per_sample * weights).mean(), rtol=1e-5)


def _cost_model(h=3, w=3):
    inputs = keras.Input((h * w,))
    costs = keras.layers.Dense(h * w, "softplus")(inputs)
    return inputs, keras.layers.Reshape((h, w))(costs)


def _path_data(rng, n=16, h=3, w=3):
    x = rng.uniform(0.1, 1.0, size=(n, h * w)).astype("float32")
    return x, shortest_path(tf.constant(x.reshape(n, h, w))).numpy()


# Each fit compiles the exact solver's while loops under XLA (~5-10 s on a
# loaded 2-core machine); the default run keeps one fit per loss kind.
FITS = [("smoothed_hamming", "hessian"), ("smoothed_algorithm", "fisher"),
        pytest.param("smoothed_hamming", "elementwise_hessian", marks=pytest.mark.slow),
        pytest.param("fenchel_young", "hessian", marks=pytest.mark.slow),
        pytest.param("fenchel_young", "fisher", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name,curvature", FITS)
def test_newton_loss_fit_jit(name, curvature, rng):
    x, y = _path_data(rng)
    keras.utils.set_random_seed(0)
    model = keras.Model(*_cost_model())
    wrapped = LOSSES[name]()
    model.compile(keras.optimizers.Adam(1e-2), loss=kn.NewtonLoss(wrapped, curvature=curvature, damping=0.1),
                  jit_compile=True)
    before = model.get_weights()
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    after = model.get_weights()
    assert np.isfinite(history["loss"]).all() and all(np.isfinite(v).all() for v in after)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    # New noise every step inside the compiled step: 4 steps drew >= 4 seeds.
    assert int(wrapped.seed_generator.state.numpy()[1]) >= 4


@pytest.mark.parametrize("name,curvature", [
    ("fenchel_young", "hessian"),
    pytest.param("smoothed_algorithm", "fisher", marks=pytest.mark.slow)])
def test_newton_loss_model_fit_jit_and_keras_file(name, curvature, rng, tmp_path):
    x, y = _path_data(rng)
    keras.utils.set_random_seed(0)
    model = kn.NewtonLossModel(*_cost_model(), curvature=curvature, damping=0.1)
    loss = LOSSES[name]()
    model.compile(keras.optimizers.Adam(1e-2), loss=loss, jit_compile=True)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["newton_loss"]).all()
    assert all(np.isfinite(v).all() for v in model.get_weights())
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert type(restored.loss) is type(loss) and restored.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("name,loss_class", [("smoothed_hamming", SmoothedLoss),
                                             ("fenchel_young", FenchelYoungLoss)])
def test_compiled_newton_loss_round_trips_through_keras_file(name, loss_class, rng, tmp_path):
    x, y = _path_data(rng)
    model = keras.Model(*_cost_model())
    wrapped = LOSSES[name]()
    model.compile("adam", loss=kn.NewtonLoss(wrapped, curvature="fisher", damping=0.3))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored.loss, kn.NewtonLoss) and restored.loss.step.damping.value() == 0.3
    assert isinstance(restored.loss.loss, loss_class)
    assert restored.loss.loss.get_config() == wrapped.get_config()
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="smoothing"):
        SmoothedLoss(smoothing="both")
    with pytest.raises(ValueError, match="algorithm"):
        SmoothedLoss("mse", None, smoothing="algorithm")
    with pytest.raises(ValueError, match="num_samples"):
        SmoothedLoss(num_samples=0)
    with pytest.raises(ValueError, match="sigma"):
        FenchelYoungLoss(sigma=-1.0)
    with pytest.raises(ValueError, match="noise"):
        FenchelYoungLoss(noise="uniform")
    with pytest.raises(ValueError, match="solver"):
        FenchelYoungLoss("dijkstra")
    with pytest.raises(ValueError, match="seed"):
        SmoothedLoss(seed=-3)
    with pytest.raises(ValueError, match="y_true"):
        FenchelYoungLoss(seed=0)(tf.ones([2, 3, 4]), tf.ones([2, 3, 3]))
    with pytest.raises(ValueError, match="y_pred"):
        SmoothedLoss(seed=0)(tf.ones([2]), tf.ones([2]))
