"""The pure train step: what one update touches, non-finite updates, task losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_data import FakeSource

from rnnlab import optim, parallel, tasks
from rnnlab.train import config as cfg_lib
from rnnlab.train import state as state_lib
from rnnlab.train.step import make_train_step

SOURCE = FakeSource()


def _setup(name, model, freeze=(), **optim_kw):
    c = cfg_lib.base_config()
    c.data.name = name
    c.data.seq_len = 8
    c.model.update(model)
    c.optim.freeze = tuple(freeze)
    c.train.batch_size = 4
    c = cfg_lib.lock(c)
    info = SOURCE.info(c.data)
    tx = optim.make(**{"lr": 1e-2, "freeze": tuple(freeze), **optim_kw})
    model_abs = state_lib.abstract_model(c, info)
    graphdef = state_lib.split_model(model_abs)[0]
    stateful = state_lib.stateful(model_abs, c)
    state = jax.jit(lambda: state_lib.init_state(c, info, tx, 4))()
    step = jax.jit(make_train_step(graphdef, tx, tasks.get(info["task"]), stateful=stateful))
    batch = next(SOURCE.load(c.data, split="train", batch_size=4, seed=0))
    return state, step, batch


def _leaves(tree):
    return {
        parallel.path_to_str(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }


LM = {"name": "language_model", "embed_features": 6, "hidden_features": 8, "num_layers": 2}


def test_one_step_changes_every_trainable_parameter_and_no_frozen_one():
    # Clipping to a tiny norm still moves every parameter: Adam normalises the step size.
    state, step, batch = _setup("fake_lm", LM, freeze=["^embed/"], clip_norm=1e-4)
    before = _leaves(state.params)
    new, metrics = step(state, batch)
    after = _leaves(new.params)
    assert set(before) == set(after) and len(before) > 5
    for name in before:
        changed = bool(np.any(before[name] != after[name]))
        assert changed == (not name.startswith("embed/")), name
    assert int(new.step) == 1 and float(metrics["nonfinite"]) == 0.0
    assert new.carry is not None  # the LM carries its state to the next batch
    assert float(metrics["clipped"]) == 1.0
    assert float(metrics["clipped_grad_norm"]) == pytest.approx(1e-4, rel=1e-3)
    assert float(metrics["grad_norm"]) > 1e-3


def test_one_step_changes_every_classifier_parameter():
    model = {"name": "classifier", "hidden_features": 5, "num_layers": 2, "bidirectional": True}
    state, step, batch = _setup("fake_classification", model)
    before = _leaves(state.params)
    after = _leaves(step(state, batch)[0].params)
    for name in before:
        assert np.any(before[name] != after[name]), name


def test_non_finite_update_is_skipped_and_counted():
    model = {"name": "classifier", "hidden_features": 5}
    state, step, batch = _setup("fake_regression", model)
    before = _leaves(state.params)
    bad = dict(batch, targets=np.full_like(batch["targets"], np.nan))
    state, metrics = step(state, bad)
    assert float(metrics["nonfinite"]) == 1.0
    assert (int(state.step), int(state.nonfinite), int(state.nonfinite_total)) == (1, 1, 1)
    for name, value in _leaves(state.params).items():
        np.testing.assert_array_equal(value, before[name])
    state, _ = step(state, batch)
    assert (int(state.step), int(state.nonfinite), int(state.nonfinite_total)) == (2, 0, 1)
    assert any(np.any(v != before[k]) for k, v in _leaves(state.params).items())


def test_token_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
    targets = rng.integers(5, size=(2, 3)).astype(np.int32)
    weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    batch = {"targets": jnp.asarray(targets), "weights": jnp.asarray(weights)}
    sums = tasks.get("lm").metrics(jnp.asarray(logits), {}, batch)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    assert float(sums["loss"][0]) == pytest.approx(float((nll * weights).sum()), rel=1e-5)
    assert float(sums["loss"][1]) == 3.0
    hits = (logits.argmax(-1) == targets) * weights
    assert float(sums["accuracy"][0]) == pytest.approx(float(hits.sum()))
    derived = tasks.get("lm").derive({"loss": 1.0}, {"level": "char"})
    assert derived["bpc"] == pytest.approx(1 / np.log(2))
    assert derived["perplexity"] == pytest.approx(np.e)


def test_regression_loss_is_the_weighted_mean_squared_error():
    pred = jnp.asarray([[1.0], [2.0], [4.0]])
    batch = {"targets": jnp.asarray([[0.0], [2.0], [0.0]]), "weights": jnp.asarray([1.0, 1.0, 0.0])}
    sums = tasks.get("regression").metrics(pred, {}, batch)
    assert tasks.means(jax.device_get(sums)) == {"loss": 0.5, "mae": 0.5}
