"""Relaxed (AlgoVision) Bellman-Ford: hand checks, NumPy reference, limits, gradients."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.shortest_path import relaxed_shortest_path, shortest_path

OFFSETS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
BIG = 1e12


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(costs, beta, n_iter, loop="for", t_conorm="probabilistic", p=None,
              max_iter=1024, epsilon=1e-5):
    """NumPy transcription of DESIGN §3 for a batch of B×H×W grids (float64).

    As in AlgoVision, the While loop stops on the batch-wide maximum of the
    continuation probabilities.
    """
    costs = np.asarray(costs, np.float64)
    batch, height, width = costs.shape
    d = np.full((batch, height + 2, width + 2), BIG)
    d[:, 1, 1] = 0.0
    weights = np.zeros((batch, height, width, 8))
    for _ in range(n_iter):
        u = np.stack([d[:, 1 + dr:1 + dr + height, 1 + dc:1 + dc + width] for dr, dc in OFFSETS], -1)
        logits = -beta * (u - u.min(-1, keepdims=True))
        weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        d = np.full((batch, height + 2, width + 2), BIG)
        d[:, 1:-1, 1:-1] = (weights * u).sum(-1) + costs
        d[:, 1, 1] = 0.0
    conorm = {
        "probabilistic": lambda a, b: a + b - a * b,
        "hamacher": lambda a, b: (a + b + (p - 2) * a * b) / (1 + (p - 1) * a * b),
        "yager_1": lambda a, b: np.minimum(1.0, a + b),
    }[t_conorm]

    def body(path, pos):
        path = conorm(path, pos)
        new = np.zeros_like(pos)
        for k, (dr, dc) in enumerate(OFFSETS):
            for i in range(height):
                for j in range(width):
                    if 0 <= i + dr < height and 0 <= j + dc < width:
                        new[:, i + dr, j + dc] += pos[:, i, j] * weights[:, i, j, k]
        return path, new

    path, pos = np.zeros_like(costs), np.zeros_like(costs)
    pos[:, -1, -1] = 1.0
    if loop == "for":
        for _ in range(n_iter):
            path, pos = body(path, pos)
        return path
    cond = lambda path: sigmoid(-beta * (path[:, :1, :1] - 1.0))
    prob = cond(path)
    total = (1 - prob) * path
    steps = 0
    while prob.max() >= epsilon and steps < max_iter:
        path, pos = body(path, pos)
        new_prob = prob * cond(path)
        total = total + (prob - new_prob) * path
        prob, steps = new_prob, steps + 1
    return total + prob * path


def test_hand_checked_two_by_two():
    # After sweep 1: d(0,1) = c01, d(1,0) = c10 (only the source is finite);
    # sweep 2 gives the target the softmin weights over (d_src, d01, d10) =
    # (0, c01, c10); two For traceback steps spread the target's unit mass.
    c = np.array([[0.7, 0.4], [0.9, 0.2]])
    beta = 3.0
    w = np.exp(-beta * np.array([0.0, c[0, 1], c[1, 0]]))
    w /= w.sum()
    expected = np.array([[w[0], w[1]], [w[2], 1.0]])
    out = relaxed_shortest_path(tf.constant(c), beta=beta, n_iter=2).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_hand_checked_while_one_by_two():
    # The traceback reaches the source after one step; the While loop's
    # expectation over stopping times is then [σ(β)², σ(β)].
    beta = 2.0
    out = relaxed_shortest_path(tf.constant([[0.3, 0.5]], tf.float64), beta=beta,
                                n_iter=2, loop="while").numpy()
    s = sigmoid(beta)
    np.testing.assert_allclose(out, [[s * s, s]], rtol=1e-6)


CASES = [("for", "probabilistic", None), ("while", "probabilistic", None),
         ("for", "hamacher", 2.5), ("while", "yager_1", None)]


@pytest.mark.parametrize("loop,t_conorm,p", CASES)
def test_matches_numpy_reference(mode, loop, t_conorm, p, rng):
    costs = rng.uniform(0.1, 1.0, size=(2, 4, 5))
    fn = lambda c: relaxed_shortest_path(c, beta=4.0, n_iter=7, loop=loop, t_conorm=t_conorm, p=p)
    out = run_in_mode(mode, fn, tf.constant(costs))
    expected = reference(costs, 4.0, 7, loop, t_conorm, p)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-12)


def hard_limit(costs, absorbing_source):
    """β → ∞ limit: the exact path, plus (AlgoVision) the cell the source's
    traceback mass bounces to, its cheapest neighbour (whose distance is its
    own cost, the source's being 0)."""
    exact = shortest_path(costs).numpy()
    if absorbing_source:
        return exact
    neighbours = [(0, 1), (1, 0), (1, 1)]
    for b in range(costs.shape[0]):
        cell = min(neighbours, key=lambda rc: costs[b][rc])
        exact[b][cell] = 1.0
    return exact


def test_for_and_while_agree_when_traceback_is_hard(mode, rng):
    # Absorbing source, hard softmin, more iterations than path cells: the
    # For path is final once the mass has left through the source, and the
    # While loop's expectation only weighs that same final state (early stops
    # have probability 1 - σ(β) ≈ 0), so both equal the exact path. (With
    # AlgoVision's bouncing source the two differ when the source's
    # neighbours nearly tie; see test_beta_to_infinity_recovers_exact_path.)
    costs = rng.uniform(0.2, 1.2, size=(3, 5, 6)).astype(np.float32)

    def fn(c):
        return [
            relaxed_shortest_path(c, beta=1e5, n_iter=16, loop=loop, absorbing_source=True)
            for loop in ("for", "while")
        ]

    for_path, while_path = run_in_mode(mode, fn, tf.constant(costs))
    assert for_path.dtype == np.float32
    np.testing.assert_allclose(for_path, while_path, atol=1e-4)
    np.testing.assert_allclose(for_path, hard_limit(costs, True), atol=1e-4)


@pytest.mark.parametrize("absorbing_source", [False, True])
def test_beta_to_infinity_recovers_exact_path(absorbing_source, rng):
    costs = rng.uniform(0.2, 1.2, size=(4, 8, 8))
    limit = hard_limit(costs, absorbing_source)
    errors = [
        np.abs(relaxed_shortest_path(tf.constant(costs), beta=beta, n_iter=64,
                                     absorbing_source=absorbing_source).numpy() - limit).max()
        for beta in (1.0, 10.0, 100.0, 10000.0)
    ]
    assert errors[0] > 0.5 and errors[-1] < 1e-6
    assert all(a >= b for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("loop", ["for", "while"])
def test_gradient_matches_finite_differences(loop, rng):
    costs = tf.constant(rng.uniform(0.2, 1.0, size=(1, 2, 3)))
    direction = tf.constant(rng.normal(size=(1, 2, 3)))
    fn = tf.function(lambda c: tf.reduce_sum(
        direction * relaxed_shortest_path(c, beta=2.0, n_iter=4, loop=loop, t_conorm="hamacher", p=2.0)
    ))
    analytic, numeric = tf.test.compute_gradient(fn, [costs], delta=1e-6)
    np.testing.assert_allclose(analytic[0], numeric[0], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "mode,loop",
    [
        ("xla", "for"),
        pytest.param("eager", "for", marks=pytest.mark.slow),
        pytest.param("function", "while", marks=pytest.mark.slow),
    ],
)
def test_hessian_by_nested_tapes_matches_finite_differences(mode, loop, rng):
    # For is unrolled, so pfor vectorizes its second derivative everywhere.
    # For the While loop (a tf.while_loop) pfor takes ~1 min to convert the
    # nested while-gradients and fails under XLA (no TensorListReserve
    # kernel), so its Jacobian is taken without pfor.
    costs = tf.constant(rng.uniform(0.2, 1.0, size=(1, 2, 3)))
    direction = tf.constant(rng.normal(size=(1, 2, 3)))

    def gradient(c):
        with tf.GradientTape() as tape:
            tape.watch(c)
            path = relaxed_shortest_path(c, beta=2.0, n_iter=3, loop=loop)
            value = tf.reduce_sum(direction * path)
        return tape.gradient(value, c)

    def hessian(c):
        with tf.GradientTape(persistent=loop == "while") as tape:
            tape.watch(c)
            g = tf.reshape(gradient(c), [1, -1])
        return tape.batch_jacobian(g, c, experimental_use_pfor=loop == "for")

    analytic = run_in_mode(mode, hessian, costs).reshape(6, 6)
    eps = 1e-5
    steps = tf.constant(np.eye(6).reshape(6, 1, 2, 3) * eps)
    # Central differences of the gradient, all 6 directions in one graph.
    plus = tf.function(lambda s: tf.map_fn(lambda d: gradient(costs + d), s))(steps)
    minus = tf.function(lambda s: tf.map_fn(lambda d: gradient(costs - d), s))(steps)
    numeric = ((plus - minus).numpy().reshape(6, 6) / (2 * eps)).T
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(analytic, analytic.T, atol=1e-8)


# The XLA case (a minute of compile) runs with -m slow; eager checks the same math.
@pytest.mark.parametrize("mode", ["eager", pytest.param("xla", marks=pytest.mark.slow)])
def test_float32_second_derivatives_are_finite_next_to_far_cells(mode, rng):
    # Neighbours at distance 1e12 (outside the grid or not reached yet) have
    # weight exactly 0, but their 1e12 gaps used to reach second derivatives
    # as beta² · 1e24 · 0 and overflow float32 to NaN (here: 8x8, 8 sweeps;
    # 12x12 with the default 24 sweeps too). Compared with float64.
    costs = rng.uniform(0.5, 2.0, size=(2, 8, 8))
    direction = rng.normal(size=(2, 8, 8))

    def hessian_vector_product(c, v):
        with tf.GradientTape() as outer:
            outer.watch(c)
            with tf.GradientTape() as inner:
                inner.watch(c)
                path = relaxed_shortest_path(c, beta=10.0, n_iter=8)
                value = tf.reduce_sum(tf.square(path))
            directional = tf.reduce_sum(inner.gradient(value, c) * v)
        return outer.gradient(directional, c)

    results = {dtype: run_in_mode(mode, hessian_vector_product, tf.constant(costs, dtype),
                                  tf.constant(direction, dtype))
               for dtype in (tf.float32, tf.float64)}
    assert np.isfinite(results[tf.float32]).all()
    assert np.abs(results[tf.float64]).max() > 1e-3
    np.testing.assert_allclose(results[tf.float32], results[tf.float64],
                               rtol=2e-3, atol=2e-3 * np.abs(results[tf.float64]).max())


def test_while_respects_max_iter(rng):
    costs = rng.uniform(0.2, 1.0, size=(2, 5, 5))
    out = relaxed_shortest_path(tf.constant(costs), beta=3.0, n_iter=6, loop="while", max_iter=3)
    np.testing.assert_allclose(out, reference(costs, 3.0, 6, "while", max_iter=3), rtol=1e-9)


def test_leading_dims_and_defaults(rng):
    costs = tf.constant(rng.uniform(0.2, 1.0, size=(2, 3, 4, 5)), tf.float32)
    out = relaxed_shortest_path(costs)
    flat = relaxed_shortest_path(tf.reshape(costs, [6, 4, 5]), n_iter=9)
    np.testing.assert_allclose(out.numpy().reshape(6, 4, 5), flat.numpy(), rtol=1e-6)
    assert np.all(out.numpy() >= 0) and np.all(out.numpy() <= 1 + 1e-6)


def test_bad_input():
    c = tf.ones([2, 3, 3])
    with pytest.raises(ValueError, match="loop"):
        relaxed_shortest_path(c, loop="until")
    with pytest.raises(ValueError, match="t_conorm"):
        relaxed_shortest_path(c, t_conorm="max")
    with pytest.raises(ValueError, match="p"):
        relaxed_shortest_path(c, t_conorm="hamacher")
    with pytest.raises(ValueError, match="p is only used"):
        relaxed_shortest_path(c, p=2.0)
    with pytest.raises(ValueError, match="beta"):
        relaxed_shortest_path(c, beta=-1.0)
    with pytest.raises(ValueError, match="n_iter"):
        relaxed_shortest_path(c, n_iter=0)
    with pytest.raises(ValueError, match="max_iter"):
        relaxed_shortest_path(c, loop="while", max_iter=0)
    with pytest.raises(TypeError, match="costs"):
        relaxed_shortest_path(tf.ones([2, 3, 3], tf.float16))
    with pytest.raises(ValueError, match="costs"):
        relaxed_shortest_path(tf.ones([4]))


def test_t_conorm_identities(mode, rng):
    from keras_newton.shortest_path._t_conorms import t_conorm_fn

    a = tf.constant(rng.uniform(0, 1, size=50))
    b = tf.constant(rng.uniform(0, 1, size=50))
    ones, zeros = tf.ones_like(a), tf.zeros_like(a)

    def run(a, b):
        prob, yager = t_conorm_fn("probabilistic"), t_conorm_fn("yager_1")
        ham0, ham1, ham2 = (t_conorm_fn("hamacher", p) for p in (0.0, 1.0, 2.0))
        return (prob(a, b), yager(a, b), ham0(a, b), ham1(a, b), ham2(a, b),
                [f(a, zeros) for f in (prob, yager, ham0, ham2)], ham0(ones, ones))

    prob, yager, ham0, ham1, ham2, neutral, corner = run_in_mode(mode, run, a, b)
    a, b = a.numpy(), b.numpy()
    np.testing.assert_allclose(prob, a + b - a * b, rtol=1e-12)
    np.testing.assert_allclose(yager, np.minimum(1, a + b), rtol=1e-12)
    # Hamacher: p = 1 is the probabilistic sum, p = 2 the Einstein sum,
    # p = 0 (a + b - 2ab) / (1 - ab), with limit 1 at a = b = 1.
    np.testing.assert_allclose(ham1, a + b - a * b, rtol=1e-12)
    np.testing.assert_allclose(ham2, (a + b) / (1 + a * b), rtol=1e-12)
    np.testing.assert_allclose(ham0, (a + b - 2 * a * b) / (1 - a * b), rtol=1e-10)
    for values in neutral:
        np.testing.assert_allclose(values, a, rtol=1e-12)
    np.testing.assert_allclose(corner, 1.0)
    for values in (prob, yager, ham0, ham1, ham2):
        assert np.all(values >= np.maximum(a, b) - 1e-12) and np.all(values <= 1 + 1e-12)


@pytest.mark.parametrize("loop", ["for", "while"])
def test_while_loop_sweeps_equal_unrolled_values_and_gradients(mode, loop, rng):
    # unroll=False runs the sweeps (and the For traceback) in tf.while_loops:
    # same values and first derivatives as the unrolled default, in all modes.
    costs = tf.constant(rng.uniform(0.2, 1.0, size=(2, 4, 5)))
    direction = tf.constant(rng.normal(size=(2, 4, 5)))

    def run(c):
        outs = []
        for unroll in (True, False):
            with tf.GradientTape() as tape:
                tape.watch(c)
                path = relaxed_shortest_path(c, beta=4.0, n_iter=7, loop=loop, unroll=unroll)
                value = tf.reduce_sum(direction * path)
            outs += [path, tape.gradient(value, c)]
        return outs

    path, gradient, loop_path, loop_gradient = run_in_mode(mode, run, costs)
    np.testing.assert_allclose(loop_path, path, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loop_gradient, gradient, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(path, reference(costs.numpy(), 4.0, 7, loop), rtol=1e-9, atol=1e-12)
    one = relaxed_shortest_path(costs, n_iter=1, unroll=False)
    np.testing.assert_allclose(one, relaxed_shortest_path(costs, n_iter=1), rtol=1e-12)
