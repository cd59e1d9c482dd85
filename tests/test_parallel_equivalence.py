"""Same global batch, same numbers: 1 device vs an 8-device data mesh vs a 2x4 data/fsdp mesh.

The model is a one-layer LSTM language model written directly with ``jax.lax.scan``; the
one-device loss is checked against a NumPy loop of the textbook LSTM equations
(Hochreiter & Schmidhuber, 1997; forget gate of Gers et al., 2000).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from rnnlab import parallel

VOCAB, EMBED, HIDDEN, BATCH, TIME = 16, 8, 16, 16, 5


def _params(seed=0):
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)

    return {
        "embed": {"embedding": w(VOCAB, EMBED)},
        "lstm": {
            "w_ih": w(EMBED, 4 * HIDDEN),
            "w_hh": w(HIDDEN, 4 * HIDDEN),
            "bias": np.zeros(4 * HIDDEN, np.float32) + 0.1,
        },
        "head": {"kernel": w(HIDDEN, VOCAB), "bias": np.zeros(VOCAB, np.float32)},
    }


def _tokens(seed=1):
    return np.random.default_rng(seed).integers(0, VOCAB, (BATCH, TIME + 1)).astype(np.int32)


def loss_fn(params, batch):
    x = params["embed"]["embedding"][batch["tokens"][:, :-1]]  # [B, T, E]
    targets = batch["tokens"][:, 1:]
    p = params["lstm"]

    def step(carry, x_t):
        h, c = carry
        gates = x_t @ p["w_ih"] + h @ p["w_hh"] + p["bias"][None]
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((x.shape[0], HIDDEN), jnp.float32)
    _, hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(x, 0, 1))
    logits = jnp.swapaxes(hs, 0, 1) @ params["head"]["kernel"] + params["head"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def numpy_loss(params, tokens):
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))
    p = {k: {n: v.astype(np.float64) for n, v in d.items()} for k, d in params.items()}
    total = 0.0
    for b in range(tokens.shape[0]):
        h = np.zeros(HIDDEN)
        c = np.zeros(HIDDEN)
        for t in range(TIME):
            x = p["embed"]["embedding"][tokens[b, t]]
            z = x @ p["lstm"]["w_ih"] + h @ p["lstm"]["w_hh"] + p["lstm"]["bias"]
            i, f, g, o = (z[k * HIDDEN : (k + 1) * HIDDEN] for k in range(4))
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
            logits = h @ p["head"]["kernel"] + p["head"]["bias"]
            logz = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
            total += logz - logits[tokens[b, t + 1]]
    return total / (tokens.shape[0] * TIME)


def _run(mesh, rules):
    """Loss, gradients and one momentum-SGD step on ``mesh``, inputs placed as a trainer would."""
    optimizer = optax.sgd(0.1, momentum=0.9)
    params = _params()
    param_sh = parallel.param_shardings(params, mesh, rules)
    params = jax.device_put(params, param_sh)
    opt_state = jax.jit(
        optimizer.init,
        out_shardings=parallel.param_shardings(jax.eval_shape(optimizer.init, params), mesh, rules),
    )(params)
    opt_sh = jax.tree.map(lambda x: x.sharding, opt_state)
    batch = parallel.global_batch({"tokens": _tokens()}, mesh)

    def train_step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return loss, grads, optax.apply_updates(params, updates), opt_state

    step = jax.jit(
        train_step,
        in_shardings=(param_sh, opt_sh, parallel.data_sharding(mesh)),
        out_shardings=(parallel.replicated(mesh), param_sh, param_sh, opt_sh),
    )
    loss, grads, new_params, new_opt = step(params, opt_state, batch)
    return loss, grads, new_params, new_opt


@pytest.fixture(scope="module")
def one_device():
    mesh = parallel.make_mesh({"data": -1}, devices=jax.devices()[:1])
    return _run(mesh, ())


def test_one_device_loss_matches_numpy_lstm(one_device):
    loss = float(one_device[0])
    assert loss == pytest.approx(numpy_loss(_params(), _tokens()), rel=1e-5)


@pytest.mark.parametrize(
    "axes, fsdp",
    [({"data": -1}, False), ({"data": 2, "fsdp": 4}, True), ({"fsdp": 8}, True)],
    ids=["data8", "data2xfsdp4", "fsdp8"],
)
def test_sharded_meshes_match_one_device(one_device, axes, fsdp):
    mesh = parallel.make_mesh(axes)
    rules = parallel.fsdp_rules(min_dim=8) if fsdp else ()
    loss, grads, new_params, new_opt = _run(mesh, rules)
    ref_loss, ref_grads, ref_params, _ = one_device
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    for got, want in ((grads, ref_grads), (new_params, ref_params)):
        jax.tree.map(
            lambda g, w: np.testing.assert_allclose(
                np.asarray(g), np.asarray(w), rtol=2e-5, atol=1e-6
            ),
            got,
            want,
        )
    if fsdp:
        # The recurrent matrix and its momentum really are split over the fsdp axis.
        n = mesh.shape["fsdp"]
        for leaf in (grads["lstm"]["w_hh"], new_opt[0].trace["lstm"]["w_hh"]):
            assert leaf.sharding.spec == P(None, "fsdp")
            assert {s.data.shape for s in leaf.addressable_shards} == {(HIDDEN, 4 * HIDDEN // n)}
        assert grads["embed"]["embedding"].sharding.spec == P("fsdp")
        assert grads["lstm"]["bias"].sharding.spec == P()
