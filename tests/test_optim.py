"""rnnlab.optim against hand-written NumPy references of each transformation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import optim


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "dense": {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=(3,))},
        "norm": {"scale": rng.normal(size=(3,))},
        "embed": {"embedding": rng.normal(size=(5, 4))},
    }


def _rand(seed, scale):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: scale * rng.normal(size=p.shape), _params())


def _f32(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def _run(tx, grads_seq, params):
    """Applies ``tx`` to a sequence of gradient trees; returns the update trees (NumPy)."""
    params = _f32(params)
    state = tx.init(params)
    out = []
    for g in grads_seq:
        u, state = tx.update(_f32(g), state, params, value=jnp.float32(1.0))
        params = jax.tree.map(lambda p, d: p + d, params, u)
        out.append(jax.tree.map(np.asarray, u))
    return out, state, params


def _close(a, b, tol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def _norm(tree):
    return math.sqrt(sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize("scale", [0.01, 10.0])
def test_clip_by_global_norm_matches_numpy(scale):
    g = _rand(1, scale)
    (u,), state, _ = _run(
        optim.make(optimizer="sgd", momentum=0.0, lr=1.0, clip_norm=1.0), [g], _params()
    )
    n = _norm(g)
    expected = jax.tree.map(lambda x: -x * min(1.0, 1.0 / n), g)
    _close(u, expected)
    stats = optim.stats(state)
    assert float(stats["grad_norm"]) == pytest.approx(n, rel=1e-5)
    assert float(stats["clipped_grad_norm"]) == pytest.approx(min(n, 1.0), rel=1e-5)


def test_clip_by_value_matches_numpy():
    g = _rand(2, 3.0)
    (u,), _, _ = _run(
        optim.make(optimizer="sgd", momentum=0.0, lr=1.0, clip_value=0.5), [g], _params()
    )
    _close(u, jax.tree.map(lambda x: -np.clip(x, -0.5, 0.5), g))


def test_adaptive_clipping_matches_unitwise_numpy():
    """Brock et al. 2021: per output unit, ||G_j|| <= c * max(||W_j||, eps)."""
    params, g, c, eps = _params(), _rand(3, 5.0), 0.05, 1e-3

    def reference(w, grad):
        if w.ndim <= 1:
            wn, gn = max(np.linalg.norm(w), eps), np.linalg.norm(grad)
            return grad * (c * wn / max(gn, 1e-6) if gn > c * wn else 1.0)
        wn = np.maximum(np.linalg.norm(w, axis=0, keepdims=True), eps)
        gn = np.linalg.norm(grad, axis=0, keepdims=True)
        return grad * np.where(gn > c * wn, c * wn / np.maximum(gn, 1e-6), 1.0)

    (u,), _, _ = _run(
        optim.make(optimizer="sgd", momentum=0.0, lr=1.0, clip_adaptive=c), [g], params
    )
    _close(u, jax.tree.map(lambda w, x: -reference(w, x), params, g), tol=1e-4)


def test_adam_matches_numpy_three_steps():
    lr, b1, b2, eps = 0.01, 0.9, 0.99, 1e-8
    gs = [_rand(s, 1.0) for s in range(3)]
    updates, _, _ = _run(optim.make(optimizer="adam", lr=lr, b1=b1, b2=b2, eps=eps), gs, _params())
    m = jax.tree.map(np.zeros_like, gs[0])
    v = jax.tree.map(np.zeros_like, gs[0])
    for t, (g, u) in enumerate(zip(gs, updates, strict=True), start=1):
        m = jax.tree.map(lambda a, x: b1 * a + (1 - b1) * x, m, g)
        v = jax.tree.map(lambda a, x: b2 * a + (1 - b2) * x * x, v, g)
        c1, c2 = 1 - b1**t, 1 - b2**t
        expected = jax.tree.map(
            lambda a, b, c1=c1, c2=c2: -lr * (a / c1) / (np.sqrt(b / c2) + eps), m, v
        )
        _close(u, expected, tol=1e-5)


def test_adamw_decays_kernels_not_biases_or_scales():
    """Loshchilov & Hutter 2019: u = -lr (adam(g) + wd * w), masked."""
    lr, wd = 0.1, 0.5
    params, g = _params(), _rand(4, 1.0)
    (u,), _, _ = _run(optim.make(optimizer="adamw", lr=lr, weight_decay=wd, eps=1e-8), [g], params)
    # first Adam step: m_hat = g, v_hat = g^2 -> g / (|g| + eps)
    adam = jax.tree.map(lambda x: x / (np.abs(x) + 1e-8), g)
    decay = {"dense": {"kernel": 1, "bias": 0}, "norm": {"scale": 0}, "embed": {"embedding": 1}}
    expected = jax.tree.map(lambda a, w, d: -lr * (a + d * wd * w), adam, params, decay)
    _close(u, expected, tol=1e-5)


def test_l2_penalty_is_added_before_adaptive_scaling():
    lr, wd = 0.1, 0.5
    params, g = _params(), _rand(5, 1.0)
    (u,), _, _ = _run(optim.make(optimizer="adam", lr=lr, weight_decay=wd, eps=1e-8), [g], params)
    decay = {"dense": {"kernel": 1, "bias": 0}, "norm": {"scale": 0}, "embed": {"embedding": 1}}
    g2 = jax.tree.map(lambda x, w, d: x + d * wd * w, g, params, decay)
    _close(u, jax.tree.map(lambda x: -lr * x / (np.abs(x) + 1e-8), g2), tol=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_numpy(nesterov):
    lr, mu = 0.1, 0.9
    gs = [_rand(s, 1.0) for s in range(3)]
    updates, _, _ = _run(
        optim.make(optimizer="sgd", lr=lr, momentum=mu, nesterov=nesterov), gs, _params()
    )
    buf = jax.tree.map(np.zeros_like, gs[0])
    for g, u in zip(gs, updates, strict=True):
        buf = jax.tree.map(lambda b, x: mu * b + x, buf, g)
        step = jax.tree.map(lambda b, x: x + mu * b, buf, g) if nesterov else buf
        _close(u, jax.tree.map(lambda s: -lr * s, step))


@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_rmsprop_matches_numpy(mu):
    """Tieleman & Hinton 2012 with eps inside the square root (as TensorFlow and optax),
    optional heavy-ball momentum on the scaled gradient."""
    lr, rho, eps = 0.01, 0.9, 1e-6
    gs = [_rand(s, 1.0) for s in range(3)]
    tx = optim.make(optimizer="rmsprop", lr=lr, decay=rho, eps=eps, momentum=mu)
    updates, _, _ = _run(tx, gs, _params())
    nu = jax.tree.map(np.zeros_like, gs[0])
    buf = jax.tree.map(np.zeros_like, gs[0])
    for g, u in zip(gs, updates, strict=True):
        nu = jax.tree.map(lambda n, x: rho * n + (1 - rho) * x * x, nu, g)
        buf = jax.tree.map(lambda b, x, n: mu * b + x / np.sqrt(n + eps), buf, g, nu)
        _close(u, jax.tree.map(lambda b: -lr * b, buf), tol=1e-4)


def test_cosine_schedule_with_warmup_matches_closed_form():
    lr, warm, total, alpha = 2.0, 10, 110, 0.1
    fn = optim.lr_schedule(
        lr=lr, schedule="cosine", warmup_steps=warm, total_steps=total, final_lr_fraction=alpha
    )
    for t in [0, 1, 5, 9, 10, 11, 50, 60, 109, 110, 200]:
        if t < warm:
            expected = lr * t / warm
        else:
            s = min(t - warm, total - warm)
            expected = lr * (
                alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / (total - warm)))
            )
        assert float(fn(t)) == pytest.approx(expected, rel=1e-5, abs=1e-7), t


def test_step_schedule_matches_closed_form():
    fn = optim.lr_schedule(lr=1.0, schedule="step", decay_every=4, decay_factor=0.5)
    for t in range(13):
        assert float(fn(t)) == pytest.approx(0.5 ** (t // 4)), t


def test_applied_learning_rate_follows_the_schedule():
    lr, warm = 1.0, 4
    tx = optim.make(optimizer="sgd", momentum=0.0, lr=lr, schedule="constant", warmup_steps=warm)
    g = jax.tree.map(np.ones_like, _params())
    updates, state, _ = _run(tx, [g] * 6, _params())
    for t, u in enumerate(updates):
        expected = lr * min(t, warm) / warm
        assert float(u["dense"]["bias"][0]) == pytest.approx(-expected, abs=1e-7), t
    assert float(optim.stats(state)["lr"]) == pytest.approx(lr)


def test_reduce_on_plateau_halves_the_rate_after_patience():
    """A constant loss improves once (the first observation), then plateaus: with
    patience 2 the scale halves at the 3rd and 5th observations."""
    tx = optim.make(
        optimizer="sgd",
        momentum=0.0,
        lr=1.0,
        schedule="plateau",
        plateau_factor=0.5,
        plateau_patience=2,
        plateau_accumulation=1,
    )
    params = _f32(_params())
    state = tx.init(params)
    g = _f32(jax.tree.map(np.ones_like, _params()))
    seen = []
    for _ in range(6):
        u, state = tx.update(g, state, params, value=jnp.float32(3.0))
        seen.append(float(optim.stats(state)["lr"]))
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_gradient_accumulation_equals_one_step_on_the_mean():
    g1, g2 = _rand(6, 1.0), _rand(7, 1.0)
    tx = optim.make(optimizer="sgd", momentum=0.0, lr=0.5, accumulate_steps=2)
    (u1, u2), _, _ = _run(tx, [g1, g2], _params())
    _close(u1, jax.tree.map(np.zeros_like, g1))
    _close(u2, jax.tree.map(lambda a, b: -0.5 * (a + b) / 2, g1, g2))


def test_frozen_parameters_get_no_update_and_no_say_in_the_norm():
    g = _rand(8, 1.0)
    tx = optim.make(optimizer="adam", lr=0.1, freeze=["^embed/"], clip_norm=1e-3)
    (u,), state, _ = _run(tx, [g], _params())
    assert np.all(u["embed"]["embedding"] == 0)
    assert np.all(u["dense"]["kernel"] != 0)
    trainable = {k: v for k, v in g.items() if k != "embed"}
    assert float(optim.stats(state)["grad_norm"]) == pytest.approx(_norm(trainable), rel=1e-5)


def test_decay_mask_spares_biases_and_scales():
    mask = optim.decay_mask(_params())
    assert mask == {
        "dense": {"kernel": True, "bias": False},
        "norm": {"scale": False},
        "embed": {"embedding": True},
    }


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"optimizer": "adagrad"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"clip_norm": -1.0}, "clip_norm"),
        ({"momentum": 1.5}, "momentum"),
        ({"schedule": "cosine", "warmup_steps": 10, "total_steps": 5}, "total_steps"),
        ({"schedule": "step"}, "decay_every"),
        ({"accumulate_steps": 0}, "accumulate_steps"),
        ({"optimizer": "adamw"}, "weight_decay"),
        ({"freeze": ["("]}, "freeze"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=repr(argument)) as info:
        optim.make(**kwargs)
    assert info.value.argument == argument
