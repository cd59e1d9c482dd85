"""The learning-rate scale held in the optimizer state (``optax.inject_hyperparams``): at 1 the
chain's updates are bit for bit those of optax's own Adam and SGD; set to ``s`` they are
those of a learning rate ``lr * s``, without a new chain or a new compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import optim


def _params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"w": jax.random.normal(k1, (4, 3)), "b": jax.random.normal(k2, (3,))}


def _grads(i):
    k1, k2 = jax.random.split(jax.random.key(100 + i))
    return {"w": jax.random.normal(k1, (4, 3)), "b": jax.random.normal(k2, (3,))}


def _run(tx, steps, scale_at=None, scale=1.0):
    """Params after ``steps`` updates; ``set_lr_scale(state, scale)`` before step ``scale_at``."""
    params = _params()
    state = tx.init(params)
    for i in range(steps):
        if i == scale_at:
            state = optim.set_lr_scale(state, scale)
        updates, state = tx.update(_grads(i), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _run_reference(tx, steps):
    params = _params()
    with jax.numpy_dtype_promotion("standard"):  # optax's own Adam mixes int32 and floats
        state = tx.init(params)
        for i in range(steps):
            updates, state = tx.update(_grads(i), state, params)
            params = optax.apply_updates(params, updates)
    return params, state


def _equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    "kwargs, reference",
    [
        ({"optimizer": "adam", "lr": 3e-3}, lambda lr: optax.adam(lr)),
        ({"optimizer": "sgd", "lr": 0.1, "momentum": 0.0}, lambda lr: optax.sgd(lr)),
    ],
)
def test_an_unscaled_chain_is_bit_identical_to_optax(kwargs, reference):
    ours, _ = _run(optim.make(**kwargs), 6)
    want, _ = _run_reference(reference(kwargs["lr"]), 6)
    _equal(ours, want)


def test_a_scale_of_a_half_from_step_3_is_adam_at_half_the_rate_from_there():
    """Steps 0-2 at ``lr``, then 3-5 at ``lr / 2``: optax's Adam with an injected rate
    changed at the same step (halving is exact in floating point)."""
    lr = 3e-3
    ours, state = _run(optim.make(optimizer="adam", lr=lr), 6, scale_at=3, scale=0.5)
    # Only the rate injected: optax.inject_hyperparams(optax.adam) would also turn b1 and b2
    # into float32 arrays, and 1 - b1 would round differently from optax.adam's.
    rate = optax.inject_hyperparams(optax.scale_by_learning_rate)(learning_rate=lr)
    ref = optax.chain(optax.scale_by_adam(), rate)
    params = _params()
    with jax.numpy_dtype_promotion("standard"):
        rstate = ref.init(params)
        for i in range(6):
            if i == 3:
                rstate[1].hyperparams["learning_rate"] = jnp.asarray(lr * 0.5, jnp.float32)
            updates, rstate = ref.update(_grads(i), rstate, params)
            params = optax.apply_updates(params, updates)
    _equal(ours, params)
    assert float(optim.lr_scale(state)) == 0.5
    assert float(optim.stats(state)["lr"]) == np.float32(lr) * np.float32(0.5)


def test_setting_the_scale_does_not_compile_the_update_again():
    tx = optim.make(optimizer="adam", lr=1e-3, clip_norm=1.0, schedule="cosine", total_steps=10)
    traces = []

    @jax.jit
    def update(state, params, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = _params()
    state = tx.init(params)
    params, state = update(state, params, _grads(0))
    state = jax.jit(optim.set_lr_scale)(state, 0.25)
    params, state = update(state, params, _grads(1))
    assert len(traces) == 1
    assert float(optim.lr_scale(state)) == 0.25


def test_the_scale_is_found_inside_freezing_averaging_and_accumulation():
    tx = optim.make(optimizer="nt_asgd", lr=0.1, freeze=("^b$",), accumulate_steps=2, clip_norm=1.0)
    state = optim.set_lr_scale(tx.init(_params()), 0.5)
    assert float(optim.lr_scale(state)) == 0.5


def test_a_state_without_a_scale_is_refused_by_name():
    state = optax.adam(1e-3).init(_params())
    assert optim.lr_scale(state) is None
    with pytest.raises(ValueError, match="holds no lr_scale"):
        optim.set_lr_scale(state, 0.5)
