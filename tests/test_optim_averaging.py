"""The weight averages of :mod:`rnnlab.optim.averaging` (NT-ASGD's iterate average, the EMA)
against their definitions run by hand on Python floats."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import optim


def close(a, b, tol=2e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "vals",
    [
        [5.0, 4.0, 3.5, 3.6, 3.4, 3.7, 3.8, 3.9],  # triggers at the 6th observation
        [1.0, 5.0, 4.0, 2.0, 3.0, 0.5, 6.0, 7.0],  # the earliest trigger allowed (4th)
    ],
)
def test_nt_asgd_matches_the_hand_computed_rule(vals):
    """SGD with the NT trigger of Merity et al. (2017), run by hand on Python lists."""
    lr, n = 0.1, 2
    grads = [1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.25, -0.5]
    tx = optim.nt_asgd(lr, nonmono=n)
    w, state = {"w": jnp.asarray(1.0)}, None
    state = tx.init(w)
    ref_w, logs, started, iterates = 1.0, [], False, []
    for g, v in zip(grads, vals, strict=True):
        upd, state = tx.update({"w": jnp.asarray(g)}, state, w)
        w = optax.apply_updates(w, upd)
        ref_w -= lr * g
        if started:
            iterates.append(ref_w)
        state = optim.observe_validation(state, v)
        if not started and len(logs) > n and v > min(logs[:-n]):
            started = True
        logs.append(v)
        assert bool(optim.averaging_started(state)) == started
        want = np.mean(iterates) if iterates else ref_w
        close(optim.averaged_params(state, w)["w"], want, 1e-6)
    assert started and len(iterates) >= 2


def test_ema_params_matches_the_recursion():
    tx = optax.chain(optax.sgd(0.5), optim.ema_params(0.9))
    w = {"w": jnp.asarray([1.0, -1.0])}
    state, ref_w, ref_a = tx.init(w), np.array([1.0, -1.0]), np.array([1.0, -1.0])
    for g in ([1.0, 2.0], [0.0, -1.0], [3.0, 1.0]):
        upd, state = tx.update({"w": jnp.asarray(g)}, state, w)
        w = optax.apply_updates(w, upd)
        ref_w = ref_w - 0.5 * np.asarray(g)
        ref_a = 0.9 * ref_a + 0.1 * ref_w
    close(optim.averaged_params(state, w)["w"], ref_a, 1e-6)
